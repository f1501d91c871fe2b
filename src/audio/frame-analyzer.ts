/**
 * One track's audio as the VAD hears it: Opus packets, lost packets and PCM → 16 kHz PCM → (a noise
 * suppressor on this thread) → 20 ms frames, each with the VAD's decision. What a DSP worker thread runs
 * per track (and the gateway itself for the tracks of a worker that died). `skip`: samples at the start of a unit's audio the track already has
 * (decoded all the same: the decoder's state follows the packets it continues from).
 */
import { Framer } from './framer.ts';
import type { BlockDenoiser } from './noise-suppressor.ts';
import { OpusDecoder } from './opus-decoder.ts';
import type { VoiceActivityDetector } from './vad.ts';

export interface FrameOutput {
  /** `features`: a speech frame's voice features, when they were asked for and computed with it. */
  frame(frame: Int16Array, isSpeech: boolean, features?: Float32Array): void;
}

/** PCM of any chunking → (denoised) → whole frames, each with the VAD's decision. */
export class FrameDecider {
  private readonly framer: Framer;
  private readonly vad: VoiceActivityDetector;
  private readonly denoiser: BlockDenoiser | undefined;
  /** Frames of what the VAD hears, in step with `framer`'s, once the audio comes with a view of its own. */
  private heardFramer: Framer | undefined;

  /** `denoiser`: what the VAD and the frames hear instead of the audio as received (closed with `close()`). */
  constructor(vad: VoiceActivityDetector, frameSamples: number, denoiser?: BlockDenoiser) {
    this.vad = vad;
    this.framer = new Framer(frameSamples);
    this.denoiser = denoiser;
  }

  /** Samples held until their frame is whole (and by the denoiser). */
  get pendingSamples(): number {
    return this.framer.pendingSamples + (this.denoiser?.heldSamples ?? 0);
  }

  /** `heard`: what the VAD hears of the same samples (a denoiser's view of them), when not the samples themselves. */
  pcm(samples: Int16Array, out: FrameOutput, heard?: Int16Array): void {
    if (samples.length === 0) return;
    if (!this.denoiser) return this.frames(samples, heard, out);
    const denoised = this.denoiser.process(samples);
    this.frames(denoised, this.denoiser.lastHeard, out);
  }

  /** What the denoiser holds and the last partial frame, padded with silence. */
  flush(out: FrameOutput): void {
    if (this.denoiser) this.frames(this.denoiser.flush(), this.denoiser.lastHeard, out);
    this.decide(this.framer.flush(), this.heardFramer?.flush(), out);
  }

  /** The denoiser's state released. */
  close(): void {
    this.denoiser?.close();
  }

  private frames(samples: Int16Array, heard: Int16Array | undefined, out: FrameOutput): void {
    if (heard && !this.heardFramer) this.heardFramer = new Framer(this.framer.frameSamples);
    this.decide(this.framer.push(samples), this.heardFramer?.push(heard ?? samples), out);
  }

  private decide(frames: Int16Array[], heard: Int16Array[] | undefined, out: FrameOutput): void {
    for (let i = 0; i < frames.length; i++) out.frame(frames[i], this.vad.isSpeech(heard ? heard[i] : frames[i]));
  }
}

/** Opus packets and lost packets too, decoded first. */
export class FrameAnalyzer extends FrameDecider {
  private readonly decoder = new OpusDecoder();

  opus(packet: Buffer, skip: number, out: FrameOutput): void {
    this.pcm(this.decoder.decode(packet).subarray(skip), out);
  }

  conceal(count: number, skip: number, out: FrameOutput): void {
    this.pcm(this.decoder.conceal(count).subarray(skip), out);
  }
}
