/**
 * The loop the live and upload paths share: 16 kHz PCM of any chunking → 20 ms frames → a VAD decision
 * per frame → the segmenter's windows, handed to a sink as they close (no array per chunk on the hot
 * path). One object per track or upload; it holds no I/O.
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

export class VoiceWindows {
  readonly segmenter: Segmenter;
  private readonly framer: Framer;
  private readonly vad: VoiceActivityDetector;
  private readonly sink: WindowSink;

  constructor(vad: VoiceActivityDetector, options: Partial<SegmenterOptions>, sink: WindowSink) {
    this.vad = vad;
    this.sink = sink;
    this.segmenter = new Segmenter(options);
    this.framer = new Framer((this.segmenter.options.sampleRate * this.segmenter.options.frameMs) / 1000);
  }

  /** Track time reached, ms (whole frames). */
  get positionMs(): number {
    return this.segmenter.positionMs;
  }

  /** Audio received, ms, with the part of a frame the framer holds (a fraction of a ms at worst). */
  get receivedMs(): number {
    return this.segmenter.positionMs + (this.framer.pendingSamples * 1000) / this.segmenter.options.sampleRate;
  }

  push(pcm: Int16Array): void {
    for (const frame of this.framer.push(pcm)) this.pushFrame(frame);
  }

  /** Closes the open utterance at its speculative window `id` (see Segmenter); the final goes to the sink. */
  commitSpeculation(id: number): void {
    for (const window of this.segmenter.commitSpeculation(id)) this.sink.window(window);
  }

  /** End of the audio: the partial last frame and the open utterance. */
  flush(): void {
    for (const frame of this.framer.flush()) this.pushFrame(frame);
    for (const window of this.segmenter.flush()) this.sink.window(window);
  }

  private pushFrame(frame: Int16Array): void {
    const isSpeech = this.vad.isSpeech(frame);
    if (isSpeech) this.sink.speech?.();
    this.sink.frame?.(frame, isSpeech);
    for (const window of this.segmenter.push({ samples: frame, isSpeech })) this.sink.window(window);
  }
}
