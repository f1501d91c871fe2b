/**
 * Sends windows to the recognizer through one shared queue: a concurrency limit for the whole gateway,
 * finals ahead of partials. A partial is worth one try (the next one supersedes it). A final is never
 * dropped: when the client's own retries are exhausted it waits and tries again, with growing pauses,
 * until it succeeds or the gateway shuts down, reporting each failure so viewers see that STT is down.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { openBytes, sealBytes } from '../archive/data-keys.ts';
import pRetry from 'p-retry';
import type { Word } from '../../client-sdk/src/protocol.ts';
import type { AudioWindow } from '../segmenter/segmenter.ts';
import type { WindowProcessor } from './window-queue.ts';
import { recognizedWords, type HallucinationThresholds } from './recognized-words.ts';
import type { Transcriber } from './transcriber.ts';

export interface WindowTranscriberOptions {
  concurrency: number;
  sampleRate: number;
  thresholds: HallucinationThresholds;
  /** First pause after a final's attempt fails; doubles up to `maxRetryDelayMs`. Default 1000. */
  retryDelayMs?: number;
  /** Default 30000. */
  maxRetryDelayMs?: number;
  /**
   * Audio of waiting finals held in memory at most, seconds; past it a failing window's audio is spilled
   * to `spillDir`, encrypted. Default: unbounded (no spill directory).
   */
  backlogMemoryS?: number;
  spillDir?: string;
  /** Told whenever the backlog changes (metrics). */
  onBacklog?(backlog: SttBacklog): void;
}

export interface SttBacklog {
  windows: number;
  audioSeconds: number;
  /** Of `windows`, those whose audio waits on disk. */
  spilled: number;
}

/**
 * Final windows' audio spilled during an STT outage: sealed under a key that lives only in this process
 * (the windows themselves die with it), 0600 files in a 0700 directory emptied at start.
 */
class BacklogSpill {
  private readonly dir: string;
  private readonly key = randomBytes(32);
  private ready: Promise<unknown> | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  async put(audio: Int16Array): Promise<string> {
    this.ready ??= rm(this.dir, { recursive: true, force: true }).then(() => mkdir(this.dir, { recursive: true, mode: 0o700 }));
    await this.ready;
    const name = randomUUID();
    await writeFile(join(this.dir, name), sealBytes(this.key, new Uint8Array(audio.buffer, audio.byteOffset, audio.byteLength), name), { mode: 0o600 });
    return name;
  }

  async take(name: string): Promise<Int16Array> {
    const bytes = openBytes(this.key, await readFile(join(this.dir, name)), name);
    return new Int16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  }

  async remove(name: string): Promise<void> {
    await rm(join(this.dir, name), { force: true });
  }
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
  private readonly options: WindowTranscriberOptions & Required<Pick<WindowTranscriberOptions, 'retryDelayMs' | 'maxRetryDelayMs'>>;
  private readonly shutdown = new AbortController();
  private readonly spill: BacklogSpill | undefined;
  private readonly backlog: SttBacklog = { windows: 0, audioSeconds: 0, spilled: 0 };
  /** Samples of waiting finals held in memory. */
  private heldSamples = 0;

  constructor(transcriber: Transcriber, options: WindowTranscriberOptions) {
    this.transcriber = transcriber;
    this.options = { retryDelayMs: 1000, maxRetryDelayMs: 30000, ...options };
    this.queue = new PQueue({ concurrency: options.concurrency });
    this.spill = options.spillDir ? new BacklogSpill(options.spillDir) : undefined;
  }

  /** Final windows waiting for STT now (for status and metrics). */
  get sttBacklog(): SttBacklog {
    return { ...this.backlog };
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

  /**
   * Transcribes a final window, retrying until it succeeds or the gateway shuts down. While it waits
   * through failures its audio counts against the memory bound; past the bound it is spilled to disk
   * (encrypted) and read back for each attempt, so an outage of any length cannot exhaust memory.
   */
  async final(window: AudioWindow, callbacks: FinalCallbacks, language?: string, prompt?: string): Promise<TranscribedWindow> {
    const span = { startMs: window.startMs, endMs: window.endMs };
    const samples = window.audio.length;
    let held: Int16Array | undefined = window.audio;
    let spilled: string | undefined;
    this.changeBacklog(1, samples, 0);
    this.heldSamples += samples;
    let failed = false;
    try {
      const result = await pRetry(
        () => this.queue.add(async () => this.attempt({ ...span, audio: held ?? (await this.spill!.take(spilled!)) }, language, prompt), { priority: PRIORITY.final }),
        {
          retries: Infinity,
          factor: 2,
          minTimeout: this.options.retryDelayMs,
          maxTimeout: this.options.maxRetryDelayMs,
          randomize: false,
          signal: this.shutdown.signal,
          onFailedAttempt: async ({ error, attemptNumber }) => {
            failed = true;
            callbacks.onFailure(error, attemptNumber);
            if (held && this.spill && this.heldSamples > (this.options.backlogMemoryS ?? Infinity) * this.options.sampleRate) {
              spilled = await this.spill.put(held);
              // The caller's window object keeps only its times from now on.
              window.audio = new Int16Array(0);
              held = undefined;
              this.heldSamples -= samples;
              this.changeBacklog(0, 0, 1);
            }
          },
        },
      );
      if (failed) callbacks.onRecovered();
      return result;
    } finally {
      if (held) this.heldSamples -= samples;
      this.changeBacklog(-1, -samples, spilled ? -1 : 0);
      if (spilled) await this.spill!.remove(spilled).catch(() => undefined);
    }
  }

  private changeBacklog(windows: number, samples: number, spilled: number): void {
    this.backlog.windows += windows;
    this.backlog.audioSeconds += samples / this.options.sampleRate;
    this.backlog.spilled += spilled;
    this.options.onBacklog?.(this.sttBacklog);
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
