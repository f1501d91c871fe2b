/**
 * Noise suppression with RNNoise (the `@jitsi/rnnoise-wasm` build, its model inside the WebAssembly;
 * nothing is downloaded): a recurrent network that takes broadband noise (a fan's hiss, traffic, some
 * babble) out of speech, at 48 kHz in 10 ms frames. It runs on the track as the audio streams, before the
 * VAD: the VAD then cuts windows at the pauses a hiss hides (at 5 dB SNR it otherwise hears one merged
 * stretch), the windows sent to STT are the denoised audio (no window pays for it twice, and the model's
 * state runs on across windows instead of starting cold at each), and the recording keeps the audio as
 * received. 16 kHz goes up to 48 kHz and back with the decimator's windowed-sinc low-pass.
 */
import { createRequire } from 'node:module';
import { Decimator48To16, LOW_PASS } from './decimator.ts';

interface RnnoiseModule {
  ready: Promise<unknown>;
  HEAPF32: Float32Array;
  _malloc(bytes: number): number;
  _rnnoise_create(): number;
  _rnnoise_destroy(state: number): void;
  _rnnoise_process_frame(state: number, output: number, input: number): number;
}

/** Where a stream denoiser's output goes: the denoised samples, in order, and the end of each flush. */
export interface DenoisedOutput {
  /** `heard`: what the VAD hears of the same samples, when the model gives it apart (read during the call only). */
  audio(pcm: Int16Array, heard?: Int16Array): void;
  /** Everything pushed before the flush has come out. */
  flushed(): void;
}

/**
 * Noise suppression over a stream, on this thread (`Rnnoise.stream`) or in a worker thread
 * (denoiser-thread.ts): the same samples come out to `output`, in order, later. Nothing is shifted: track
 * time counts `heldSamples` as received.
 */
export interface StreamDenoiser {
  /** Input samples pushed and not come out yet. */
  readonly heldSamples: number;
  /** Set once, before the first push. */
  start(output: DenoisedOutput): void;
  push(pcm: Int16Array): void;
  /** What is held comes out (the end of the audio, or a hole in it: the stream goes on after it as if new), then `output.flushed()`. */
  flush(): void;
  /** The model state goes back; nothing comes out after. */
  close(): void;
}

export interface DenoiserOptions {
  /** The model runs only while the track's noise floor says broadband noise is there (see TrackDenoiser). */
  auto?: boolean;
  /** Told each time the model starts (also at once) or stops (also at close). */
  onEngaged?(engaged: boolean): void;
  /**
   * What `process` and `flush` give out is one array, written again by the next call (for a consumer that
   * copies what it keeps, as the DSP worker does into its replies: no array per packet); else a fresh one.
   */
  reuseOutput?: boolean;
}

/** RNNoise's frame: 10 ms at 48 kHz. */
const FRAME_48K = 480;
const FRAME_16K = FRAME_48K / 3;
/** RNNoise's output lags its input by two frames at 48 kHz (measured: the cross-correlation peak of speech in and out). */
const MODEL_DELAY_48K = 960;
const TAPS = LOW_PASS.length;
/** The low-pass's own delay at 48 kHz, once going up and once coming down. */
const FILTER_DELAY_48K = (TAPS - 1) / 2;
/** Going down, every third sample from this phase: the whole chain's lag is then a whole number of 16 kHz samples. */
const DOWN_PHASE = (MODEL_DELAY_48K + 2 * FILTER_DELAY_48K) % 3;
/** The chain's lag at 16 kHz (340 samples, 21 ms): output sample n + LATENCY is input sample n denoised. */
export const DENOISER_LATENCY_SAMPLES = (MODEL_DELAY_48K + 2 * FILTER_DELAY_48K - DOWN_PHASE) / 3;

/** `auto`: engaged once the track's quietest moments stay above this for a while (a fan, not a room's hush), dBFS. */
const ENGAGE_FLOOR_DBFS = -50;
/** …and let go once they fall below this (the fan switched off), dBFS. */
const RELEASE_FLOOR_DBFS = -60;
/** The floor is the quietest 10 ms over the last `FLOOR_SEGMENTS` stretches of this many 10 ms blocks (2 s each). */
const FLOOR_SEGMENT_BLOCKS = 200;
const FLOOR_SEGMENTS = 4;

/** The RNNoise WebAssembly module, loaded once per process; each track runs its own model state in it. */
export class Rnnoise {
  private readonly module: RnnoiseModule;
  /** One frame's buffer in the module's memory, shared by every stream (they run one at a time, on one thread). */
  private readonly frame: number;

  private constructor(module: RnnoiseModule) {
    this.module = module;
    this.frame = module._malloc(FRAME_48K * 4);
  }

  static async load(): Promise<Rnnoise> {
    const path = createRequire(import.meta.url).resolve('@jitsi/rnnoise-wasm/dist/rnnoise-sync.js');
    const { default: create } = (await import(path)) as { default: () => RnnoiseModule };
    const module = create();
    await module.ready;
    return new Rnnoise(module);
  }

  /**
   * A track's denoiser (its own model state); `close()` it when the track ends. `auto`: the model runs
   * only while the track's noise floor says broadband noise is there, and over its first seconds (the
   * audio passes untouched, at no cost but the hold, otherwise); `onEngaged` is told each time it starts
   * (also at once) or stops (also at close).
   */
  track(options: DenoiserOptions = {}): TrackDenoiser {
    return new TrackDenoiser(this, options);
  }

  /** A track's denoiser as a stream on this thread: its output comes out during `push` and `flush`. */
  stream(options: DenoiserOptions = {}): StreamDenoiser {
    return streamOn(this.track(options));
  }

  /** A whole recording denoised, aligned with it (benches and tests: the track denoiser over one buffer). */
  denoise(audio: Int16Array): Int16Array {
    return denoiseWhole(this.track(), audio);
  }

  /** @internal One 48 kHz frame through a model state, in place. */
  processFrame(state: number, frame: Float32Array): void {
    const at = this.frame >> 2;
    this.module.HEAPF32.set(frame, at);
    this.module._rnnoise_process_frame(state, this.frame, this.frame);
    frame.set(this.module.HEAPF32.subarray(at, at + FRAME_48K));
  }

  /** @internal */
  createState(): number {
    return this.module._rnnoise_create();
  }

  /** @internal */
  destroyState(state: number): void {
    this.module._rnnoise_destroy(state);
  }
}

/** A track's denoiser on this thread as a stream: its output comes out during `push` and `flush`. */
export function streamOn(track: BlockDenoiser): StreamDenoiser {
  let output: DenoisedOutput | undefined;
  return {
    get heldSamples() {
      return track.heldSamples;
    },
    start: (to) => void (output = to),
    push: (pcm) => {
      const out = track.process(pcm);
      if (out.length > 0) output!.audio(out, track.lastHeard);
    },
    flush: () => {
      const out = track.flush();
      if (out.length > 0) output!.audio(out, track.lastHeard);
      output!.flushed();
    },
    close: () => track.close(),
  };
}

/** A whole recording through a track's denoiser, aligned with it (benches and tests); the denoiser is closed after. */
export function denoiseWhole(denoiser: BlockDenoiser, audio: Int16Array): Int16Array {
  try {
    const head = denoiser.process(audio);
    const rest = denoiser.flush();
    const out = new Int16Array(audio.length);
    out.set(head);
    out.set(rest, head.length);
    return out;
  } finally {
    denoiser.close();
  }
}

/** The track's level is measured in blocks of 10 ms for its floor. */
const FLOOR_BLOCK = 160;

/**
 * One track's audio through a noise model that works in fixed blocks, as it streams: 16 kHz PCM of any
 * chunking in, the same audio denoised out, the model's `latency` later — held back, never shifted:
 * output sample i is input sample i, so track time is unchanged. `flush()` gives what is held (at the end
 * of the audio, or where it has a hole; the model runs on over silence that is never given out); the
 * stream goes on after it as if new. In `auto` mode the model runs from the start until the track's floor
 * (its quietest 10 ms over the last 8 s, taken every 2 s, decided from 4 s on) is below −60 dBFS, and
 * again once it is above −50 dBFS; otherwise the audio comes out as it went in, as late. What the model
 * is (RNNoise, the spectral suppressor) is the subclass's `runBlock`.
 */
export abstract class BlockDenoiser {
  private readonly block: Int16Array;
  private blockCount = 0;
  private readonly latency: number;
  /** Samples fed through the chain (input and padding) and come out of it. */
  private fed = 0;
  private produced = 0;
  /** Ranges of fed samples that were padding (a flush): their outputs are not audio. */
  private padding: [number, number][] = [];
  private realIn = 0;
  private realOut = 0;
  private readonly auto: boolean;
  private readonly onEngaged: ((engaged: boolean) => void) | undefined;
  /** The model runs on the blocks (else they pass as they came, as late). */
  protected engaged: boolean;
  /**
   * The gain the VAD's view of the block `runBlock` returns gets on top (a model that tells how likely
   * speech is lets the VAD hear its pauses as silence; the windows keep what is left of the noise there).
   */
  protected heardGain = 1;
  /** The VAD's view of the output is kept apart (the model sets `heardGain`); else it is the output. */
  private readonly hearsApart: boolean;
  private heard = new Int16Array(0);
  private heardCount = 0;
  /** The array output goes to with `reuseOutput`. */
  private output: Int16Array | undefined;
  private closed = false;
  private floorSum = 0;
  private floorCount = 0;
  /** The quietest 10 ms level of the stretch being measured and of the stretches before it, dBFS. */
  private segmentMin = Infinity;
  private segmentBlocks = 0;
  private readonly floors: number[] = [];

  protected constructor(blockSamples: number, latency: number, options: DenoiserOptions, hearsApart = false) {
    this.block = new Int16Array(blockSamples);
    this.latency = latency;
    this.hearsApart = hearsApart;
    if (options.reuseOutput) this.output = new Int16Array(0);
    this.auto = options.auto ?? false;
    this.onEngaged = options.onEngaged;
    // Auto starts engaged: a track's first words come before any floor can be known, and on a quiet
    // track the model lets go within seconds (it costs those seconds only).
    this.engaged = true;
    this.onEngaged?.(true);
  }

  /** Input samples not given back yet (they come out with later input, or from `flush()`). */
  get heldSamples(): number {
    return this.realIn - this.realOut;
  }

  /**
   * What the VAD hears of the audio the last `process` or `flush` gave out, sample for sample: that audio
   * itself, or the model's view of it (valid until the next call: read it at once).
   */
  get lastHeard(): Int16Array | undefined {
    return this.hearsApart ? this.heard.subarray(0, this.heardCount) : undefined;
  }

  /** Denoised audio for what came in (a fresh array unless `reuseOutput`: the segmenter keeps views of it). */
  process(input: Int16Array): Int16Array {
    const size = this.block.length;
    const out = this.outputFor(input.length + this.heldSamples);
    this.startHeard(out.length);
    let written = 0;
    for (let i = 0; i < input.length; ) {
      const take = Math.min(size - this.blockCount, input.length - i);
      this.block.set(input.subarray(i, i + take), this.blockCount);
      this.blockCount += take;
      this.realIn += take;
      i += take;
      if (this.blockCount === size) written = this.emit(this.nextBlock(true), out, written);
    }
    return out.subarray(0, written);
  }

  /** What is held, denoised: the chain runs on over silence (padding, never given out) until the last input sample is out. */
  flush(): Int16Array {
    const size = this.block.length;
    const out = this.outputFor(this.heldSamples);
    this.startHeard(out.length);
    let written = 0;
    while (written < out.length) {
      this.padding.push([this.fed + this.blockCount, this.fed + size]);
      this.block.fill(0, this.blockCount);
      written = this.emit(this.nextBlock(false), out, written);
    }
    return out;
  }

  /** The model's state is released; nothing comes out after. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.engaged) this.onEngaged?.(false);
    this.release();
  }

  /**
   * The next block out of the model (`latency` behind `block`, the block just gathered): denoised while
   * `engaged`, else the audio as it came. The returned array is read before the next call.
   */
  protected abstract runBlock(block: Int16Array): Int16Array;

  /** The model's state goes back. */
  protected abstract release(): void;

  /** `heard`: audio, not a flush's padding (only audio tells the noise floor). */
  private nextBlock(heard: boolean): Int16Array {
    if (this.auto && heard) this.measureFloor();
    this.fed += this.block.length;
    this.blockCount = 0;
    return this.runBlock(this.block);
  }

  /** The chain's output block into `out` from `written`, leaving out the start-up lag and padding; returns the new count. */
  private emit(block: Int16Array, out: Int16Array, written: number): number {
    const heard = this.hearsApart ? this.heard : undefined;
    const gain = this.heardGain;
    if (this.padding.length === 0 && this.produced >= this.latency) {
      // All of it is audio (the usual case): copied whole.
      out.set(block, written);
      if (heard && gain === 1) heard.set(block, written);
      else if (heard) for (let i = 0; i < block.length; i++) heard[written + i] = Math.round(block[i] * gain);
      this.produced += block.length;
      this.realOut += block.length;
      this.heardCount = written + block.length;
      return this.heardCount;
    }
    for (let i = 0; i < block.length; i++) {
      const source = this.produced++ - this.latency;
      if (source < 0 || this.isPadding(source)) continue;
      if (heard) heard[written] = Math.round(block[i] * gain);
      out[written++] = block[i];
      this.realOut++;
    }
    this.heardCount = written;
    return written;
  }

  private outputFor(samples: number): Int16Array {
    if (!this.output) return new Int16Array(samples);
    if (this.output.length < samples) this.output = new Int16Array(Math.max(samples, this.output.length * 2));
    return this.output.subarray(0, samples);
  }

  /** Room for the VAD's view of up to `samples` coming out (kept between calls: it is read at once). */
  private startHeard(samples: number): void {
    this.heardCount = 0;
    if (this.hearsApart && this.heard.length < samples) this.heard = new Int16Array(Math.max(samples, this.heard.length * 2));
  }

  private isPadding(source: number): boolean {
    while (this.padding.length > 0 && this.padding[0][1] <= source) this.padding.shift();
    return this.padding.length > 0 && this.padding[0][0] <= source;
  }

  /** The block's 10 ms levels into the floor; engages or lets go the model when the floor crosses its thresholds. */
  private measureFloor(): void {
    const block = this.block;
    for (let i = 0; i < block.length; i++) {
      this.floorSum += block[i] * block[i];
      if (++this.floorCount < FLOOR_BLOCK) continue;
      this.floorLevel(10 * Math.log10(this.floorSum / FLOOR_BLOCK / 32768 ** 2 + 1e-12));
      this.floorSum = 0;
      this.floorCount = 0;
    }
  }

  private floorLevel(dbfs: number): void {
    this.segmentMin = Math.min(this.segmentMin, dbfs);
    if (++this.segmentBlocks < FLOOR_SEGMENT_BLOCKS) return;
    this.floors.push(this.segmentMin);
    if (this.floors.length > FLOOR_SEGMENTS) this.floors.shift();
    this.segmentMin = Infinity;
    this.segmentBlocks = 0;
    // A decision needs half the history: a track's first seconds are no floor yet.
    if (this.floors.length < FLOOR_SEGMENTS / 2) return;
    const floor = Math.min(...this.floors);
    const engage = this.engaged ? floor >= RELEASE_FLOOR_DBFS : floor > ENGAGE_FLOOR_DBFS;
    if (engage === this.engaged) return;
    this.engaged = engage;
    this.onEngaged?.(engage);
  }
}

/**
 * One track's audio through RNNoise as it streams (pure but for the model's state), in its 10 ms blocks:
 * up to 48 kHz, the model, back down to 16 kHz, `DENOISER_LATENCY_SAMPLES` (21 ms) behind.
 */
export class TrackDenoiser extends BlockDenoiser {
  private readonly rnnoise: Rnnoise;
  private state: number;
  /** The last TAPS/3 input samples (the up-sampling filter's memory), newest last. */
  private readonly upHistory = new Float64Array(Math.ceil(TAPS / 3));
  /** Back down to 16 kHz, each output's span ending DOWN_PHASE into its three 48 kHz samples. */
  private readonly downsampler = new Decimator48To16(DOWN_PHASE);
  private readonly frame48 = new Float32Array(FRAME_48K);
  private readonly out16 = new Int16Array(FRAME_16K);
  /** The last DENOISER_LATENCY_SAMPLES + one block of input: what comes out when the model does not run. */
  private readonly past = new Int16Array(DENOISER_LATENCY_SAMPLES + FRAME_16K);

  constructor(rnnoise: Rnnoise, options: DenoiserOptions) {
    super(FRAME_16K, DENOISER_LATENCY_SAMPLES, options);
    this.rnnoise = rnnoise;
    this.state = rnnoise.createState();
  }

  protected runBlock(block: Int16Array): Int16Array {
    const past = this.past;
    past.copyWithin(0, FRAME_16K);
    past.set(block, past.length - FRAME_16K);
    if (!this.engaged) {
      this.out16.set(past.subarray(0, FRAME_16K));
      return this.out16;
    }
    const up = this.upHistory;
    const frame = this.frame48;
    for (let n = 0; n < FRAME_16K; n++) {
      up.copyWithin(0, 1);
      up[up.length - 1] = block[n];
      // Output 3n + r meets the input samples at taps j ≡ r (mod 3): j = r, r + 3, … back through the history.
      for (let r = 0; r < 3; r++) {
        let acc = 0;
        for (let j = r, k = up.length - 1; j < TAPS && k >= 0; j += 3, k--) acc += up[k] * LOW_PASS[j];
        frame[3 * n + r] = acc * 3;
      }
    }
    this.rnnoise.processFrame(this.state, frame);
    // A whole frame (480, a multiple of 3) keeps the phase: 160 samples each time.
    this.downsampler.processInto(frame, this.out16, 0);
    return this.out16;
  }

  protected release(): void {
    this.rnnoise.destroyState(this.state);
    this.state = 0;
  }
}
