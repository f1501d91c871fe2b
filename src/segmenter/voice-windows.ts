/**
 * The loop the live and upload paths share: 16 kHz PCM of any chunking → (noise suppression, when on)
 * → 20 ms frames → a VAD decision per frame → the segmenter's windows, handed to a sink as they close (no
 * array per chunk on the hot path). One object per track or upload; it holds no I/O (a denoiser in a
 * worker thread gives its audio back later: the frames, and so the windows, then follow from there). A
 * live track's front end (decoding, framing and the VAD in a worker thread) gives back frames already
 * decided: the segmenter takes them from there.
 */
import type { TrackFrontEnd } from '../audio/dsp-thread.ts';
import { FrameDecider, type FrameOutput } from '../audio/frame-analyzer.ts';
import type { StreamDenoiser } from '../audio/noise-suppressor.ts';
import type { VoiceActivityDetector } from '../audio/vad.ts';
import { Segmenter, type AudioWindow, type SegmenterOptions } from './segmenter.ts';

export interface WindowSink {
  window(window: AudioWindow): void;
  /** A frame the VAD called speech (live tracks time their latency from the last one). */
  speech?(): void;
  /** Every frame with the VAD's decision (a diarizer hears the voices of its speech frames); `features`: its voice features, when the front end computed them. */
  frame?(frame: Int16Array, isSpeech: boolean, features?: Float32Array): void;
  /**
   * A throw while handling audio a denoiser gave back later (it would otherwise reach the worker's
   * message handler, and the process); without it the throw goes to whoever pushed or flushed.
   */
  error?(error: Error): void;
}

export class VoiceWindows {
  readonly segmenter: Segmenter;
  /** Frames and the VAD's decisions here (none with a front end, which gives back frames decided). */
  private readonly decider: FrameDecider | undefined;
  private readonly decided: FrameOutput = { frame: (frame, isSpeech) => this.decidedFrame(frame, isSpeech, undefined) };
  private readonly sink: WindowSink;
  private readonly denoiser: StreamDenoiser | undefined;
  private readonly frontEnd: TrackFrontEnd | undefined;
  /** Resolved as the denoiser's flushes come out, in order. */
  private readonly flushes: (() => void)[] = [];
  /** Waiting for the denoiser to hold at most `samples`. */
  private catchUp: { samples: number; resolve(): void } | undefined;

  /**
   * `hearing`: the VAD, or a front end that frames the audio and runs the VAD elsewhere (its frames must be
   * the segmenter's). `denoiser` (with a VAD only): what the VAD, the segmenter (so the windows sent to STT)
   * and the diarizer hear instead of the audio as received.
   */
  constructor(hearing: VoiceActivityDetector | TrackFrontEnd, options: Partial<SegmenterOptions>, sink: WindowSink, denoiser?: StreamDenoiser) {
    this.sink = sink;
    this.segmenter = new Segmenter(options);
    const flushed = () => {
      const done = this.flushes.shift();
      this.reported(() => this.flushRest());
      done?.();
    };
    if ('isSpeech' in hearing) {
      this.decider = new FrameDecider(hearing, (this.segmenter.options.sampleRate * this.segmenter.options.frameMs) / 1000);
      this.denoiser = denoiser;
      denoiser?.start({
        audio: (pcm, heard) => {
          this.reported(() => this.frames(pcm, heard));
          this.caughtUp();
        },
        flushed,
      });
    } else {
      this.frontEnd = hearing;
      hearing.start({
        frame: (frame, isSpeech, features) => {
          this.reported(() => this.decidedFrame(frame, isSpeech, features));
          this.caughtUp();
        },
        flushed,
      });
    }
  }

  /** Input pushed that the denoiser or the front end has not given back yet, samples. */
  get heldSamples(): number {
    return this.denoiser?.heldSamples ?? this.frontEnd?.heldSamples ?? 0;
  }

  /** Track time reached, ms (whole frames). */
  get positionMs(): number {
    return this.segmenter.positionMs;
  }

  /** Audio received, ms, with the part of a frame the framer holds (a fraction of a ms at worst). */
  get receivedMs(): number {
    return this.segmenter.positionMs + (((this.decider?.pendingSamples ?? 0) + this.heldSamples) * 1000) / this.segmenter.options.sampleRate;
  }

  /** Resolves once the denoiser or front end holds at most `samples` (a producer faster than it waits; one waiter at a time). */
  heldBelow(samples: number): Promise<void> {
    if (this.heldSamples <= samples) return Promise.resolve();
    return new Promise<void>((resolve) => (this.catchUp = { samples, resolve }));
  }

  push(pcm: Int16Array): void {
    if (this.denoiser) this.denoiser.push(pcm);
    else if (this.frontEnd) this.frontEnd.pcm(pcm);
    else this.frames(pcm);
  }

  /** Closes the open utterance at its speculative window `id` (see Segmenter); the final goes to the sink. */
  commitSpeculation(id: number): void {
    for (const window of this.segmenter.commitSpeculation(id)) this.sink.window(window);
  }

  /**
   * End of the audio (or a hole in it): what the denoiser or front end holds, the partial last frame and
   * the open utterance; resolves once they are through (at once without either, or with one on this
   * thread). Audio pushed after it comes after them.
   */
  flush(): Promise<void> {
    const stage = this.denoiser ?? this.frontEnd;
    if (!stage) {
      this.flushRest();
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.flushes.push(resolve);
      stage.flush();
    });
  }

  /** End of the audio for good: flushed, and the denoiser's model state released. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      this.release();
    }
  }

  /** The denoiser's or front end's state released, nothing flushed (a track that failed). */
  release(): void {
    this.denoiser?.close();
    this.frontEnd?.close();
  }

  private frames(pcm: Int16Array, heard?: Int16Array): void {
    this.decider!.pcm(pcm, this.decided, heard);
  }

  private flushRest(): void {
    this.decider?.flush(this.decided);
    for (const window of this.segmenter.flush()) this.sink.window(window);
  }

  /** Runs what the denoiser's output sets off; a throw goes to the sink's `error` when it has one. */
  private reported(work: () => void): void {
    if (!this.sink.error) return work();
    try {
      work();
    } catch (error) {
      this.sink.error(error as Error);
    }
  }

  private caughtUp(): void {
    if (this.catchUp && this.heldSamples <= this.catchUp.samples) {
      this.catchUp.resolve();
      this.catchUp = undefined;
    }
  }

  private decidedFrame(frame: Int16Array, isSpeech: boolean, features: Float32Array | undefined): void {
    if (isSpeech) this.sink.speech?.();
    this.sink.frame?.(frame, isSpeech, features);
    for (const window of this.segmenter.push({ samples: frame, isSpeech })) this.sink.window(window);
  }
}
