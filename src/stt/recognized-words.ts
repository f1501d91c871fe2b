/**
 * From a recognizer's answer to the words of a window in track time (pure). Segments Whisper marks as
 * probably silence (high no-speech probability with low confidence) or as looping text (high compression
 * ratio) are dropped: that is where "Thank you for watching" on a silent window comes from.
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

/** Spreads the words of a text evenly over a span, for recognizers that give no word timestamps. */
function spreadWords(text: string, start: number, end: number): TranscribedWord[] {
  const words = text.split(/\s+/).filter(Boolean);
  const step = (end - start) / Math.max(1, words.length);
  return words.map((word, i) => ({ word, start: start + i * step, end: start + (i + 1) * step }));
}

export function recognizedWords(
  transcription: Transcription,
  window: { startMs: number; endMs: number },
  thresholds: HallucinationThresholds = DEFAULT_THRESHOLDS,
): Word[] {
  const durationS = (window.endMs - window.startMs) / 1000;
  const segments = transcription.segments ?? [];
  const rejected = segments.filter((s) => isHallucinated(s, thresholds));
  let words: TranscribedWord[];
  if (transcription.words && (transcription.words.length > 0 || segments.length > 0)) {
    words = transcription.words.filter((w) => {
      const center = (w.start + w.end) / 2;
      return !rejected.some((s) => center >= s.start && center <= s.end);
    });
  } else if (segments.length > 0) {
    words = segments.filter((s) => !rejected.includes(s)).flatMap((s) => spreadWords(s.text, s.start, s.end));
  } else {
    words = spreadWords(transcription.text, 0, durationS);
  }
  const toMs = (seconds: number) => Math.round(window.startMs + Math.min(Math.max(seconds, 0), durationS) * 1000);
  return words
    .map((w) => ({ word: w.word.trim(), startMs: toMs(w.start), endMs: toMs(w.end) }))
    .filter((w) => w.word.length > 0);
}
