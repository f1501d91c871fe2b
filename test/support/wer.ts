/** Word error rate and seam defects of a transcript against its reference (evaluation only). */
import { normalizeText } from '../../src/transcript/words.ts';

export interface WerResult {
  wer: number;
  substitutions: number;
  deletions: number;
  insertions: number;
  referenceWords: number;
}

export function wordErrorRate(reference: string, hypothesis: string): WerResult {
  return tokenErrorRate(normalizeText(reference), normalizeText(hypothesis));
}

/**
 * WER where a word said by the wrong role is an error too: every word is compared with its role
 * (`pain` said by the doctor is not `pain` said by the patient).
 */
export function roleAttributedWer(reference: readonly { word: string; role: string }[], hypothesis: readonly { word: string; role: string }[]): WerResult {
  const tokens = (words: readonly { word: string; role: string }[]) => words.flatMap(({ word, role }) => normalizeText(word).map((w) => `${w}#${role}`));
  return tokenErrorRate(tokens(reference), tokens(hypothesis));
}

function tokenErrorRate(ref: readonly string[], hyp: readonly string[]): WerResult {
  // Levenshtein over words, keeping the kind of each edit for the report.
  let previous = Array.from({ length: hyp.length + 1 }, (_, j) => ({ cost: j, s: 0, d: 0, i: j }));
  for (let i = 1; i <= ref.length; i++) {
    const current = [{ cost: i, s: 0, d: i, i: 0 }];
    for (let j = 1; j <= hyp.length; j++) {
      const same = ref[i - 1] === hyp[j - 1];
      const sub = previous[j - 1];
      const del = previous[j];
      const ins = current[j - 1];
      const options = [
        { cost: sub.cost + (same ? 0 : 1), s: sub.s + (same ? 0 : 1), d: sub.d, i: sub.i },
        { cost: del.cost + 1, s: del.s, d: del.d + 1, i: del.i },
        { cost: ins.cost + 1, s: ins.s, d: ins.d, i: ins.i + 1 },
      ];
      current.push(options.reduce((a, b) => (b.cost < a.cost ? b : a)));
    }
    previous = current;
  }
  const last = previous[hyp.length];
  return { wer: ref.length ? last.cost / ref.length : hyp.length ? 1 : 0, substitutions: last.s, deletions: last.d, insertions: last.i, referenceWords: ref.length };
}

/** Words that appear twice in a row in the hypothesis but not in the reference: doubled at a seam. */
export function doubledWords(reference: string, hypothesis: string): number {
  const countRepeats = (words: string[]) => words.filter((w, i) => i > 0 && w === words[i - 1]).length;
  return Math.max(0, countRepeats(normalizeText(hypothesis)) - countRepeats(normalizeText(reference)));
}
