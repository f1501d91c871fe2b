/**
 * A recognizer's answer, whatever server gave it, to one `Transcription` (pure). OpenAI-compatible servers
 * agree on `text` and little else: OpenAI and Groq put word timestamps in a top-level `words` list,
 * speaches in both `words` and each segment's `words`, whisper.cpp's server only in each segment's
 * `words` and as sub-word tokens (" hyper", "tension"); vLLM sends `duration` as a string and no words;
 * text-only models send `{ text }`. What cannot be read as an answer (an HTML page, an empty body, another
 * API's JSON, whisper.cpp's `{"error": "..."}` with status 200) is a refusal, not an outage: retrying the
 * same request cannot change it. A diarizing model (`diarized_json`) gives segments with a `speaker` and no
 * words.
 */
import { z } from 'zod';
export interface TranscribedWord {
  word: string;
  /** Seconds from the start of the audio sent. */
  start: number;
  end: number;
}

export interface TranscribedSegment {
  start: number;
  end: number;
  text: string;
  avgLogprob?: number;
  noSpeechProb?: number;
  compressionRatio?: number;
  /** A diarizing model's label: a known speaker's name, or `A`, `B`, … in order within this audio. */
  speaker?: string;
}

export interface Transcription {
  text: string;
  /** Present when the recognizer gave word timestamps. */
  words?: TranscribedWord[];
  /** Present when it gave segment timestamps. */
  segments?: TranscribedSegment[];
  /** Which of several endpoints (STT_BASE_URLS) answered. */
  endpoint?: string;
}

export type ResponseFormat = 'verbose_json' | 'diarized_json' | 'json' | 'text';

/** A recognizer will keep refusing this request (configuration, credentials, model, format): never an outage. */
export class RecognizerRefused extends Error {
  override name = 'RecognizerRefused';
  /** HTTP status of the refusal; 200 when the answer itself was unusable. */
  readonly status: number | undefined;

  constructor(message: string, status: number | undefined) {
    super(message);
    this.status = status;
  }
}

const seconds = z.union([z.number(), z.string().regex(/^-?\d+(\.\d+)?$/).transform(Number)]).pipe(z.number().finite());

const wordSchema = z.object({ word: z.string(), start: seconds, end: seconds }).loose();

const segmentSchema = z
  .object({
    start: seconds,
    end: seconds,
    text: z.string(),
    avg_logprob: seconds.optional(),
    no_speech_prob: seconds.optional(),
    compression_ratio: seconds.optional(),
    speaker: z.string().optional(),
    words: z.array(wordSchema).nullish(),
  })
  .loose();

const answerSchema = z
  .object({
    text: z.string(),
    words: z.array(wordSchema).nullish(),
    segments: z.array(segmentSchema).nullish(),
  })
  .loose();

function excerpt(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 120 ? `${flat.slice(0, 120)}…` : flat;
}

/**
 * Sub-word tokens (whisper.cpp: a token that starts with a space starts a word) joined into words. A list
 * in which no item starts with whitespace is already a list of words (OpenAI, Groq).
 */
export function joinTokens(tokens: readonly TranscribedWord[]): TranscribedWord[] {
  if (!tokens.some((t) => /^\s/.test(t.word))) return tokens.map((t) => ({ ...t }));
  const words: TranscribedWord[] = [];
  for (const token of tokens) {
    const last = words.at(-1);
    if (last && !/^\s/.test(token.word) && token.word.trim()) {
      last.word += token.word;
      last.end = Math.max(last.end, token.end);
    } else if (token.word.trim()) {
      words.push({ word: token.word.trim(), start: token.start, end: token.end });
    }
  }
  return words;
}

/** Timestamps as a recognizer may give them (overlapping, out of order, end before start) made usable. */
function ordered(words: TranscribedWord[]): TranscribedWord[] {
  return words
    .map((w) => ({ word: w.word.trim(), start: Math.max(0, w.start), end: Math.max(0, w.start, w.end) }))
    .filter((w) => w.word.length > 0)
    .sort((a, b) => a.start - b.start);
}

export function readAnswer(body: unknown, format: ResponseFormat): Transcription {
  if (body === undefined || body === null || body === '') {
    throw new RecognizerRefused('the recognizer answered with an empty body', 200);
  }
  if (typeof body === 'string') {
    const looksLikeMarkup = /^\s*</.test(body);
    if (format === 'text' && !looksLikeMarkup) return { text: body.trim() };
    throw new RecognizerRefused(`the recognizer answered with text where JSON was expected: "${excerpt(body)}"`, 200);
  }
  if (typeof body === 'object' && 'error' in body && !('text' in body)) {
    const error = (body as { error: unknown }).error;
    const message = typeof error === 'string' ? error : JSON.stringify(error);
    throw new RecognizerRefused(`the recognizer answered with an error: ${excerpt(message)}`, 200);
  }
  const parsed = answerSchema.safeParse(body);
  if (!parsed.success) {
    throw new RecognizerRefused(`the recognizer's answer is not a transcription (no text): ${excerpt(JSON.stringify(body))}`, 200);
  }
  const answer = parsed.data;
  const transcription: Transcription = { text: answer.text.trim() };
  const segmentWords = (answer.segments ?? []).flatMap((s) => s.words ?? []);
  const words = answer.words && answer.words.length > 0 ? answer.words : segmentWords;
  if (words.length > 0 || answer.words) transcription.words = ordered(joinTokens(words));
  if (answer.segments) {
    transcription.segments = answer.segments.map(
      (s): TranscribedSegment => ({
        start: Math.max(0, s.start),
        end: Math.max(0, s.start, s.end),
        text: s.text,
        avgLogprob: s.avg_logprob,
        noSpeechProb: s.no_speech_prob,
        compressionRatio: s.compression_ratio,
        ...(s.speaker !== undefined ? { speaker: s.speaker } : {}),
      }),
    );
  }
  return transcription;
}
