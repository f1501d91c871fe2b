/**
 * Each live track's Opus decoding, VAD and voice features where they do not hold the event loop: on one
 * thread they were a third of what every track cost it (decoding alone the largest part), and the delay
 * they added to every packet grew with the tracks. Each track's stream lives in one of a few worker threads (the one with the
 * fewest streams); its units go there in one batch for all the streams of that worker, at most every
 * BATCH_EVERY_MS (one message, the packets' and samples' bytes transferred, not a message per packet), and
 * its whole 20 ms frames come back the same way with the VAD's decisions, in order (with the voice
 * features of the speech frames its diarizer or voice print would analyse). The gateway keeps the
 * track's timeline itself (`OpusTimeline`: what each unit stands for is known without decoding it), so
 * what is in flight counts as held (`heldSamples`) and nothing waits on the worker but the frames.
 *
 * If a worker dies, its streams go on in the gateway: each keeps the units the worker has not answered
 * for, and they are decoded here from then on, after silence as long as what the worker's framer held
 * (under one frame: the track's time is kept, that part of a frame is lost).
 */
import { allReady } from './worker-thread.ts';
import { BATCH_OP_SIZE, WorkerBatches, type Batch } from './worker-batches.ts';
import { FrameAnalyzer, type FrameOutput } from './frame-analyzer.ts';
import { SpectralDenoiser } from './spectral-denoiser.ts';
import { trackVad, type VadSettings } from './vad.ts';
import { FEATURES, type SpeechSampler } from './voice-features.ts';

/**
 * A batch waits this long after the previous one: with tracks' packets spread over each 20 ms, a message per
 * turn of the event loop cost more than the decoding it moved (each message is paid on both threads). At
 * 5 ms, posting batches was still about 6 % of the event loop's busy time with 75 tracks (bench:capacity,
 * profiled); 10 ms halves the messages and adds at most 5 ms to a packet's way (the goal is under 50 ms).
 */
export const BATCH_EVERY_MS = 10;

/**
 * The operations of a batch. Gateway → worker: `open` (speech frames heard and taken so far by its
 * sampler, 1 if the spectral noise suppressor runs before the VAD), `listen` (the sampling plan: all,
 * every, max), `opus` (byte offset, length, skip), `conceal`
 * (count, skip), `pcm` (byte offset, samples), `flush`, `close`. Worker → gateway: `frames` (byte offset,
 * count, 1 if the VAD called them speech: a run of frames with one decision), `voiced` (a speech frame's
 * byte offset, and its voice features'), `flushed`, `done` (units taken, samples its framer and suppressor
 * hold), `engaged` (1 when the suppressor starts, 0 when it lets go).
 */
export const DspOp = { open: 0, listen: 1, opus: 2, conceal: 3, pcm: 4, flush: 5, close: 6, frames: 7, voiced: 8, flushed: 9, done: 10, engaged: 11 } as const;
export type DspOp = (typeof DspOp)[keyof typeof DspOp];

/** What a track's front end gives back: its whole frames in order, and each flush once done. */
export interface FramedOutput extends FrameOutput {
  /** The audio pushed before the flush has come out, its last partial frame padded with silence. */
  flushed(): void;
}

/** A track's decoding and VAD, elsewhere: units in, frames with the VAD's decisions out, later and in order. */
export interface TrackFrontEnd {
  start(output: FramedOutput): void;
  /** A packet that stands for `samples` (its timeline's count), the first `skip` of them already in the track. */
  opus(packet: Buffer, samples: number, skip: number): void;
  /** `count` lost packets, concealed, `samples` in all. */
  conceal(count: number, samples: number, skip: number): void;
  pcm(samples: Int16Array): void;
  flush(): void;
  close(): void;
  /** Samples pushed that have not come back in frames. */
  readonly heldSamples: number;
}

export interface DspThreadsOptions {
  /** A worker is gone (its streams go on in the gateway). */
  onDied?(error: Error): void;
  /** The worker's module (a test's that dies). */
  workerUrl?: URL;
}

export class DspThreads {
  private readonly threads: DspThread[];
  private readonly vad: VadSettings;
  private readonly frameSamples: number;

  private constructor(threads: DspThread[], vad: VadSettings, frameSamples: number) {
    this.threads = threads;
    this.vad = vad;
    this.frameSamples = frameSamples;
  }

  /** Starts `count` workers making each track's VAD from `vad`; rejects if one cannot start. */
  static async start(count: number, vad: VadSettings, frameSamples: number, options: DspThreadsOptions = {}): Promise<DspThreads> {
    const url = options.workerUrl ?? new URL('./dsp-worker.ts', import.meta.url);
    const threads = Array.from({ length: Math.max(1, count) }, () => new DspThread(url, { vad, frameSamples }, options.onDied));
    await allReady(threads);
    return new DspThreads(threads, vad, frameSamples);
  }

  /**
   * A track's front end, in the worker with the fewest streams; `close()` it when the track ends.
   * `voice`: the speech frames whose voice features the track needs (a diarizer's, a voice print's), from
   * its counts now: the worker computes them with the frames it picks (the track, following the same
   * sampler, takes them and computes what it picks that comes without). `denoise`: the spectral noise
   * suppressor runs before the VAD where the track's floor says steady noise is there (`auto`), and
   * `onEngaged` is told when it starts and lets go.
   */
  stream(voice?: SpeechSampler, denoise?: { onEngaged?(engaged: boolean): void }): TrackFrontEnd {
    const local = (onEngaged: (engaged: boolean) => void) =>
      new FrameAnalyzer(trackVad(this.vad), this.frameSamples, denoise ? new SpectralDenoiser({ auto: true, onEngaged }) : undefined);
    const alive = this.threads.filter((t) => !t.dead);
    const onEngaged = denoise?.onEngaged;
    if (alive.length === 0) return new ThreadedFrontEnd(undefined, this.frameSamples, local, onEngaged);
    return alive.reduce((a, b) => (b.streamCount < a.streamCount ? b : a)).open(this.frameSamples, local, voice, denoise !== undefined, onEngaged);
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.close()));
  }
}

let nextStreamId = 0;

class DspThread {
  readonly ready: Promise<void>;
  /** @internal Where a stream's operations go. */
  readonly batches: WorkerBatches;
  private readonly streams = new Map<number, ThreadedFrontEnd>();

  constructor(url: URL, workerData: { vad: VadSettings; frameSamples: number }, onDied: DspThreadsOptions['onDied']) {
    this.batches = new WorkerBatches(url, {
      name: 'dsp',
      workerData,
      everyMs: BATCH_EVERY_MS,
      received: (reply) => this.received(reply),
      died: (error) => {
        const orphans = [...this.streams.values()];
        this.streams.clear();
        for (const stream of orphans) stream.orphaned();
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

  open(frameSamples: number, local: LocalAnalyzer, voice: SpeechSampler | undefined, denoise: boolean, onEngaged: ((engaged: boolean) => void) | undefined): ThreadedFrontEnd {
    const stream = new ThreadedFrontEnd(this, frameSamples, local, onEngaged);
    this.streams.set(stream.id, stream);
    this.batches.op(DspOp.open, stream.id, voice?.heard, voice?.taken, denoise ? 1 : 0);
    if (voice) this.batches.op(DspOp.listen, stream.id, voice.plan.all, voice.plan.every, voice.plan.max);
    return stream;
  }

  /** @internal */
  closed(stream: number): void {
    this.streams.delete(stream);
    this.batches.op(DspOp.close, stream);
  }

  close(): Promise<number> {
    return this.batches.close();
  }

  private received({ ops, bytes }: Batch): void {
    const audio = new Int16Array(bytes.buffer);
    const floats = new Float32Array(bytes.buffer, 0, bytes.length >> 2);
    for (let i = 0; i < ops.length; i += BATCH_OP_SIZE) {
      const stream = this.streams.get(ops[i + 1]);
      if (!stream) continue;
      const kind = ops[i];
      if (kind === DspOp.frames) stream.delivered(audio, ops[i + 2] >> 1, ops[i + 3], ops[i + 4] === 1);
      else if (kind === DspOp.voiced) stream.voiced(audio, ops[i + 2] >> 1, floats, ops[i + 3] >> 2);
      else if (kind === DspOp.flushed) stream.flushDone();
      else if (kind === DspOp.done) stream.taken(ops[i + 2], ops[i + 3]);
      else if (kind === DspOp.engaged) stream.engage(ops[i + 2] === 1);
    }
  }
}

/** A track's analyzer made in the gateway, telling `onEngaged` when its noise suppressor starts or lets go. */
type LocalAnalyzer = (onEngaged: (engaged: boolean) => void) => FrameAnalyzer;

/** A track's front end in a worker (or, its worker gone, in the gateway from the units it had not answered for). */
class ThreadedFrontEnd implements TrackFrontEnd {
  readonly id = ++nextStreamId;
  private thread: DspThread | undefined;
  private analyzer: FrameAnalyzer | undefined;
  private readonly frameSamples: number;
  private readonly makeAnalyzer: LocalAnalyzer;
  private readonly onEngaged: ((engaged: boolean) => void) | undefined;
  /** The noise suppressor runs (as the worker last said, or the analyzer here). */
  private engaged = false;
  private output: FramedOutput | undefined;
  /** Units sent and not taken by the worker, oldest first: replayed here should it die. */
  private readonly inFlight = new UnitQueue();
  /** Samples the worker's framer held at its last answer. */
  private heldByFramer = 0;
  /** Samples pushed when each flush not yet done was asked for. */
  private readonly flushMarks: number[] = [];
  private pushed = 0;
  private returned = 0;
  private closed = false;
  /** A voiced frame's features, as long as the output's call (it copies what it keeps). */
  private readonly features = new Float32Array(FEATURES);
  private readonly frames: FrameOutput = {
    frame: (frame, isSpeech, features) => {
      this.returned += frame.length;
      this.output!.frame(frame, isSpeech, features);
    },
  };

  constructor(thread: DspThread | undefined, frameSamples: number, makeAnalyzer: LocalAnalyzer, onEngaged: ((engaged: boolean) => void) | undefined) {
    this.thread = thread;
    this.frameSamples = frameSamples;
    this.makeAnalyzer = makeAnalyzer;
    this.onEngaged = onEngaged;
    if (!thread) this.analyzer = this.localAnalyzer();
  }

  get heldSamples(): number {
    return Math.max(0, this.pushed - this.returned);
  }

  start(output: FramedOutput): void {
    this.output = output;
  }

  opus(packet: Buffer, samples: number, skip: number): void {
    if (this.closed) return;
    this.pushed += samples - skip;
    if (this.analyzer) return this.analyzer.opus(packet, skip, this.frames);
    this.inFlight.push(DspOp.opus, packet, skip);
    const batches = this.thread!.batches;
    batches.op(DspOp.opus, this.id, batches.bytesOf(packet), packet.length, skip);
  }

  conceal(count: number, samples: number, skip: number): void {
    if (this.closed) return;
    this.pushed += samples - skip;
    if (this.analyzer) return this.analyzer.conceal(count, skip, this.frames);
    this.inFlight.push(DspOp.conceal, undefined, skip, count);
    this.thread!.batches.op(DspOp.conceal, this.id, count, skip);
  }

  pcm(samples: Int16Array): void {
    if (this.closed || samples.length === 0) return;
    this.pushed += samples.length;
    if (this.analyzer) return this.analyzer.pcm(samples, this.frames);
    this.inFlight.push(DspOp.pcm, samples);
    const batches = this.thread!.batches;
    batches.op(DspOp.pcm, this.id, batches.samplesOf(samples), samples.length);
  }

  flush(): void {
    if (this.closed) return;
    this.flushMarks.push(this.pushed);
    if (this.analyzer) {
      this.analyzer.flush(this.frames);
      this.flushDone();
      return;
    }
    this.inFlight.push(DspOp.flush);
    this.thread!.batches.op(DspOp.flush, this.id);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.thread?.closed(this.id);
    this.thread = undefined;
    this.analyzer?.close();
    this.engage(false);
  }

  /** @internal The noise suppressor started (true) or let go. */
  engage(engaged: boolean): void {
    if (engaged === this.engaged || (engaged && this.closed)) return;
    this.engaged = engaged;
    this.onEngaged?.(engaged);
  }

  /** @internal `count` frames the worker made, from `audio` at `at`, all speech or all not. */
  delivered(audio: Int16Array, at: number, count: number, isSpeech: boolean): void {
    if (this.closed) return;
    const size = this.frameSamples;
    for (let i = 0; i < count; i++) this.frames.frame(audio.subarray(at + i * size, at + (i + 1) * size), isSpeech);
  }

  /** @internal A speech frame the worker made, from `audio` at `at`, with its voice features from `floats` at `featuresAt`. */
  voiced(audio: Int16Array, at: number, floats: Float32Array, featuresAt: number): void {
    if (this.closed) return;
    for (let i = 0; i < FEATURES; i++) this.features[i] = floats[featuresAt + i];
    this.frames.frame(audio.subarray(at, at + this.frameSamples), true, this.features);
  }

  /** @internal The worker's flush is done: what was pushed before it has come back. */
  flushDone(): void {
    if (this.closed) return;
    this.returned = this.flushMarks.shift()!;
    this.output!.flushed();
  }

  /** @internal The worker took `units` of this stream's units; its framer holds `held` samples. */
  taken(units: number, held: number): void {
    this.inFlight.drop(units);
    this.heldByFramer = held;
  }

  private localAnalyzer(): FrameAnalyzer {
    return this.makeAnalyzer((engaged) => this.engage(engaged));
  }

  /** @internal The worker is gone: the units it had not taken are decoded here, and from now on everything is. */
  orphaned(): void {
    this.thread = undefined;
    if (this.closed) return;
    const analyzer = this.localAnalyzer();
    this.analyzer = analyzer;
    if (this.heldByFramer > 0) analyzer.pcm(new Int16Array(this.heldByFramer), this.frames);
    this.inFlight.drain((kind, data, skip, count) => {
      if (kind === DspOp.opus) analyzer.opus(data as Buffer, skip, this.frames);
      else if (kind === DspOp.conceal) analyzer.conceal(count, skip, this.frames);
      else if (kind === DspOp.pcm) analyzer.pcm(data as Int16Array, this.frames);
      else {
        analyzer.flush(this.frames);
        this.flushDone();
      }
    });
  }
}

/** Units in flight, in parallel arrays (no object per packet). */
class UnitQueue {
  private kinds: DspOp[] = [];
  private data: (Buffer | Int16Array | undefined)[] = [];
  private skips: number[] = [];
  private counts: number[] = [];
  private head = 0;

  push(kind: DspOp, data?: Buffer | Int16Array, skip = 0, count = 0): void {
    this.kinds.push(kind);
    this.data.push(data);
    this.skips.push(skip);
    this.counts.push(count);
  }

  drop(units: number): void {
    for (let end = Math.min(this.head + units, this.kinds.length); this.head < end; this.head++) this.data[this.head] = undefined;
    if (this.head === this.kinds.length) {
      this.kinds.length = this.data.length = this.skips.length = this.counts.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.kinds.length) {
      this.kinds = this.kinds.slice(this.head);
      this.data = this.data.slice(this.head);
      this.skips = this.skips.slice(this.head);
      this.counts = this.counts.slice(this.head);
      this.head = 0;
    }
  }

  drain(unit: (kind: DspOp, data: Buffer | Int16Array | undefined, skip: number, count: number) => void): void {
    while (this.head < this.kinds.length) {
      const i = this.head++;
      unit(this.kinds[i], this.data[i], this.skips[i], this.counts[i]);
    }
    this.drop(0);
  }
}
