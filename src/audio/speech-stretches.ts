/**
 * From a neural VAD's speech probabilities to stretches of speech (pure), with hysteresis as Silero's
 * own `get_speech_timestamps` does: speech starts when a chunk reaches `threshold`, and ends only after
 * `minSilenceMs` of chunks below `negThreshold` (a dip between the two thresholds neither ends speech
 * nor counts as silence). Stretches shorter than `minSpeechMs` are clicks, not speech; the rest are
 * padded by `padMs` on both sides and joined where the padding meets.
 */

export interface SpeechStretchOptions {
  /** Default 0.5. */
  threshold: number;
  /** Default 0.35. */
  negThreshold: number;
  /** Default 90. */
  minSpeechMs: number;
  /** Default 100. */
  minSilenceMs: number;
  /** Default 30. */
  padMs: number;
}

export const DEFAULT_SPEECH_STRETCH_OPTIONS: SpeechStretchOptions = { threshold: 0.5, negThreshold: 0.35, minSpeechMs: 90, minSilenceMs: 100, padMs: 30 };

/** Stretches of speech, [startMs, endMs] from the first chunk's start, in order and disjoint. */
export function speechStretches(probabilities: ArrayLike<number>, chunkMs: number, options: Partial<SpeechStretchOptions> = {}): [number, number][] {
  const o = { ...DEFAULT_SPEECH_STRETCH_OPTIONS, ...options };
  const totalMs = probabilities.length * chunkMs;
  const raw: [number, number][] = [];
  let start = -1;
  let silenceStart = -1;
  for (let i = 0; i < probabilities.length; i++) {
    const p = probabilities[i];
    if (p >= o.threshold) {
      if (start < 0) start = i;
      silenceStart = -1;
    } else if (start >= 0 && p < o.negThreshold) {
      if (silenceStart < 0) silenceStart = i;
      if ((i + 1 - silenceStart) * chunkMs >= o.minSilenceMs) {
        raw.push([start * chunkMs, silenceStart * chunkMs]);
        start = -1;
        silenceStart = -1;
      }
    }
  }
  if (start >= 0) raw.push([start * chunkMs, (silenceStart >= 0 ? silenceStart : probabilities.length) * chunkMs]);
  const stretches: [number, number][] = [];
  for (const [a, b] of raw) {
    if (b - a < o.minSpeechMs) continue;
    const padded: [number, number] = [Math.max(0, a - o.padMs), Math.min(totalMs, b + o.padMs)];
    const last = stretches.at(-1);
    if (last && padded[0] <= last[1]) last[1] = Math.max(last[1], padded[1]);
    else stretches.push(padded);
  }
  return stretches;
}

/** Total length of disjoint stretches, ms. */
export function stretchesMs(stretches: readonly (readonly [number, number])[]): number {
  let sum = 0;
  for (const [a, b] of stretches) sum += b - a;
  return sum;
}

/**
 * Where a window's words count as heard: the checked stretches (a neural VAD's), widened into the
 * frame VAD's runs the neural VAD agrees with. A run of `heard` (runs apart by at most `joinMs` taken as
 * one) that meets a stretch of `agreeing` (where the neural VAD reached its threshold, however briefly:
 * the checked stretches and the blips too short to be one) is added from `widenMs` before the first
 * such stretch to `widenMs` after the last, within the run. A neural VAD is late on a weak onset and only
 * briefly sure of a quiet word (an unvoiced first consonant under hum, a word after a long pause) that
 * the frame VAD heard whole; a run only the frame VAD calls speech (a noise burst) widens nothing, and
 * no run widens anything by more than `widenMs` (a frame VAD that hears a fan as one long run of speech
 * must not let words invented in it through). Inputs and output are ordered, disjoint [start, end].
 */
export function confirmedRuns(
  checked: readonly (readonly [number, number])[],
  heard: readonly (readonly [number, number])[],
  options: { joinMs: number; widenMs: number; agreeing: readonly (readonly [number, number])[] },
): [number, number][] {
  const { agreeing } = options;
  const spans: [number, number][] = checked.map(([a, b]) => [a, b]);
  for (let i = 0; i < heard.length; ) {
    const start = heard[i][0];
    let end = heard[i][1];
    for (i++; i < heard.length && heard[i][0] - end <= options.joinMs; i++) end = Math.max(end, heard[i][1]);
    let first = Infinity;
    let last = -Infinity;
    for (const [a, b] of agreeing) {
      if (a >= end || b <= start) continue;
      first = Math.min(first, a);
      last = Math.max(last, b);
    }
    if (first < last) spans.push([Math.max(start, first - options.widenMs), Math.min(end, last + options.widenMs)]);
  }
  spans.sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [a, b] of spans) {
    const previous = out.at(-1);
    if (previous && a <= previous[1]) previous[1] = Math.max(previous[1], b);
    else out.push([a, b]);
  }
  return out;
}
