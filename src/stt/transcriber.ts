/**
 * The speech-to-text provider behind a small interface, and its OpenAI-compatible adapter: any server
 * that speaks `POST /v1/audio/transcriptions` (OpenAI, a self-hosted Whisper, the test server).
 * Retries with backoff on 429/5xx/time-outs and the per-call time-out are the `openai` package's own.
 */
import OpenAI, { toFile } from 'openai';
import { encodeWav } from '../audio/wav.ts';

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
}

export interface Transcription {
  text: string;
  words?: TranscribedWord[];
  segments?: TranscribedSegment[];
}

export interface TranscriptionRequest {
  audio: Int16Array;
  sampleRate: number;
  language?: string;
  prompt?: string;
}

export interface Transcriber {
  transcribe(request: TranscriptionRequest): Promise<Transcription>;
}

export interface OpenAiTranscriberOptions {
  baseURL: string;
  apiKey: string;
  model: string;
  timeoutMs: number;
  maxRetries: number;
  /** Ask for `verbose_json` with word and segment timestamps; off for models that only give text. */
  wordTimestamps: boolean;
}

export class OpenAiTranscriber implements Transcriber {
  private readonly client: OpenAI;
  private readonly options: OpenAiTranscriberOptions;

  constructor(options: OpenAiTranscriberOptions) {
    this.options = options;
    this.client = new OpenAI({ baseURL: options.baseURL, apiKey: options.apiKey, timeout: options.timeoutMs, maxRetries: options.maxRetries });
  }

  async transcribe(request: TranscriptionRequest): Promise<Transcription> {
    const file = await toFile(encodeWav(request.audio, request.sampleRate), 'window.wav', { type: 'audio/wav' });
    const common = {
      file,
      model: this.options.model,
      ...(request.language ? { language: request.language } : {}),
      ...(request.prompt ? { prompt: request.prompt } : {}),
    };
    if (!this.options.wordTimestamps) {
      const result = await this.client.audio.transcriptions.create({ ...common, response_format: 'json' });
      return { text: result.text };
    }
    const result = await this.client.audio.transcriptions.create({
      ...common,
      response_format: 'verbose_json',
      timestamp_granularities: ['word', 'segment'],
    });
    return {
      text: result.text,
      words: result.words?.map((w) => ({ word: w.word, start: w.start, end: w.end })),
      segments: result.segments?.map((s) => ({
        start: s.start,
        end: s.end,
        text: s.text,
        avgLogprob: s.avg_logprob,
        noSpeechProb: s.no_speech_prob,
        compressionRatio: s.compression_ratio,
      })),
    };
  }
}
