/**
 * From a recognizer's answer to the words of a window in track time (pure). Segments Whisper marks as
 * probably silence (high no-speech probability with low confidence) or as looping text (high compression
 * ratio) are dropped: that is where "Thank you for watching" on a silent window comes from. A recognizer
 * that gives no word timestamps (text-only models, vLLM's segments) gets word times estimated: its words
 * are laid over the stretches the VAD called speech, each in proportion to its length.
 */
import type { Word } from '../../client-sdk/src/protocol.ts';
import type { TranscribedSegment, TranscribedWord, Transcription } from './transcriber.ts';

export interface HallucinationThresholds {
  /** A segment with no_speech_prob above this and avg_logprob below `logprob` is silence. Default 0.6. */
  noSpeechProb: number;
  /** Default -1. */
  logprob: number;
  /** A segment whose text compresses better than this ratio repeats itself. Default 2.4. */
  compressionRatio: number;
}

export const DEFAULT_THRESHOLDS: HallucinationThresholds = { noSpeechProb: 0.6, logprob: -1, compressionRatio: 2.4 };

export function isHallucinated(segment: TranscribedSegment, t: HallucinationThresholds): boolean {
  const silent = (segment.noSpeechProb ?? 0) > t.noSpeechProb && (segment.avgLogprob ?? 0) < t.logprob;
  return silent || (segment.compressionRatio ?? 0) > t.compressionRatio;
}

/**
 * Lays the words of a text over the speech inside [start, end] (seconds), each word's share in
 * proportion to its letters, so a word's estimated time falls where speech was heard, not in a pause.
 */
export function spreadWords(text: string, start: number, end: number, speech: readonly (readonly [number, number])[] = []): TranscribedWord[] {
  const words = text.split(/\s+/).filter(Boolean);
  if (words.length === 0) return [];
  let regions = speech.map(([a, b]) => [Math.max(a, start), Math.min(b, end)] as const).filter(([a, b]) => b > a);
  if (regions.length === 0) regions = [[start, Math.max(start, end)]];
  const total = regions.reduce((sum, [a, b]) => sum + (b - a), 0);
  const weights = words.map((w) => [...w].length + 1);
  const scale = total / weights.reduce((sum, w) => sum + w, 0);
  // Position along the concatenated speech → time in the window.
  const at = (position: number): number => {
    let left = position;
    for (const [a, b] of regions) {
      if (left <= b - a) return a + left;
      left -= b - a;
    }
    return regions.at(-1)![1];
  };
  let position = 0;
  return words.map((word, i) => {
    const from = at(position);
    position += weights[i] * scale;
    return { word, start: from, end: at(position - scale) };
  });
}

/** Who spoke when in a window, as a diarizing recognizer labelled it (track time, ms). */
export interface LabelledTurn {
  label: string;
  startMs: number;
  endMs: number;
}

export interface RecognizedWords {
  words: Word[];
  /** A diarizing recognizer's speaker segments (kept ones, in order); absent when it gave none. */
  speakers?: LabelledTurn[];
  /** The recognizer gave word timestamps; otherwise the times are estimates (merge by text, not by time). */
  timed: boolean;
  /** Words left out because their segment scored as silence or as a loop. */
  droppedBySegment: number;
}

export function recognizedWords(
  transcription: Transcription,
  window: { startMs: number; endMs: number; speech?: readonly (readonly [number, number])[] },
  thresholds: HallucinationThresholds = DEFAULT_THRESHOLDS,
): RecognizedWords {
  const durationS = (window.endMs - window.startMs) / 1000;
  const speech = (window.speech ?? []).map(([a, b]) => [(a - window.startMs) / 1000, (b - window.startMs) / 1000] as const);
  const segments = transcription.segments ?? [];
  const rejected = segments.filter((s) => isHallucinated(s, thresholds));
  const kept = segments.filter((s) => !rejected.includes(s));
  let words: TranscribedWord[];
  const timed = transcription.words !== undefined && (transcription.words.length > 0 || segments.length > 0);
  if (timed) {
    words = transcription.words!.filter((w) => {
      const center = (w.start + w.end) / 2;
      return !rejected.some((s) => center >= s.start && center <= s.end);
    });
  } else if (segments.length > 0 && segments.every((s) => s.end <= durationS + 1)) {
    words = kept.flatMap((s) => spreadWords(s.text, s.start, s.end, speech));
  } else if (segments.length > 0) {
    // Segment times beyond the audio are in another unit (LocalAI gave nanoseconds): their text only.
    words = spreadWords(kept.map((s) => s.text).join(' '), 0, durationS, speech);
  } else {
    words = spreadWords(transcription.text, 0, durationS, speech);
  }
  const toMs = (seconds: number) => Math.round(window.startMs + Math.min(Math.max(seconds, 0), durationS) * 1000);
  const wordCount = (text: string) => text.split(/\s+/).filter(Boolean).length;
  const labelled = kept.filter((s) => s.speaker !== undefined && s.end <= durationS + 1);
  return {
    words: words.map((w) => ({ word: w.word.trim(), startMs: toMs(w.start), endMs: toMs(w.end) })).filter((w) => w.word.length > 0),
    ...(labelled.length > 0 ? { speakers: labelled.map((s) => ({ label: s.speaker!, startMs: toMs(s.start), endMs: toMs(s.end) })) } : {}),
    timed,
    droppedBySegment: timed ? transcription.words!.length - words.length : rejected.reduce((sum, s) => sum + wordCount(s.text), 0),
  };
}
