/**
 * What Whisper invents, taken out of a window's words (pure). A real Whisper answers a cough, a door or
 * breathing with a confident stock phrase ("Thank you for watching.", "زیرنویس توسط …", "اشتركوا في
 * القناة") whose segment scores pass any threshold, and sometimes loops ("the the the the"). The speech
 * check (a second VAD over the window) says where speech really is, and that decides:
 *
 *  - `outside_speech`: a word with the recognizer's own timestamps whose centre lies outside the checked
 *    speech (padded by `speechPadMs`, for timestamps that are a little off; widened where the segmenting
 *    VAD heard a weak onset with it, `heard`) was not heard in speech.
 *  - `loop`: an n-gram (1–4 words) repeated more than a person repeats it (4 times for one word, 3 for
 *    longer ones) is collapsed to one occurrence.
 *  - `phrase`: a listed stock phrase is dropped where the speech under it is weak: with timestamps, when
 *    speech covers less than half of its span; without them, when the whole window holds less than
 *    `weakSpeechMs` of speech. A doctor who really says "thank you" keeps the words.
 *
 * Every dropped word is counted by reason. The output is always a subsequence of the input.
 */
import type { Word } from '../../client-sdk/src/protocol.ts';
import { normalizeWord } from '../transcript/words.ts';

export type DropReason = 'segment' | 'outside_speech' | 'loop' | 'phrase';

/** A listed phrase: its comparison words; `*` matches any one word. */
export type StockPhrase = readonly string[];

export interface HallucinationFilterOptions {
  /** Stock phrases of every language (they do not collide across scripts). */
  phrases: readonly StockPhrase[];
  /** A timed word's centre may lie this far outside checked speech and still count as heard. Default 250. */
  speechPadMs: number;
  /** Without word timestamps, a window with less speech than this has weak evidence. Default 400. */
  weakSpeechMs: number;
}

export const DEFAULT_FILTER_OPTIONS: Omit<HallucinationFilterOptions, 'phrases'> = { speechPadMs: 250, weakSpeechMs: 400 };

export interface WindowEvidence {
  /** Where speech is, in the words' time base, in order. */
  speech: readonly (readonly [number, number])[];
  /** The speech comes from the speech check (a neural VAD); otherwise from the segmenting VAD, which also calls noise speech. */
  checked: boolean;
  /** Where a word may lie and count as heard, when wider than `speech` (see `confirmedRuns`); phrases are still judged by `speech`. */
  heard?: readonly (readonly [number, number])[];
  /** The words' times are the recognizer's, not estimates. */
  timed: boolean;
}

export interface FilteredWords {
  words: Word[];
  dropped: Partial<Record<DropReason, number>>;
}

/** Parses a phrase list (one phrase a line, `#` comments). */
export function parsePhrases(text: string): StockPhrase[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => line.split(/\s+/).map((w) => (w === '*' ? w : normalizeWord(w))).filter(Boolean))
    .filter((phrase) => phrase.length > 0);
}

function overlapMs(a: number, b: number, speech: WindowEvidence['speech']): number {
  let sum = 0;
  for (const [x, y] of speech) sum += Math.max(0, Math.min(b, y) - Math.max(a, x));
  return sum;
}

function totalMs(speech: WindowEvidence['speech']): number {
  return speech.reduce((sum, [a, b]) => sum + (b - a), 0);
}

/** Longest n-gram loop: collapses runs of an n-gram repeated ≥ 4 (n = 1) or ≥ 3 (n ≥ 2) times to one occurrence. */
export function collapseLoops<T>(items: readonly T[], key: (item: T) => string): { kept: T[]; dropped: number } {
  const keys = items.map(key);
  const kept: T[] = [];
  let i = 0;
  while (i < items.length) {
    let collapsed = false;
    for (let n = 1; n <= 4 && !collapsed; n++) {
      let repeats = 1;
      while (i + (repeats + 1) * n <= items.length && keys.slice(i + repeats * n, i + (repeats + 1) * n).every((k, j) => k === keys[i + j])) repeats++;
      if (repeats >= (n === 1 ? 4 : 3)) {
        kept.push(...items.slice(i, i + n));
        i += repeats * n;
        collapsed = true;
      }
    }
    if (!collapsed) kept.push(items[i++]);
  }
  return { kept, dropped: items.length - kept.length };
}

/** Length of the longest listed phrase that starts at `at`, or 0. */
function phraseAt(keys: readonly string[], at: number, phrases: readonly StockPhrase[]): number {
  let longest = 0;
  for (const phrase of phrases) {
    if (phrase.length <= longest || at + phrase.length > keys.length) continue;
    if (phrase.every((w, j) => w === '*' || w === keys[at + j])) longest = phrase.length;
  }
  return longest;
}

export function filterHallucinations(words: readonly Word[], evidence: WindowEvidence, options: HallucinationFilterOptions): FilteredWords {
  const dropped: Partial<Record<DropReason, number>> = {};
  const count = (reason: DropReason, n: number) => {
    if (n > 0) dropped[reason] = (dropped[reason] ?? 0) + n;
  };
  let kept = [...words];
  if (evidence.checked && evidence.timed) {
    const pad = options.speechPadMs;
    const heard = kept.filter((w) => {
      const centre = (w.startMs + w.endMs) / 2;
      return (evidence.heard ?? evidence.speech).some(([a, b]) => centre >= a - pad && centre <= b + pad);
    });
    count('outside_speech', kept.length - heard.length);
    kept = heard;
  }
  // Until none is left: collapsing "a a a a b" three times over leaves the loop "a b a b a b".
  for (let loops = collapseLoops(kept, (w) => normalizeWord(w.word)); loops.dropped > 0; loops = collapseLoops(kept, (w) => normalizeWord(w.word))) {
    count('loop', loops.dropped);
    kept = loops.kept;
  }

  const keys = kept.map((w) => normalizeWord(w.word));
  const windowWeak = totalMs(evidence.speech) < options.weakSpeechMs;
  const result: Word[] = [];
  for (let i = 0; i < kept.length; ) {
    const length = phraseAt(keys, i, options.phrases);
    if (length === 0) {
      result.push(kept[i++]);
      continue;
    }
    const span = kept.slice(i, i + length);
    const from = span[0].startMs;
    const to = Math.max(from + 1, span.at(-1)!.endMs);
    const weak = evidence.timed ? overlapMs(from, to, evidence.speech) < 0.5 * (to - from) : windowWeak;
    if (weak) count('phrase', length);
    else result.push(...span);
    i += length;
  }
  return { words: result, dropped };
}
