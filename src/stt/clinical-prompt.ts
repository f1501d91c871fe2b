/**
 * The prompt a window goes to Whisper with, and near-miss correction of clinical terms (pure).
 *
 * Whisper reads its prompt as the text that came before the audio, and keeps only its last 224 tokens.
 * A window's prompt is, in this order: the language's opening sentence, its clinical terms (data files
 * in `prompts/`), the session's own vocabulary, and the last words already transcribed (the previous
 * filtered final, or a partial's stable words): what is nearest the audio counts most. When it would be
 * longer than the limit, pieces go in this order until it fits: default terms (the last listed first),
 * the opening sentence, session terms (the last first), then the oldest of the previous words (those
 * are cut to `PREVIOUS_TOKENS` before anything else is weighed).
 *
 * Finals (never partials) get clinical terms corrected: a word one letter from a term (two for long
 * terms), in the same script, with a single nearest term, is replaced, and the recognizer's own word is
 * kept in `original`: nothing is rewritten silently. Arabic script is stricter (one edit, terms of 8
 * letters or more): its words carry clitics ("و", "ل", "ب" …) that a looser rule would take for a typo
 * ("للسكري", "for diabetes", is not a misspelt "السكري"); a clitic before a term is kept.
 */
import type { Word } from '../../client-sdk/src/protocol.ts';
import { normalizeWord } from '../transcript/words.ts';

/** Whisper's prompt limit (its decoder keeps the last 224 tokens of the prompt). */
export const WHISPER_PROMPT_TOKENS = 224;
/** The previous words are cut to this many tokens before anything else is weighed. */
export const PREVIOUS_TOKENS = 64;

export interface LanguagePrompt {
  /** The opening sentence. */
  lead: string;
  /** Clinical terms, one or more words each. */
  terms: string[];
}

/** Parses a prompt file: `>` lines are the opening sentence, `#` lines comments, the rest terms. */
export function parsePromptFile(text: string): LanguagePrompt {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  return {
    lead: lines.filter((l) => l.startsWith('>')).map((l) => l.slice(1).trim()).join(' '),
    terms: lines.filter((l) => !l.startsWith('>')),
  };
}

export type TokenCounter = (text: string) => number;

interface Piece {
  text: string;
  tokens: number;
  /** Lower goes first when the prompt is too long. */
  rank: number;
}

const RANK = { defaultTerm: 0, lead: 1, sessionTerm: 2, previous: 3 };

/**
 * The fixed part of a track's prompts (language defaults, or the clinic's STT_PROMPT, and the session's
 * vocabulary), counted once; `build` adds the previous words of each window.
 */
export class PromptBuilder {
  private readonly fixed: Piece[];
  private readonly count: TokenCounter;
  private readonly maxTokens: number;

  /** The last head counted (it changes only when terms are dropped), and its count. */
  private countedHead = '';
  private headTokens = 0;
  /** Tokens of ` word` for the words of recent finals (they recur window after window); bounded. */
  private readonly wordTokens = new Map<string, number>();

  constructor(parts: { lead?: string; defaults: readonly string[]; vocabulary: readonly string[] }, count: TokenCounter, maxTokens = WHISPER_PROMPT_TOKENS) {
    this.count = count;
    this.maxTokens = maxTokens;
    const term = (text: string, rank: number): Piece => ({ text, tokens: count(` ${text},`), rank });
    this.fixed = [
      ...(parts.lead ? [{ text: parts.lead, tokens: count(parts.lead), rank: RANK.lead }] : []),
      ...parts.defaults.map((t) => term(t, RANK.defaultTerm)),
      ...parts.vocabulary.map((t) => term(t, RANK.sessionTerm)),
    ];
  }

  /** The prompt for a window after `previous` (already transcribed text); undefined when empty. */
  build(previous = ''): string | undefined {
    const previousWords = previous.split(/\s+/).filter(Boolean);
    // The last words, up to PREVIOUS_TOKENS.
    const kept: Piece[] = [];
    let previousTokens = 0;
    for (let i = previousWords.length - 1; i >= 0; i--) {
      const tokens = this.countWord(previousWords[i]);
      if (previousTokens + tokens > PREVIOUS_TOKENS) break;
      previousTokens += tokens;
      kept.unshift({ text: previousWords[i], tokens, rank: RANK.previous });
    }
    const pieces = [...this.fixed, ...kept];
    let total = pieces.reduce((sum, p) => sum + p.tokens, 0);
    // Token counts of pieces joined differ a little from the sum: the whole text is counted at the end.
    for (;;) {
      while (total > this.maxTokens && pieces.length > 0) total -= drop(pieces).tokens;
      const { head, words } = render(pieces);
      const text = [head, ...words].join(' ').trim();
      if (!text) return undefined;
      const exact = this.countRendered(head, words);
      if (exact <= this.maxTokens) return text;
      total = exact;
      total -= drop(pieces).tokens;
    }
  }

  /**
   * The exact count of `head` and `words` joined by spaces, without counting the whole text each window:
   * GPT-2's pre-tokenizer cuts text before every space that precedes a non-space, and BPE merges stay
   * within those pieces, so the count of "A B" (A not ending, B not starting with a space) is the count of
   * "A" plus that of " B". The head is counted once; each word's ` word` is remembered.
   */
  private countRendered(head: string, words: readonly string[]): number {
    let total = 0;
    let from = 0;
    if (head) {
      if (head !== this.countedHead) {
        this.countedHead = head;
        this.headTokens = this.count(head);
      }
      total = this.headTokens;
    } else if (words.length > 0) {
      total = this.count(words[0]);
      from = 1;
    }
    for (let i = from; i < words.length; i++) total += this.countWord(words[i]);
    return total;
  }

  /** Tokens of ` word` (a word as it follows another). */
  private countWord(word: string): number {
    let tokens = this.wordTokens.get(word);
    if (tokens === undefined) {
      if (this.wordTokens.size >= MAX_REMEMBERED_WORDS) this.wordTokens.clear();
      tokens = this.count(` ${word}`);
      this.wordTokens.set(word, tokens);
    }
    return tokens;
  }
}

/** Words whose token counts a track's prompt builder keeps (a consultation's vocabulary is far smaller). */
const MAX_REMEMBERED_WORDS = 4096;

/**
 * Removes the piece that goes first: the lowest rank; within it the last term (lists are in order of
 * importance), or the oldest of the previous words.
 */
function drop(pieces: Piece[]): Piece {
  let at = 0;
  for (let i = 1; i < pieces.length; i++) {
    if (pieces[i].rank < pieces[at].rank || (pieces[i].rank === pieces[at].rank && pieces[i].rank !== RANK.previous)) at = i;
  }
  return pieces.splice(at, 1)[0];
}

/** The prompt's text in two parts: the opening sentence and terms (`head`), then the previous words. */
function render(pieces: readonly Piece[]): { head: string; words: string[] } {
  const lead = pieces.filter((p) => p.rank === RANK.lead).map((p) => p.text);
  const terms = pieces.filter((p) => p.rank === RANK.defaultTerm || p.rank === RANK.sessionTerm).map((p) => p.text);
  const words = pieces.filter((p) => p.rank === RANK.previous).map((p) => p.text);
  return { head: [...lead, ...(terms.length ? [`${terms.join(', ')}.`] : [])].join(' ').trim(), words };
}

const ARABIC_SCRIPT = /[\u0600-\u06FF\u0750-\u077F\uFB50-\uFDFF\uFE70-\uFEFF]/;

/** Levenshtein distance, stopping once it exceeds `limit` (returns limit + 1 then). */
function distance(a: string[], b: string[], limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      best = Math.min(best, current[j]);
    }
    if (best > limit) return limit + 1;
    previous = current;
  }
  return previous[b.length];
}

/** Edits a word may be from a term of this many letters and still be taken for it. */
function allowedEdits(letters: number, arabic: boolean): number {
  if (arabic) return letters >= 8 ? 1 : 0;
  return letters >= 8 ? 2 : letters >= 5 ? 1 : 0;
}

/** One-letter Arabic clitics (and, then, with, for, like) that stand before a word. */
const CLITICS = new Set(['و', 'ف', 'ب', 'ل', 'ك']);

export interface TermLexicon {
  /** Normalized single-word terms → the term as written. */
  readonly terms: ReadonlyMap<string, string>;
}

/** The single-word terms of a vocabulary (multi-word terms are prompted, not corrected). */
export function termLexicon(terms: readonly string[]): TermLexicon {
  const map = new Map<string, string>();
  for (const term of terms) {
    const words = term.trim().split(/\s+/);
    if (words.length !== 1) continue;
    const key = normalizeWord(words[0]);
    if ([...key].length >= 5) map.set(key, words[0]);
  }
  return { terms: map };
}

/** Finals with near-misses of clinical terms corrected; a corrected word keeps the recognizer's in `original`. */
export function correctTerms(words: readonly Word[], lexicon: TermLexicon): Word[] {
  if (lexicon.terms.size === 0) return [...words];
  return words.map((word) => {
    const key = normalizeWord(word.word);
    if ([...key].length < 4 || lexicon.terms.has(key)) return word;
    const arabic = ARABIC_SCRIPT.test(key);
    // An Arabic word may be a clitic and a term: the term is what is compared, the clitic stays.
    const clitic = arabic && CLITICS.has(key[0]) && [...key].length > 5 ? key[0] : '';
    if (clitic && lexicon.terms.has(key.slice(1))) return word;
    const best = nearestTerm(clitic ? [key, key.slice(1)] : [key], arabic, lexicon);
    if (!best) return word;
    const term = best.form === 1 ? `${clitic}${best.term}` : best.term;
    return { ...word, word: reshape(word.word, term), original: word.word };
  });
}

/** The one term nearest to any of a word's forms within its allowed edits (undefined if none, or a tie). */
function nearestTerm(forms: string[], arabic: boolean, lexicon: TermLexicon): { term: string; form: number } | undefined {
  let best: { term: string; form: number; edits: number } | undefined;
  let tie = false;
  for (const [termKey, term] of lexicon.terms) {
    if (ARABIC_SCRIPT.test(termKey) !== arabic) continue;
    const termLetters = [...termKey];
    const limit = allowedEdits(termLetters.length, arabic);
    if (limit === 0) continue;
    forms.forEach((form, index) => {
      const edits = distance([...form], termLetters, limit);
      if (edits > limit) return;
      if (!best || edits < best.edits) {
        best = { term, form: index, edits };
        tie = false;
      } else if (edits === best.edits && term !== best.term) {
        tie = true;
      }
    });
  }
  return best && !tie ? best : undefined;
}

/** The term in the word's place: its punctuation around it kept, a capital first letter kept. */
function reshape(word: string, term: string): string {
  const match = /^([\p{P}\p{S}]*)(.*?)([\p{P}\p{S}]*)$/u.exec(word)!;
  const core = match[2];
  const capital = core.length > 0 && core[0] !== core[0].toLowerCase() && term[0] === term[0].toLowerCase();
  return `${match[1]}${capital ? term[0].toUpperCase() + term.slice(1) : term}${match[3]}`;
}

/** Whether a word is one of the lexicon's clinical terms (a first word of a multi-word term counts). */
export function isClinicalTerm(lexicon: TermLexicon, word: string): boolean {
  return lexicon.terms.has(normalizeWord(word));
}
