/**
 * Track recordings spooled in a worker thread: the Ogg muxing, the age encryption of the full file and of
 * the one-second slices, and their file writes (a fifth of the pipeline's CPU) run beside the event loop
 * that carries every track's audio, on another core. A track's packets are gathered as they arrive and
 * go to the worker every FLUSH_EVERY_MS, all tracks' together, copied into one buffer that is moved (not
 * copied again) to the worker (a message per packet would cost more than the work it moves); the worker
 * applies them in order to each track's TrackArchive.
 * The spool on disk is the same as in process, so crash recovery reads it the same way.
 */
import { Worker } from 'node:worker_threads';
import { BatchWriter, type Batch } from '../audio/worker-batches.ts';
import { PcmToOpus, type CompletedArchive, type TrackArchiveOptions, type TrackSpool, type TrackSpools } from './track-archive.ts';

/** An operation on a track's spool: `packet` (byte offset, length), `silence` (ms). */
export const SpoolOp = { packet: 0, silence: 1 } as const;

export type ToArchiveWorker =
  | { type: 'open'; id: number; options: TrackArchiveOptions }
  /** Each op's stream is a spool's id. */
  | { type: 'ops'; batch: Batch }
  | { type: 'close'; id: number };

export type FromArchiveWorker = { type: 'opened'; id: number; error?: string } | { type: 'closed'; id: number; completed?: CompletedArchive; error?: string };

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** How long packets wait to go to the worker together: a crash loses at most this much more recording. */
const FLUSH_EVERY_MS = 20;

export class ArchiveThread implements TrackSpools {
  private worker: Worker | undefined;
  private readonly pending = new Map<string, Pending>();
  private nextId = 0;
  /** What the tracks sent since the last flush. */
  private readonly batch = new BatchWriter();
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly flushNow = () => this.flush();

  async open(options: TrackArchiveOptions): Promise<TrackSpool> {
    const id = ++this.nextId;
    const worker = this.start();
    await this.ask(worker, `opened:${id}`, { type: 'open', id, options });
    // PCM is encoded to Opus here: the worker runs no native code, so it can be stopped at any instant
    // (a native addon's call cut short by a worker's termination aborts the process).
    let encoder: PcmToOpus | undefined;
    return {
      packet: (packet) => this.add(id, packet),
      pcm: (samples) => (encoder ??= new PcmToOpus()).encode(samples, (packet) => this.add(id, packet)),
      silence: (ms) => this.addSilence(id, ms),
      close: async () => {
        this.flush();
        return (await this.ask(worker, `closed:${id}`, { type: 'close', id })) as CompletedArchive;
      },
    };
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(new URL('./archive-worker.ts', import.meta.url));
    worker.unref();
    worker.on('message', (message: FromArchiveWorker) => {
      const key = `${message.type}:${message.id}`;
      const request = this.pending.get(key);
      if (!request) return;
      this.pending.delete(key);
      if (this.pending.size === 0) worker.unref();
      if (message.error !== undefined) request.reject(new Error(message.error));
      else request.resolve(message.type === 'closed' ? message.completed : undefined);
    });
    const fail = (error: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const request of this.pending.values()) request.reject(error);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the archive worker exited (${code}); spools it held stay on disk for recovery`)));
    this.worker = worker;
    return worker;
  }

  private ask(worker: Worker, key: string, message: ToArchiveWorker): Promise<unknown> {
    if (this.worker !== worker) return Promise.reject(new Error('the archive worker is gone; spools it held stay on disk for recovery'));
    return new Promise((resolve, reject) => {
      this.pending.set(key, { resolve, reject });
      worker.ref();
      worker.postMessage(message);
    });
  }

  private add(id: number, payload: Uint8Array): void {
    this.batch.op(SpoolOp.packet, id, this.batch.bytesOf(payload), payload.length);
    this.schedule();
  }

  private addSilence(id: number, ms: number): void {
    this.batch.op(SpoolOp.silence, id, ms);
    this.schedule();
  }

  private schedule(): void {
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(this.flushNow, FLUSH_EVERY_MS);
    this.flushTimer.unref();
  }

  /** Sends what was gathered: one message, its buffers moved. */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.batch.empty) return;
    const message: ToArchiveWorker = { type: 'ops', batch: this.batch.take() };
    // Without a worker (it died) the packets have nowhere to go; the spools' slices on disk are recovered.
    this.worker?.postMessage(message, [message.batch.ops.buffer, message.batch.bytes.buffer]);
  }
}
