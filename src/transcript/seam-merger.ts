import type { Word } from '../../client-sdk/src/protocol.ts';
import { centerMs, normalizeWord, sameWord, timeOverlapRatio } from './words.ts';

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

/** How much of each side the text alignment looks at: the overlap holds a few words, never dozens. */
const ALIGN_PREVIOUS = 24;
const ALIGN_INCOMING = 24;

/**
 * How alike two recognitions of a word are: 2 the same word, 1 one is a cut-off piece of the other (a
 * recognizer garbles a word cut by a window edge to its beginning or its end; 0.5 for a one-letter
 * piece of a longer word), -1 different words.
 */
export function wordLikeness(a: string, b: string): number {
  const x = normalizeWord(a);
  const y = normalizeWord(b);
  if (!x || !y) return -1;
  if (x === y) return 2;
  const [short, long] = [...x].length < [...y].length ? [x, y] : [y, x];
  if (!long.startsWith(short) && !long.endsWith(short)) return -1;
  // One letter is a sure piece only of a short word (Persian and Arabic have many of two or three letters).
  return [...short].length >= 2 || [...long].length <= 3 ? 1 : 0.5;
}

/**
 * Joins a window whose word times are estimates (a recognizer without word timestamps) by text. Both
 * windows heard the overlap, so the end of the previous window's words (`previous`, all of them: the
 * first `emitted` were published) and the beginning of the incoming window's words are two recognitions
 * of the same audio. They are aligned with both ends held (the previous window's last word and the
 * incoming window's first word take part, as a match, a cut-off piece, or a skip that costs), scored as
 * an edit distance; the incoming words aligned with published words are dropped, the rest returned.
 * undefined when they agree on no word and not even on a piece of one (the caller then merges by time).
 */
export function mergeByText(previous: readonly Word[], emitted: number, incoming: readonly Word[]): Word[] | undefined {
  const skipped = Math.max(0, previous.length - ALIGN_PREVIOUS);
  const p = previous.slice(skipped);
  const published = emitted - skipped;
  const n = Math.min(incoming.length, ALIGN_INCOMING);
  if (p.length === 0 || n === 0) return undefined;
  // score[a][b]: best alignment of p[..a) (any start: what came before is simply earlier) with incoming[..b).
  const score: number[][] = Array.from({ length: p.length + 1 }, () => new Array<number>(n + 1).fill(0));
  for (let b = 1; b <= n; b++) score[0][b] = -b;
  for (let a = 1; a <= p.length; a++) {
    for (let b = 1; b <= n; b++) {
      score[a][b] = Math.max(score[a - 1][b - 1] + wordLikeness(p[a - 1].word, incoming[b - 1].word), score[a - 1][b] - 1, score[a][b - 1] - 1);
    }
  }
  // The alignment ends with the previous window's last word; the incoming words after it are new anyway.
  let end = 1;
  for (let b = 2; b <= n; b++) if (score[p.length][b] > score[p.length][end]) end = b;
  // Walk the alignment back, then read it forward from the last published word.
  const steps: { a?: number; b?: number; likeness?: number }[] = [];
  let a = p.length;
  let b = end;
  while (a > 0 && b > 0) {
    const likeness = wordLikeness(p[a - 1].word, incoming[b - 1].word);
    if (score[a][b] === score[a - 1][b - 1] + likeness) steps.push({ a: --a, b: --b, likeness });
    else if (score[a][b] === score[a - 1][b] - 1) steps.push({ a: --a });
    else steps.push({ b: --b });
  }
  // Unpublished words before the alignment began: heard by the previous window only.
  while (a > published) steps.push({ a: --a });
  steps.reverse();
  if (!steps.some((step) => step.likeness === 2) && score[p.length][end] < 1) return undefined;
  const joined: Word[] = [];
  let consumed = a;
  for (const step of steps) {
    if (step.a !== undefined) consumed = step.a + 1;
    if (consumed <= published) continue;
    if (step.b === undefined) {
      // Heard whole by the previous window only (the incoming one began inside it, or missed it); its
      // very last word is the one the cut garbles, so it is left to the incoming window.
      if (step.a! < p.length - 1) joined.push(p[step.a!]);
    } else if (step.a !== undefined && step.likeness! > 0 && [...p[step.a].word].length > [...incoming[step.b].word].length) {
      joined.push({ ...incoming[step.b], word: p[step.a].word });
    } else {
      joined.push(incoming[step.b]);
    }
  }
  // Two windows' estimates of one moment differ: the words go on from the last published one, in order.
  let floor = published > 0 ? p[published - 1].endMs : -Infinity;
  return [...joined, ...incoming.slice(end)].map((w) => {
    if (w.startMs >= floor) {
      floor = w.endMs;
      return w;
    }
    const moved = { ...w, startMs: floor, endMs: floor + (w.endMs - w.startMs) };
    floor = moved.endMs;
    return moved;
  });
}

/** Words of a window that it is authoritative for: those centred before its `keepUntilMs`. */
export function wordsBeforeSeam(words: readonly Word[], keepUntilMs: number | undefined): Word[] {
  return keepUntilMs === undefined ? [...words] : words.filter((w) => centerMs(w) < keepUntilMs);
}
