/**
 * Sends windows to the recognizer through one shared queue: a concurrency limit for the whole gateway,
 * finals ahead of partials. A partial is worth one try (the next one supersedes it). A final is never
 * dropped: when the client's own retries are exhausted it waits and tries again, with growing pauses,
 * until it succeeds or the gateway shuts down, reporting each failure so viewers see that STT is down.
 */
import PQueue from 'p-queue';
import pRetry from 'p-retry';
import type { Word } from '../../client-sdk/src/protocol.ts';
import type { AudioWindow } from '../segmenter/segmenter.ts';
import type { WindowProcessor } from './window-queue.ts';
import { recognizedWords, type HallucinationThresholds } from './recognized-words.ts';
import type { WorkerConfig } from '../config.ts';
import { PIPELINE_SAMPLE_RATE } from '../audio/opus-decoder.ts';
import { OpenAiTranscriber, type Transcriber } from './transcriber.ts';

type SttSettings = Pick<WorkerConfig, 'STT_BASE_URL' | 'OPENAI_API_KEY' | 'STT_MODEL' | 'STT_TIMEOUT_MS' | 'STT_MAX_RETRIES' | 'STT_WORD_TIMESTAMPS' | 'STT_NO_SPEECH_PROB' | 'STT_LOGPROB_THRESHOLD' | 'STT_COMPRESSION_RATIO'>;

/** The STT client and queue from configuration (gateway and upload worker alike). */
export function createWindowTranscriber(config: SttSettings, concurrency: number, transcriber?: Transcriber): WindowTranscriber {
  return new WindowTranscriber(
    transcriber ??
      new OpenAiTranscriber({
        baseURL: config.STT_BASE_URL,
        apiKey: config.OPENAI_API_KEY,
        model: config.STT_MODEL,
        timeoutMs: config.STT_TIMEOUT_MS,
        maxRetries: config.STT_MAX_RETRIES,
        wordTimestamps: config.STT_WORD_TIMESTAMPS,
      }),
    {
      concurrency,
      sampleRate: PIPELINE_SAMPLE_RATE,
      thresholds: { noSpeechProb: config.STT_NO_SPEECH_PROB, logprob: config.STT_LOGPROB_THRESHOLD, compressionRatio: config.STT_COMPRESSION_RATIO },
    },
  );
}

export interface WindowTranscriberOptions {
  concurrency: number;
  sampleRate: number;
  thresholds: HallucinationThresholds;
  /** First pause after a final's attempt fails; doubles up to `maxRetryDelayMs`. Default 1000. */
  retryDelayMs?: number;
  /** Default 30000. */
  maxRetryDelayMs?: number;
}

export interface FinalCallbacks {
  /** A try failed (after the client's own retries); the window is kept and tried again. */
  onFailure(error: Error, attempt: number): void;
  /** A try succeeded after earlier failures. */
  onRecovered(): void;
}

export interface TranscribedWindow {
  words: Word[];
  /** Time spent in the recognizer call itself (not in the queue), milliseconds. */
  sttMs: number;
}

/** Live windows never wait behind an uploaded recording's windows. */
const PRIORITY = { final: 1, partial: 0, upload: -1 };

type WindowAudio = Pick<AudioWindow, 'audio' | 'startMs' | 'endMs'>;

export class WindowTranscriber {
  private readonly queue: PQueue;
  private readonly transcriber: Transcriber;
  private readonly options: Required<WindowTranscriberOptions>;
  private readonly shutdown = new AbortController();

  constructor(transcriber: Transcriber, options: WindowTranscriberOptions) {
    this.transcriber = transcriber;
    this.options = { retryDelayMs: 1000, maxRetryDelayMs: 30000, ...options };
    this.queue = new PQueue({ concurrency: options.concurrency });
  }

  get pending(): number {
    return this.queue.size + this.queue.pending;
  }

  /** One attempt; undefined when it fails (a later partial or the final will cover it). */
  async partial(window: AudioWindow, language?: string, prompt?: string): Promise<TranscribedWindow | undefined> {
    try {
      return await this.queue.add(() => this.attempt(window, language, prompt), { priority: PRIORITY.partial });
    } catch {
      return undefined;
    }
  }

  async final(window: AudioWindow, callbacks: FinalCallbacks, language?: string, prompt?: string): Promise<TranscribedWindow> {
    let failed = false;
    const result = await pRetry(() => this.queue.add(() => this.attempt(window, language, prompt), { priority: PRIORITY.final }), {
      retries: Infinity,
      factor: 2,
      minTimeout: this.options.retryDelayMs,
      maxTimeout: this.options.maxRetryDelayMs,
      randomize: false,
      signal: this.shutdown.signal,
      onFailedAttempt: ({ error, attemptNumber }) => {
        failed = true;
        callbacks.onFailure(error, attemptNumber);
      },
    });
    if (failed) callbacks.onRecovered();
    return result;
  }

  /** One attempt for a window of an uploaded recording, after every live window; the job queue retries. */
  upload(window: WindowAudio, language?: string, prompt?: string): Promise<TranscribedWindow> {
    return this.queue.add(() => this.attempt(window, language, prompt), { priority: PRIORITY.upload });
  }

  /** The job processor of the upload queue. */
  readonly processUploadJob: WindowProcessor = (job, audio) => this.upload({ audio, startMs: job.startMs, endMs: job.endMs }, job.language, job.prompt);

  /** Stops retrying: pending finals reject (the caller keeps their windows). */
  close(): void {
    this.shutdown.abort();
    this.queue.clear();
  }

  private async attempt(window: WindowAudio, language?: string, prompt?: string): Promise<TranscribedWindow> {
    const started = performance.now();
    const transcription = await this.transcriber.transcribe({ audio: window.audio, sampleRate: this.options.sampleRate, language, prompt });
    const sttMs = performance.now() - started;
    return { words: recognizedWords(transcription, window, this.options.thresholds), sttMs };
  }
}
