/**
 * Noise suppression before STT with RNNoise (the `@jitsi/rnnoise-wasm` build, its model inside the
 * WebAssembly; nothing is downloaded): a recurrent network that takes broadband noise (a fan's hiss,
 * babble, traffic) out of speech, at 48 kHz in 10 ms frames. The window's 16 kHz audio goes up to 48 kHz,
 * through the model with a fresh state, and back down. It runs in a worker thread (`RnnoiseWorker`):
 * about 5 % of a core per real-time track, far more than the rest of the conditioning, which is why it
 * is off unless `AUDIO_NOISE_SUPPRESSION=rnnoise`.
 */
import { createRequire } from 'node:module';
import { downsample48To16, upsample16To48 } from './decimator.ts';
import { WorkerThread } from './worker-thread.ts';

/** Takes noise out of a window's 16 kHz audio (a new array of the same length). Swappable. */
export interface NoiseSuppressor {
  suppress(audio: Int16Array): Promise<Int16Array>;
  close?(): Promise<void>;
}

interface RnnoiseModule {
  ready: Promise<unknown>;
  HEAPF32: Float32Array;
  _malloc(bytes: number): number;
  _rnnoise_create(): number;
  _rnnoise_destroy(state: number): void;
  _rnnoise_process_frame(state: number, output: number, input: number): number;
}

const FRAME = 480;
/** RNNoise's output lags its input by one frame (it synthesizes with 50 % overlap). */
const MODEL_DELAY = 465;

/** RNNoise on the calling thread (what the worker runs). */
export class Rnnoise {
  private readonly module: RnnoiseModule;
  private readonly frame: number;

  private constructor(module: RnnoiseModule) {
    this.module = module;
    this.frame = module._malloc(FRAME * 4);
  }

  static async load(): Promise<Rnnoise> {
    const path = createRequire(import.meta.url).resolve('@jitsi/rnnoise-wasm/dist/rnnoise-sync.js');
    const { default: create } = (await import(path)) as { default: () => RnnoiseModule };
    const module = create();
    await module.ready;
    return new Rnnoise(module);
  }

  suppress(audio: Int16Array): Int16Array {
    const up = upsample16To48(audio);
    const out = new Float32Array(up.length);
    const state = this.module._rnnoise_create();
    try {
      const heap = () => this.module.HEAPF32.subarray(this.frame >> 2, (this.frame >> 2) + FRAME);
      // The model's lag is taken out: frames run on past the end (silence) to flush it.
      for (let start = 0; start < up.length + MODEL_DELAY; start += FRAME) {
        const input = heap();
        input.fill(0);
        if (start < up.length) input.set(up.subarray(start, Math.min(up.length, start + FRAME)));
        this.module._rnnoise_process_frame(state, this.frame, this.frame);
        const output = heap();
        for (let i = 0; i < FRAME; i++) {
          const at = start + i - MODEL_DELAY;
          if (at >= 0 && at < out.length) out[at] = output[i];
        }
      }
    } finally {
      this.module._rnnoise_destroy(state);
    }
    return downsample48To16(out);
  }
}

/** RNNoise in a worker thread (`noise-suppressor-worker.ts`); a worker that dies is replaced at the next window. */
export class RnnoiseWorker implements NoiseSuppressor {
  private readonly thread = new WorkerThread<Int16Array, Int16Array>(new URL('./noise-suppressor-worker.ts', import.meta.url), 'RNNoise');

  static async start(): Promise<RnnoiseWorker> {
    const suppressor = new RnnoiseWorker();
    await suppressor.thread.start();
    return suppressor;
  }

  suppress(audio: Int16Array): Promise<Int16Array> {
    const copy = audio.slice();
    return this.thread.request(copy, [copy.buffer as ArrayBuffer]);
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}
