/**
 * RNNoise on each track where it does not hold the event loop: the model costs ~4 % of a core per
 * real-time track (40 ms per second of audio), on the thread that carries every track's packets it
 * delayed them all and capped a gateway at ~20 denoised tracks per core. Here each track's stream lives in
 * one of a few worker threads (the one with the fewest streams); its audio goes there in one batch per
 * turn of the event loop for all the streams of that worker (one message, its samples transferred, not a
 * message per packet) and comes back the same way, in order. Track time is unaffected: what is in flight
 * counts as held (`heldSamples`), as the model's own lag does.
 *
 * Nothing is lost if a worker dies: each stream keeps its audio until it comes back, and a stream whose
 * worker is gone gives that audio out as received and passes the rest through untouched (the recognizer
 * then hears the noise, as with suppression off).
 *
 * A worker with more noisy live tracks than its core can denoise in real time falls behind, and every track
 * it holds with it: their captions later and later, the audio in flight growing without end. When its
 * batches come back later than MAX_LAG_MS and that lag has not shrunk for as long again, it sheds a quarter
 * of the streams the model runs on, the ones holding most audio first: they pass through untouched from then
 * on, as if their worker had died. Batches sent before a shedding are not judged (they carry the old load).
 * While a stream arrives faster than real time (an upload, a producer resending a backlog) nothing is shed:
 * that lag is a burst's, it ends, and the stream waits for its audio rather than lose the model.
 */
import { allReady } from './worker-thread.ts';
import { BATCH_OP_SIZE, WorkerBatches, type Batch } from './worker-batches.ts';
import type { DenoisedOutput, DenoiserOptions, StreamDenoiser } from './noise-suppressor.ts';

/**
 * The operations of a batch: `open` (1 for `auto`), `audio` (byte offset, samples) both ways, `flush`,
 * `close`; worker → gateway `flushed` and `engaged` (1 or 0).
 */
export const Op = { open: 0, audio: 1, flush: 2, close: 3, flushed: 4, engaged: 5 } as const;
export type Op = (typeof Op)[keyof typeof Op];

/** A worker whose oldest unanswered batch is older than this sheds streams. */
export const MAX_LAG_MS = 500;
/** Of the streams the model runs on, the share shed at once (at least one). */
const SHED_SHARE = 0.25;
/** Samples per ms of the audio the streams carry (16 kHz). */
const SAMPLES_PER_MS = 16;
/**
 * A stream is live while the audio it has pushed beyond real time (a leaky bucket draining at real time)
 * stays under this: network jitter, not an upload or a resent backlog.
 */
const LIVE_AHEAD_MS = 1000;

export interface DenoiserThreadsOptions {
  /** A worker is gone (its streams go on without noise suppression). */
  onDied?(error: Error): void;
  /** A worker fell `lagMs` behind and let `streams` of its streams go on without noise suppression. */
  onShed?(streams: number, lagMs: number): void;
  /** The worker's module (a test's that dies, or is slow). */
  workerUrl?: URL;
  /** MAX_LAG_MS, for tests. */
  maxLagMs?: number;
}

export class DenoiserThreads {
  private readonly threads: DenoiserThread[];

  private constructor(threads: DenoiserThread[]) {
    this.threads = threads;
  }

  /** Starts `count` workers and waits for their models; rejects if one cannot load. */
  static async start(count: number, options: DenoiserThreadsOptions = {}): Promise<DenoiserThreads> {
    const url = options.workerUrl ?? new URL('./denoiser-worker.ts', import.meta.url);
    const threads = Array.from({ length: Math.max(1, count) }, () => new DenoiserThread(url, options));
    await allReady(threads);
    return new DenoiserThreads(threads);
  }

  /** A track's denoiser, in the worker with the fewest streams; `close()` it when the track ends. */
  stream(options: DenoiserOptions = {}): StreamDenoiser {
    const alive = this.threads.filter((t) => !t.dead);
    if (alive.length === 0) return new ThreadedDenoiser(undefined, options);
    return alive.reduce((a, b) => (b.streamCount < a.streamCount ? b : a)).open(options);
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.close()));
  }
}

let nextStreamId = 0;

class DenoiserThread {
  readonly ready: Promise<void>;
  /** @internal Where a stream's operations go. */
  readonly batches: WorkerBatches;
  private readonly streams = new Map<number, ThreadedDenoiser>();
  private answeredCount = 0;
  /** The first batch sent after the last shedding: those before carry the old load. */
  private firstAfterShed = 0;
  /** The smallest lag since the worker fell behind, and when it was seen; undefined while it keeps up. */
  private behind: { lagMs: number; at: number } | undefined;
  private readonly maxLagMs: number;
  private readonly onShed: DenoiserThreadsOptions['onShed'];

  constructor(url: URL, { onDied, onShed, maxLagMs = MAX_LAG_MS }: DenoiserThreadsOptions) {
    this.maxLagMs = maxLagMs;
    this.onShed = onShed;
    this.batches = new WorkerBatches(url, {
      name: 'denoiser',
      everyMs: 0,
      received: (reply, sentAt) => this.received(reply, sentAt),
      died: (error) => {
        for (const stream of this.streams.values()) stream.orphaned();
        this.streams.clear();
        onDied?.(error);
      },
    });
    this.ready = this.batches.ready;
  }

  get dead(): boolean {
    return this.batches.dead;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  open(options: DenoiserOptions): ThreadedDenoiser {
    const stream = new ThreadedDenoiser(this, options);
    this.streams.set(stream.id, stream);
    this.batches.op(Op.open, stream.id, options.auto ? 1 : 0);
    return stream;
  }

  /** @internal */
  closed(stream: number): void {
    this.streams.delete(stream);
    this.batches.op(Op.close, stream);
  }

  close(): Promise<number> {
    return this.batches.close();
  }

  /** A batch came back `lagMs` after it was sent: a worker that stays behind sheds streams. */
  private judge(lagMs: number, now: number): void {
    if (lagMs <= this.maxLagMs || !this.allLive(now)) {
      this.behind = undefined;
      return;
    }
    if (this.answeredCount <= this.firstAfterShed) return;
    if (!this.behind || lagMs < this.behind.lagMs) {
      this.behind = { lagMs, at: now };
      return;
    }
    if (now - this.behind.at < this.maxLagMs) return;
    this.shed(lagMs);
    this.behind = undefined;
    this.firstAfterShed = this.batches.sent;
  }

  private allLive(now: number): boolean {
    for (const stream of this.streams.values()) if (!stream.isLive(now)) return false;
    return true;
  }

  /** Lets go of a share of the streams the model runs on (most audio in flight first): they pass through from now on. */
  private shed(lagMs: number): void {
    const running = [...this.streams.values()].filter((s) => s.isEngaged);
    const candidates = running.length ? running : [...this.streams.values()];
    const shed = candidates.sort((a, b) => b.heldSamples - a.heldSamples).slice(0, Math.max(1, Math.ceil(candidates.length * SHED_SHARE)));
    for (const stream of shed) {
      this.closed(stream.id);
      stream.orphaned();
    }
    this.onShed?.(shed.length, lagMs);
  }

  private received({ ops, bytes }: Batch, sentAt: number): void {
    const now = performance.now();
    this.answeredCount++;
    for (let i = 0; i < ops.length; i += BATCH_OP_SIZE) {
      const stream = this.streams.get(ops[i + 1]);
      if (!stream) continue;
      const kind = ops[i];
      if (kind === Op.audio) stream.delivered(new Int16Array(bytes.buffer, ops[i + 2], ops[i + 3]));
      else if (kind === Op.flushed) stream.flushDone();
      else if (kind === Op.engaged) stream.engaged(ops[i + 2] === 1);
    }
    this.judge(now - sentAt, now);
  }
}

/** A track's stream in a worker (or, its worker gone, passing audio through as received). */
class ThreadedDenoiser implements StreamDenoiser {
  readonly id = ++nextStreamId;
  private thread: DenoiserThread | undefined;
  private readonly onEngaged: ((engaged: boolean) => void) | undefined;
  private output: DenoisedOutput | undefined;
  /** What was pushed and has not come back, oldest first (given out as received should the worker die). */
  private readonly inFlight = new SampleQueue();
  /** Samples pushed when each flush not yet done was asked for. */
  private readonly flushMarks: number[] = [];
  private pushed = 0;
  private returned = 0;
  /** @internal The model runs on this stream now (with `auto`, while its noise floor calls for it). */
  isEngaged = false;
  private closed = false;

  /** Audio pushed beyond real time as of `lastPushAt`, ms (drains at real time). */
  private aheadMs = 0;
  private lastPushAt = performance.now();

  constructor(thread: DenoiserThread | undefined, options: DenoiserOptions) {
    this.thread = thread;
    this.onEngaged = options.onEngaged;
  }

  /** @internal Its audio comes at real time (not an upload or a resent backlog). */
  isLive(now: number): boolean {
    return this.aheadMs - (now - this.lastPushAt) <= LIVE_AHEAD_MS;
  }

  get heldSamples(): number {
    return this.pushed - this.returned;
  }

  start(output: DenoisedOutput): void {
    this.output = output;
  }

  push(pcm: Int16Array): void {
    if (this.closed || pcm.length === 0) return;
    if (!this.thread) {
      this.output!.audio(pcm);
      return;
    }
    const now = performance.now();
    this.aheadMs = Math.max(0, this.aheadMs - (now - this.lastPushAt)) + pcm.length / SAMPLES_PER_MS;
    this.lastPushAt = now;
    this.inFlight.push(pcm);
    this.pushed += pcm.length;
    const batches = this.thread.batches;
    batches.op(Op.audio, this.id, batches.samplesOf(pcm), pcm.length);
  }

  flush(): void {
    if (this.closed) return;
    if (!this.thread) {
      this.output!.flushed();
      return;
    }
    this.flushMarks.push(this.pushed);
    this.thread.batches.op(Op.flush, this.id);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.thread?.closed(this.id);
    this.thread = undefined;
    this.engaged(false);
  }

  /** @internal The worker's denoised audio for this stream. */
  delivered(pcm: Int16Array): void {
    if (this.closed) return;
    this.inFlight.drop(pcm.length);
    this.returned += pcm.length;
    this.output!.audio(pcm);
  }

  /** @internal The worker's flush is done: what was pushed before it has come back. */
  flushDone(): void {
    if (this.closed) return;
    this.flushMarks.shift();
    this.output!.flushed();
  }

  /** @internal */
  engaged(engaged: boolean): void {
    if (engaged === this.isEngaged) return;
    this.isEngaged = engaged;
    this.onEngaged?.(engaged);
  }

  /** @internal The worker is gone: what it held comes out as received, flushes where they were asked, and from now on audio passes through. */
  orphaned(): void {
    if (this.closed) return;
    this.thread = undefined;
    this.engaged(false);
    for (const mark of this.flushMarks) {
      this.giveBack(mark - this.returned);
      this.output!.flushed();
    }
    this.flushMarks.length = 0;
    this.giveBack(this.pushed - this.returned);
  }

  private giveBack(samples: number): void {
    if (samples <= 0) return;
    const raw = this.inFlight.take(samples);
    this.returned += raw.length;
    this.output!.audio(raw);
  }
}

/** A FIFO of samples in one growing ring. */
class SampleQueue {
  private ring = new Int16Array(4096);
  private start = 0;
  private length = 0;

  push(pcm: Int16Array): void {
    if (this.length + pcm.length > this.ring.length) this.grow(this.length + pcm.length);
    const end = (this.start + this.length) % this.ring.length;
    const first = Math.min(pcm.length, this.ring.length - end);
    this.ring.set(pcm.subarray(0, first), end);
    this.ring.set(pcm.subarray(first), 0);
    this.length += pcm.length;
  }

  drop(samples: number): void {
    const n = Math.min(samples, this.length);
    this.start = (this.start + n) % this.ring.length;
    this.length -= n;
  }

  take(samples: number): Int16Array {
    const n = Math.min(samples, this.length);
    const out = new Int16Array(n);
    const first = Math.min(n, this.ring.length - this.start);
    out.set(this.ring.subarray(this.start, this.start + first));
    out.set(this.ring.subarray(0, n - first), first);
    this.drop(n);
    return out;
  }

  private grow(atLeast: number): void {
    let size = this.ring.length * 2;
    while (size < atLeast) size *= 2;
    const grown = new Int16Array(size);
    const first = Math.min(this.length, this.ring.length - this.start);
    grown.set(this.ring.subarray(this.start, this.start + first));
    grown.set(this.ring.subarray(0, this.length - first), first);
    this.ring = grown;
    this.start = 0;
  }
}
