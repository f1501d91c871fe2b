/**
 * The job queue for the windows of uploaded recordings: one job per window, each attempted up to
 * `attempts` times with exponential backoff, and kept as dead-lettered when every attempt failed. Two
 * implementations share this interface and these rules: BullMQ on Redis (redis-window-queue.ts), for
 * workers in other processes and machines, and the embedded in-process queue below.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { AudioSealer } from '../archive/data-keys.ts';
import { join } from 'node:path';
import PQueue from 'p-queue';
import pRetry, { AbortError } from 'p-retry';
import type { LabelledTurn } from './recognized-words.ts';
import type { Word } from '../../client-sdk/src/protocol.ts';

export interface WindowJob {
  /** Unique across the queue: `<sessionId>.<trackId>.<index>`. */
  id: string;
  sessionId: string;
  trackId: string;
  /** Position of the window in the recording (0-based). */
  index: number;
  startMs: number;
  endMs: number;
  /** Its stretches of VAD speech (track time), for word times when the recognizer gives none. */
  speech?: [number, number][];
  language?: string;
  prompt?: string;
  /** The session's wrapped data key (base64): the window's audio is stored encrypted under it. */
  dataKey: string;
}

/** What names a window's stored audio and the key it is sealed with. */
export type WindowAudioRef = Pick<WindowJob, 'id' | 'dataKey'>;

export interface WindowJobResult {
  words: Word[];
  /** The words' times are the recognizer's; absent or false: estimates. */
  timed?: boolean;
  sttMs: number;
  /** A diarizing recognizer's speaker segments of the window (track time). */
  speakers?: LabelledTurn[];
  /** Words dropped as invented. */
  dropped?: number;
}

/** Transcribes one window's audio (16 kHz PCM16); throws to fail the attempt. */
export type WindowProcessor = (job: WindowJob, audio: Int16Array) => Promise<WindowJobResult>;

export interface WindowQueueListener {
  completed(job: WindowJob, result: WindowJobResult, attempts: number): void;
  /** Every attempt failed: the job is dead-lettered until `retry` is called. */
  dead(job: WindowJob, error: string, attempts: number): void;
}

export interface RetryPolicy {
  /** Tries per job, the first included. */
  attempts: number;
  /** Pause after the first failed try; doubled after each further one. */
  backoffMs: number;
}

export type ResumedJob =
  | { state: 'completed'; result: WindowJobResult; attempts: number }
  | { state: 'dead'; error: string; attempts: number }
  | { state: 'queued' }
  | { state: 'released' };

/** Upload priorities: a `high` recording's windows are taken before `normal` ones. */
export type UploadPriority = 'high' | 'normal';

export interface WindowQueue {
  readonly description: string;
  /** Stores each window's audio where workers can read it, then queues the jobs. */
  add(jobs: { job: WindowJob; audio: Int16Array }[], priority: UploadPriority): Promise<void>;
  /** Queues dead-lettered jobs again, with a fresh set of attempts. */
  retry(jobs: WindowJob[]): Promise<void>;
  /** The result is stored elsewhere now: forget the job and its audio. */
  release(job: WindowJob): Promise<void>;
  listen(listener: WindowQueueListener): void;
  /**
   * After a gateway restart: where a job stands. A job this queue no longer holds is queued again if its
   * audio is still stored; `released` when neither is left (its result was stored before the restart).
   */
  resume(job: WindowJob): Promise<ResumedJob>;
  /** Runs jobs in this process. */
  startWorker(processor: WindowProcessor, concurrency: number): void;
  close(): Promise<void>;
}

/** Where window audio waits for a worker, encrypted under the session's data key. */
export interface WindowAudioStore {
  put(ref: WindowAudioRef, audio: Int16Array): Promise<void>;
  /** undefined when the audio is gone (released, or expired). */
  get(ref: WindowAudioRef): Promise<Int16Array | undefined>;
  delete(id: string): Promise<void>;
}

export function pcmFromBytes(bytes: Uint8Array): Int16Array {
  const pcm = new Int16Array(bytes.byteLength >> 1);
  new Uint8Array(pcm.buffer).set(bytes.subarray(0, pcm.byteLength));
  return pcm;
}

export function pcmBytes(audio: Int16Array): Buffer {
  return Buffer.from(audio.buffer, audio.byteOffset, audio.byteLength);
}

/**
 * Window audio in files of a local directory (the embedded queue: it never holds a recording in memory),
 * sealed (AES-256-GCM under the session's data key), 0600 in a 0700 directory.
 */
export class DirectoryWindowAudio implements WindowAudioStore {
  private readonly dir: string;
  private readonly sealer: AudioSealer;

  constructor(dir: string, sealer: AudioSealer) {
    this.dir = dir;
    this.sealer = sealer;
  }

  async put(ref: WindowAudioRef, audio: Int16Array): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFile(this.path(ref.id), await this.sealer.seal(ref.dataKey, pcmBytes(audio), ref.id), { mode: 0o600 });
  }

  async get(ref: WindowAudioRef): Promise<Int16Array | undefined> {
    const bytes = await readFile(this.path(ref.id)).catch(() => undefined);
    return bytes && pcmFromBytes(await this.sealer.open(ref.dataKey, bytes, ref.id));
  }

  async delete(id: string): Promise<void> {
    await rm(this.path(id), { force: true });
  }

  private path(id: string): string {
    // Dots encoded too: no id can name `.` or `..`.
    return join(this.dir, `${encodeURIComponent(id).replace(/\./g, '%2E')}.sealed`);
  }
}

const IN_PROCESS_PRIORITY: Record<UploadPriority, number> = { high: 1, normal: 0 };

/**
 * The embedded queue (no Redis): jobs live in this process. The retry rules are the same as BullMQ's,
 * through p-retry; what it cannot do is survive the process, which is what REDIS_URL is for.
 */
export class InProcessWindowQueue implements WindowQueue {
  readonly description = 'in-process';
  private readonly audio: WindowAudioStore;
  private readonly policy: RetryPolicy;
  private readonly running = new PQueue({ concurrency: 1 });
  private readonly stopping = new AbortController();
  private processor: WindowProcessor | undefined;
  private listener: WindowQueueListener | undefined;

  constructor(audio: WindowAudioStore, policy: RetryPolicy) {
    this.audio = audio;
    this.policy = policy;
  }

  async add(jobs: { job: WindowJob; audio: Int16Array }[], priority: UploadPriority): Promise<void> {
    for (const { job, audio } of jobs) await this.audio.put(job, audio);
    for (const { job } of jobs) this.schedule(job, priority);
  }

  async retry(jobs: WindowJob[]): Promise<void> {
    for (const job of jobs) this.schedule(job, 'high');
  }

  release(job: WindowJob): Promise<void> {
    return this.audio.delete(job.id);
  }

  listen(listener: WindowQueueListener): void {
    this.listener = listener;
  }

  async resume(job: WindowJob): Promise<ResumedJob> {
    if (!(await this.audio.get(job))) return { state: 'released' };
    this.schedule(job, 'normal');
    return { state: 'queued' };
  }

  startWorker(processor: WindowProcessor, concurrency: number): void {
    this.processor = processor;
    this.running.concurrency = concurrency;
  }

  async close(): Promise<void> {
    this.stopping.abort();
    this.running.clear();
    await this.running.onIdle();
  }

  private schedule(job: WindowJob, priority: UploadPriority): void {
    let attempts = 0;
    const attempt = () =>
      this.running.add(async () => {
        attempts++;
        const audio = await this.audio.get(job);
        if (!audio) throw new AbortError(`audio of window ${job.id} is gone`);
        if (!this.processor) throw new Error('no worker runs in this process');
        return this.processor(job, audio);
      }, { priority: IN_PROCESS_PRIORITY[priority] });
    pRetry(attempt, {
      retries: this.policy.attempts - 1,
      factor: 2,
      minTimeout: this.policy.backoffMs,
      randomize: false,
      signal: this.stopping.signal,
    }).then(
      (result) => this.listener?.completed(job, result, attempts),
      (error: Error) => {
        if (!this.stopping.signal.aborted) this.listener?.dead(job, error.message, attempts);
      },
    );
  }
}
