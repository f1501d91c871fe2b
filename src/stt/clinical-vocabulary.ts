/**
 * The clinical prompts of each language (`prompts/<language>.txt`, data a clinic can extend), the token
 * counter the prompt limit is measured with, and what a track or upload gets from them: its prompt
 * builder and the lexicon its finals are corrected toward. Tokens are counted with GPT-2's BPE
 * (js-tiktoken, its ranks inside the package): Whisper's tokenizer is built on it, and for Persian and
 * Arabic GPT-2's count errs on the long side, so the prompt never passes Whisper's limit.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tiktoken } from 'js-tiktoken/lite';
import gpt2 from 'js-tiktoken/ranks/gpt2';
import { parsePromptFile, PromptBuilder, termLexicon, type LanguagePrompt, type TermLexicon, type TokenCounter } from './clinical-prompt.ts';

export const CLINICAL_PROMPTS_DIR = join(import.meta.dirname, 'prompts');

/** What one track's (or upload's) STT calls are prompted with, and its finals corrected toward. */
export interface TrackPrompts {
  builder: PromptBuilder;
  lexicon: TermLexicon;
}

/** Distinct texts whose token counts are kept (a term, the lead, a word of a final: a few bytes each). */
const COUNTS_KEPT = 20_000;

/**
 * Every track's prompt is made of the same pieces (its language's lead and terms, the words its visit
 * repeats): each is counted once per process, not once per track and window (BPE was a twentieth of the main
 * thread's work at 50 tracks in `npm run bench:capacity`). Forgotten all at once when full.
 */
function remembered(count: TokenCounter): TokenCounter {
  const counts = new Map<string, number>();
  return (text) => {
    let tokens = counts.get(text);
    if (tokens === undefined) {
      if (counts.size >= COUNTS_KEPT) counts.clear();
      tokens = count(text);
      counts.set(text, tokens);
    }
    return tokens;
  };
}

export class ClinicalPrompts {
  readonly countTokens: TokenCounter;
  private readonly languages: ReadonlyMap<string, LanguagePrompt>;
  /** STT_PROMPT: the clinic's own prompt in place of the language defaults. */
  private readonly override: string | undefined;

  constructor(languages: ReadonlyMap<string, LanguagePrompt>, override: string | undefined, countTokens: TokenCounter) {
    this.languages = languages;
    this.override = override;
    this.countTokens = countTokens;
  }

  static async load(dir = CLINICAL_PROMPTS_DIR, override?: string): Promise<ClinicalPrompts> {
    const files = (await readdir(dir)).filter((name) => name.endsWith('.txt')).sort();
    const languages = new Map<string, LanguagePrompt>();
    for (const name of files) languages.set(name.slice(0, -4), parsePromptFile(await readFile(join(dir, name), 'utf8')));
    const encoding = new Tiktoken(gpt2);
    return new ClinicalPrompts(languages, override, remembered((text) => encoding.encode(text).length));
  }

  /**
   * For a track in `language` (undefined: not known, so no language's defaults are prompted, and its
   * finals are corrected toward every language's terms) with the session's `vocabulary`.
   */
  forTrack(language: string | undefined, vocabulary: readonly string[]): TrackPrompts {
    const own = language ? this.languages.get(language) : undefined;
    const defaults = this.override !== undefined ? { lead: this.override, terms: [] } : own ?? { lead: '', terms: [] };
    const lexiconTerms = language ? (own?.terms ?? []) : [...this.languages.values()].flatMap((l) => l.terms);
    return {
      builder: new PromptBuilder({ lead: defaults.lead, defaults: defaults.terms, vocabulary }, this.countTokens),
      lexicon: termLexicon([...lexiconTerms, ...vocabulary]),
    };
  }
}
