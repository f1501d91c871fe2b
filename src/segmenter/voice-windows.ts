/**
 * The loop the live and upload paths share: 16 kHz PCM of any chunking → (noise suppression, when on)
 * → 20 ms frames → a VAD decision per frame → the segmenter's windows, handed to a sink as they close (no
 * array per chunk on the hot path). One object per track or upload; it holds no I/O.
 */
import { Framer } from '../audio/framer.ts';
import type { VoiceActivityDetector } from '../audio/vad.ts';
import { Segmenter, type AudioWindow, type SegmenterOptions } from './segmenter.ts';

export interface WindowSink {
  window(window: AudioWindow): void;
  /** A frame the VAD called speech (live tracks time their latency from the last one). */
  speech?(): void;
  /** Every frame with the VAD's decision (a diarizer hears the voices of its speech frames). */
  frame?(frame: Int16Array, isSpeech: boolean): void;
}

/** Noise suppression over a stream (noise-suppressor.ts's TrackDenoiser): the same samples out, later. */
export interface StreamDenoiser {
  readonly heldSamples: number;
  process(pcm: Int16Array): Int16Array;
  flush(): Int16Array;
  close(): void;
}

export class VoiceWindows {
  readonly segmenter: Segmenter;
  private readonly framer: Framer;
  private readonly vad: VoiceActivityDetector;
  private readonly sink: WindowSink;
  private readonly denoiser: StreamDenoiser | undefined;

  /** `denoiser`: what the VAD, the segmenter (so the windows sent to STT) and the diarizer hear instead of the audio as received. */
  constructor(vad: VoiceActivityDetector, options: Partial<SegmenterOptions>, sink: WindowSink, denoiser?: StreamDenoiser) {
    this.vad = vad;
    this.sink = sink;
    this.denoiser = denoiser;
    this.segmenter = new Segmenter(options);
    this.framer = new Framer((this.segmenter.options.sampleRate * this.segmenter.options.frameMs) / 1000);
  }

  /** Track time reached, ms (whole frames). */
  get positionMs(): number {
    return this.segmenter.positionMs;
  }

  /** Audio received, ms, with the part of a frame the framer holds (a fraction of a ms at worst). */
  get receivedMs(): number {
    return this.segmenter.positionMs + ((this.framer.pendingSamples + (this.denoiser?.heldSamples ?? 0)) * 1000) / this.segmenter.options.sampleRate;
  }

  push(pcm: Int16Array): void {
    for (const frame of this.framer.push(this.denoiser ? this.denoiser.process(pcm) : pcm)) this.pushFrame(frame);
  }

  /** Closes the open utterance at its speculative window `id` (see Segmenter); the final goes to the sink. */
  commitSpeculation(id: number): void {
    for (const window of this.segmenter.commitSpeculation(id)) this.sink.window(window);
  }

  /** End of the audio (or a hole in it): what the denoiser holds, the partial last frame and the open utterance. */
  flush(): void {
    if (this.denoiser) for (const frame of this.framer.push(this.denoiser.flush())) this.pushFrame(frame);
    for (const frame of this.framer.flush()) this.pushFrame(frame);
    for (const window of this.segmenter.flush()) this.sink.window(window);
  }

  /** End of the audio for good: flushed, and the denoiser's model state released. */
  close(): void {
    try {
      this.flush();
    } finally {
      this.release();
    }
  }

  /** The denoiser's model state released, nothing flushed (a track that failed). */
  release(): void {
    this.denoiser?.close();
  }

  private pushFrame(frame: Int16Array): void {
    const isSpeech = this.vad.isSpeech(frame);
    if (isSpeech) this.sink.speech?.();
    this.sink.frame?.(frame, isSpeech);
    for (const window of this.segmenter.push({ samples: frame, isSpeech })) this.sink.window(window);
  }
}
