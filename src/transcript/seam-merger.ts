import type { Word } from '../../client-sdk/src/protocol.ts';
import { centerMs, sameWord, timeOverlapRatio } from './words.ts';

/** Timestamps of two recognitions of the same word may differ by this much and still match. */
export const DEFAULT_SEAM_TOLERANCE_MS = 400;

/**
 * Joins the words of a window that overlaps already-final words (pure). `emitted` are the final words
 * near the seam, `incoming` the new window's words, `seamMs` the middle of the overlap.
 *
 * Words well after the seam (and after the last emitted word) are kept. Near or before it an incoming word is dropped when it is the same
 * word as an emitted one at about the same time (aligned in order, so a repeated word is matched once),
 * or when it falls on the time of a different emitted word (finals never change, the emitted one wins).
 * An incoming word that fills a gap the previous window left (a word it cut or missed) is kept.
 */
export function mergeAtSeam(
  emitted: readonly Word[],
  incoming: readonly Word[],
  seamMs: number,
  toleranceMs = DEFAULT_SEAM_TOLERANCE_MS,
): Word[] {
  const merged: Word[] = [];
  let lastMatched = -1;
  // Past the seam and past every emitted word (give or take the tolerance) nothing can be a duplicate.
  const horizon = Math.max(seamMs, ...emitted.map(centerMs)) + toleranceMs;
  for (const word of incoming) {
    const center = centerMs(word);
    if (center >= horizon) {
      merged.push(word);
      continue;
    }
    const match = emitted.findIndex(
      (e, i) => i > lastMatched && sameWord(e, word) && Math.abs(centerMs(e) - center) <= toleranceMs,
    );
    if (match >= 0) {
      lastMatched = match;
      continue;
    }
    if (emitted.some((e) => timeOverlapRatio(e, word) > 0.5)) continue;
    merged.push(word);
  }
  return merged;
}

/** Words of a window that it is authoritative for: those centred before its `keepUntilMs`. */
export function wordsBeforeSeam(words: readonly Word[], keepUntilMs: number | undefined): Word[] {
  return keepUntilMs === undefined ? [...words] : words.filter((w) => centerMs(w) < keepUntilMs);
}
