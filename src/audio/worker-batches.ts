/**
 * Work for a worker thread sent in batches, both ways: every stream's operations of a while in one message,
 * its bytes transferred, not copied. A message per packet cost more than the work it moved (each message is
 * paid on both threads). Shared by the pools that run each track's DSP beside the event loop (decoding and
 * VAD, noise suppression); what their operations mean is theirs. An operation is BATCH_OP_SIZE int32:
 * kind, stream, and three arguments.
 */
import { Worker } from 'node:worker_threads';
import { workerReady } from './worker-thread.ts';

export const BATCH_OP_SIZE = 5;

/** Either way: the operations, and the bytes they point into (each part at a multiple of 4, so Int16 and Float32 views fit). */
export interface Batch {
  ops: Int32Array<ArrayBuffer>;
  bytes: Uint8Array<ArrayBuffer>;
}

export interface WorkerBatchesOptions {
  /** Names the worker in its errors. */
  name: string;
  workerData?: unknown;
  /** A batch goes at least this long after the previous one (0: at the next turn of the event loop). */
  everyMs: number;
  /** The worker's answer to the oldest batch not answered yet, which was sent at `sentAt` (performance.now()). */
  received(reply: Batch, sentAt: number): void;
  /** The worker is gone (called once). */
  died(error: Error): void;
}

/** Operations and bytes appended to growing buffers, taken out as one batch (the buffers stay for the next). */
export class BatchWriter {
  private ops = new Int32Array(1024);
  private opsUsed = 0;
  private bytes = new Uint8Array(65536);
  private samples = new Int16Array(this.bytes.buffer);
  private floats = new Float32Array(this.bytes.buffer);
  private bytesUsed = 0;

  get empty(): boolean {
    return this.opsUsed === 0;
  }

  /** The last operation's `a`, `b` or `c` (0, 1, 2) as written, or undefined without one. */
  last(kind: number, stream: number, argument: number): number | undefined {
    const at = this.opsUsed - BATCH_OP_SIZE;
    return at >= 0 && this.ops[at] === kind && this.ops[at + 1] === stream ? this.ops[at + 2 + argument] : undefined;
  }

  /** Adds `by` to the last operation's argument (one that `last` found). */
  extendLast(argument: number, by: number): void {
    this.ops[this.opsUsed - BATCH_OP_SIZE + 2 + argument] += by;
  }

  op(kind: number, stream: number, a = 0, b = 0, c = 0): void {
    if (this.opsUsed + BATCH_OP_SIZE > this.ops.length) {
      const grown = new Int32Array(this.ops.length * 2);
      grown.set(this.ops);
      this.ops = grown;
    }
    const ops = this.ops;
    const at = this.opsUsed;
    ops[at] = kind;
    ops[at + 1] = stream;
    ops[at + 2] = a;
    ops[at + 3] = b;
    ops[at + 4] = c;
    this.opsUsed = at + BATCH_OP_SIZE;
  }

  /** Copies `data` in, returns its byte offset. */
  bytesOf(data: Uint8Array): number {
    const at = this.reserve(data.length);
    this.bytes.set(data, at);
    return at;
  }

  /** Copies `pcm` in, returns its byte offset. */
  samplesOf(pcm: Int16Array): number {
    const at = this.reserve(pcm.byteLength);
    this.samples.set(pcm, at >> 1);
    return at;
  }

  /** Copies `values` in, returns their byte offset. */
  floatsOf(values: Float32Array): number {
    const at = this.reserve(values.byteLength);
    this.floats.set(values, at >> 2);
    return at;
  }

  /** The batch written so far; the writer starts over. */
  take(): Batch {
    const batch: Batch = { ops: this.ops.slice(0, this.opsUsed), bytes: this.bytes.slice(0, this.bytesUsed) };
    this.opsUsed = 0;
    this.bytesUsed = 0;
    return batch;
  }

  private reserve(length: number): number {
    const at = (this.bytesUsed + 3) & ~3;
    if (at + length > this.bytes.length) {
      let size = this.bytes.length * 2;
      while (size < at + length) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.bytes.subarray(0, this.bytesUsed));
      this.bytes = grown;
      this.samples = new Int16Array(grown.buffer);
      this.floats = new Float32Array(grown.buffer);
    }
    this.bytesUsed = at + length;
    return at;
  }
}

/** The gateway's side of one worker: operations written here go in the next batch. */
export class WorkerBatches extends BatchWriter {
  readonly ready: Promise<void>;
  dead = false;
  /** Batches sent so far. */
  sent = 0;
  private readonly worker: Worker;
  private readonly everyMs: number;
  private scheduled = false;
  private lastSentAt = -Infinity;
  /** When each batch not answered was sent, oldest first: while there are, the worker keeps the process alive. */
  private readonly sentAt: number[] = [];
  private readonly sendNow = () => this.send();

  constructor(url: URL, options: WorkerBatchesOptions) {
    super();
    this.everyMs = options.everyMs;
    this.worker = new Worker(url, { workerData: options.workerData });
    this.worker.unref();
    this.ready = workerReady(this.worker, options.name);
    this.worker.on('message', (message: Batch | { ready?: true }) => {
      if (!('ops' in message)) return;
      const sentAt = this.sentAt.shift()!;
      if (this.sentAt.length === 0) this.worker.unref();
      options.received(message, sentAt);
    });
    const died = (error: Error) => {
      if (this.dead) return;
      this.dead = true;
      options.died(error);
    };
    this.worker.on('error', died);
    this.worker.on('exit', (code) => died(new Error(`the ${options.name} worker exited (${code})`)));
  }

  override op(kind: number, stream: number, a = 0, b = 0, c = 0): void {
    super.op(kind, stream, a, b, c);
    if (this.scheduled) return;
    this.scheduled = true;
    const waitMs = this.lastSentAt + this.everyMs - performance.now();
    if (waitMs > 0) setTimeout(this.sendNow, waitMs);
    else setImmediate(this.sendNow);
  }

  close(): Promise<number> {
    this.dead = true;
    // Unreferenced, a terminating worker would let the process exit before its exit is awaited.
    this.worker.ref();
    return this.worker.terminate();
  }

  private send(): void {
    this.scheduled = false;
    if (this.dead || this.empty) return;
    const batch = this.take();
    this.lastSentAt = performance.now();
    if (this.sentAt.push(this.lastSentAt) === 1) this.worker.ref();
    this.sent++;
    this.worker.postMessage(batch, [batch.ops.buffer, batch.bytes.buffer]);
  }
}
