/**
 * The live pipeline of one producer connection, in the order audio flows through it:
 * audio units → Opus decoder (16 kHz) → framer (20 ms) → VAD → segmenter → STT → captions.
 * It owns no socket and no demuxer: the ingest adapter demuxes its transport (WebSocket frames, RTP) into
 * audio units and pushes them in; a TrackListener receives what comes out.
 */
import { CloseCode, type Word } from '../../client-sdk/src/protocol.ts';
import { OpusDecoder, PIPELINE_SAMPLE_RATE } from '../audio/opus-decoder.ts';
import { RealTimeGuard, type RealTimeLimits } from '../audio/real-time-guard.ts';
import type { VoiceActivityDetector } from '../audio/vad.ts';
import type { AudioUnit } from '../demux/packet-source.ts';
import { IngestError } from '../errors.ts';
import type { AudioWindow, SegmenterOptions } from '../segmenter/segmenter.ts';
import { VoiceWindows } from '../segmenter/voice-windows.ts';
import type { WindowTranscriber } from '../stt/window-transcriber.ts';
import { TrackCaptions } from '../transcript/track-captions.ts';
import type { Metrics } from '../metrics.ts';

/** After this many undecodable packets in a row the stream is not Opus: the connection is closed. */
const MAX_CONSECUTIVE_CORRUPT = 50;
/** How often the track's position is reported for persistence (ms of audio). */
const PROGRESS_EVERY_MS = 5000;
/** Silence a resumed connection's gap is filled with, 20 ms at a time (shared: never written). */
const SILENT_FRAME = new Int16Array(PIPELINE_SAMPLE_RATE / 50);

export interface TrackListener {
  partial(utteranceId: string, stable: readonly Word[], unstable: Word[], startMs: number): void;
  /** A final window goes to STT. */
  queued(utteranceId: string, window: { startMs: number; endMs: number }): void;
  /** Publishes a final; the next final of the track waits until this resolves. */
  final(utteranceId: string, words: Word[], window: { startMs: number; endMs: number }, timing: FinalTiming): Promise<void>;
  sttFailed(error: Error, utteranceId: string): void;
  /** Every few seconds of audio: how far the track has got (ms of track time), to persist. */
  progress(trackMs: number): void;
  sttRecovered(): void;
  /** The stream cannot be read in its declared format. */
  failed(error: IngestError): void;
  /** The gateway shut down before this final window was transcribed. */
  abandoned(utteranceId: string, window: { startMs: number; endMs: number }, error: Error): void;
}

export interface FinalTiming {
  /** performance.now() when the last speech audio of the window arrived (or the cut, for max-length). */
  speechEndAt: number;
  /** performance.now() when the audio that closed the window arrived. */
  closedAt: number;
  sttMs: number;
}

/** Receives the track's audio for the recording archive: Opus packets as received, or PCM to encode. */
export interface ArchiveSink {
  packet(packet: Buffer): void;
  pcm(samples: Int16Array): void;
  /** A gap in the track (a resumed producer's time away): the recording keeps the track's timeline. */
  silence(ms: number): void;
}

export interface TrackPipelineOptions {
  /** Track time of this connection's first sample (a reconnecting producer continues the timeline). */
  offsetMs: number;
  /** Distinguishes utterance ids across reconnections of the same track. */
  epoch: number;
  trackId: string;
  language?: string;
  prompt?: string;
  segmenter: Partial<SegmenterOptions>;
  vad: VoiceActivityDetector;
  transcriber: WindowTranscriber;
  listener: TrackListener;
  metrics: Metrics;
  archive?: ArchiveSink;
  realTime: RealTimeLimits;
}

export interface PipelineRequest {
  trackId: string;
  language: string | undefined;
  offsetMs: number;
  epoch: number;
  listener: TrackListener;
  archive: ArchiveSink | undefined;
}

/** Builds a track's pipeline with the gateway's shared STT queue, VAD settings and segmenter options. */
export type PipelineFactory = (request: PipelineRequest) => TrackPipeline;

/** An utterance's id across the session: track, connection (epoch) and the segmenter's utterance number. */
export function utteranceId(trackId: string, epoch: number, utterance: number): string {
  return `${trackId}.${epoch}.${utterance}`;
}

export class TrackPipeline {
  private readonly options: TrackPipelineOptions;
  private readonly decoder = new OpusDecoder();
  private readonly windows: VoiceWindows;
  private readonly captions = new TrackCaptions();
  private finalChain: Promise<void> = Promise.resolve();
  private partialInFlight = false;
  /** The utterance an earlier partial's speech check found speech in: its later partials are not checked again. */
  private speechConfirmedUtterance = 0;
  private lastReceivedAt = 0;
  private lastSpeechAt = 0;
  private lastProgressMs = 0;
  private failed = false;
  /** Samples a resumed connection sends again that the track already has: dropped as they come. */
  private skipSamples = 0;
  /** A live source resumed: the time it was away is filled with silence when its audio arrives again. */
  private silenceUntilNextAudio = false;
  private ended: Promise<void> | undefined;
  private closed: Promise<void> | undefined;
  private readonly realTime: RealTimeGuard;

  constructor(options: TrackPipelineOptions) {
    this.options = options;
    this.windows = new VoiceWindows(options.vad, { ...options.segmenter, sampleRate: PIPELINE_SAMPLE_RATE }, {
      window: (window) => this.dispatch(window),
      speech: () => void (this.lastSpeechAt = this.lastReceivedAt),
    });
    this.realTime = new RealTimeGuard(options.realTime);
  }

  /** Milliseconds of audio received on this connection. */
  get receivedMs(): number {
    return this.windows.positionMs;
  }

  /** Track time up to which the track's audio is in, to the sample (what a producer may forget). */
  get trackMs(): number {
    return this.options.offsetMs + this.windows.receivedMs;
  }

  get hasFailed(): boolean {
    return this.failed;
  }

  /**
   * A new connection continues the track with its first sample at track time `startMs` (undefined: right
   * where the audio is). Audio the track already has is skipped as it arrives again; a gap is filled with
   * silence, within what real time allows (refused beyond it, before anything changes).
   */
  resume(startMs: number | undefined, now = performance.now()): void {
    const position = this.trackMs;
    this.skipSamples = 0;
    if (startMs === undefined || startMs === position) return;
    if (startMs < position) {
      this.skipSamples = Math.round(((position - startMs) * PIPELINE_SAMPLE_RATE) / 1000);
      return;
    }
    const gapMs = startMs - position;
    if (!this.realTime.allows(this.receivedMs + gapMs, now)) {
      throw new IngestError(CloseCode.badParameters, `startMs ${startMs} is ${gapMs} ms past the track's audio (${position} ms), more than real time allows`);
    }
    this.guarded(() => this.fillSilence(gapMs));
  }

  /**
   * A real-time source that cannot resend (WebRTC) continues the track: the time between the last audio
   * and the first of the new connection, which is when the new connection is up, is filled with silence,
   * so the track stays aligned in time with the session's other tracks.
   */
  resumeLive(): void {
    this.skipSamples = 0;
    this.silenceUntilNextAudio = this.lastReceivedAt > 0;
  }

  /** One unit of the track's audio, from the adapter's demuxer. */
  push(unit: AudioUnit): void {
    if (this.failed || this.closed) return;
    const now = performance.now();
    if (this.silenceUntilNextAudio) {
      this.silenceUntilNextAudio = false;
      const awayMs = now - this.lastReceivedAt;
      this.guarded(() => this.fillSilence(this.realTime.allows(this.receivedMs + awayMs, now) ? awayMs : 0));
    }
    this.lastReceivedAt = now;
    this.guarded(() => this.consume(unit));
  }

  private fillSilence(ms: number): void {
    if (ms > 0) this.options.archive?.silence(ms);
    for (let filled = 0; filled < ms; filled += 20) this.windows.push(SILENT_FRAME.subarray(0, Math.round((Math.min(20, ms - filled) * PIPELINE_SAMPLE_RATE) / 1000)));
  }

  /**
   * Runs a stage of this track's processing (the adapter's demuxing too). A defect in it (a throw) ends
   * this track with an internal error; it never reaches the socket's or the decoder's event handler, and
   * so never the process.
   */
  guarded(stage: () => void): void {
    try {
      stage();
    } catch (error) {
      this.fail(new IngestError(CloseCode.internalError, `the gateway failed while processing this track: ${(error as Error).message}`));
    }
  }

  /** End of the stream's audio (the adapter has pushed what its demuxer held): the last windows are dispatched. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      if (!this.failed) {
        this.lastReceivedAt = performance.now();
        this.guarded(() => {
          this.windows.flush();
        });
      }
    })();
    return this.closed;
  }

  /** End of the stream: closes it and resolves once every final has been published. */
  end(): Promise<void> {
    this.ended ??= (async () => {
      await this.close();
      await this.finalChain;
    })();
    return this.ended;
  }

  /** The stream cannot go on (unreadable in its declared format, or a defect): the listener is told once. */
  fail(error: IngestError): void {
    if (this.failed) return;
    this.failed = true;
    this.options.listener.failed(error);
  }

  private consume(unit: AudioUnit): void {
    if (this.failed) return;
    let pcm: Int16Array;
    if (unit.kind === 'pcm') {
      pcm = unit.samples;
    } else if (unit.kind === 'lost') {
      if (!this.realTime.allows(this.receivedMs + unit.count * this.decoder.packetMs, performance.now())) {
        this.fail(new IngestError(CloseCode.policyViolation, 'the stream runs faster than real time (sequence gaps or timestamps ahead of the clock)'));
        return;
      }
      this.options.metrics.lostPackets.inc(unit.count);
      pcm = this.decoder.conceal(unit.count);
    } else {
      // Decoded even when skipped: the decoder's state then follows the packets it continues from.
      pcm = this.decoder.decode(unit.packet);
      if (this.decoder.consecutiveCorrupt > 0) {
        this.options.metrics.lostPackets.inc();
        if (this.decoder.consecutiveCorrupt >= MAX_CONSECUTIVE_CORRUPT) {
          this.fail(new IngestError(CloseCode.invalidPayload, `${MAX_CONSECUTIVE_CORRUPT} packets in a row are not Opus`));
          return;
        }
      }
    }
    if (this.skipSamples > 0) {
      const skipped = Math.min(this.skipSamples, pcm.length);
      this.skipSamples -= skipped;
      // Already received on the connection before: neither archived nor counted again.
      if (skipped === pcm.length) return;
      pcm = pcm.subarray(skipped);
    }
    if (unit.kind === 'pcm') this.options.archive?.pcm(pcm);
    // Only what the codec accepted is archived: a rejected packet would corrupt the Ogg timeline.
    else if (unit.kind === 'opus' && this.decoder.consecutiveCorrupt === 0) this.options.archive?.packet(unit.packet);
    if (!this.realTime.allows(this.receivedMs + (pcm.length * 1000) / PIPELINE_SAMPLE_RATE, performance.now())) {
      this.fail(new IngestError(CloseCode.policyViolation, 'the stream runs faster than real time beyond the allowed burst'));
      return;
    }
    this.options.metrics.audioSeconds.inc(pcm.length / PIPELINE_SAMPLE_RATE);
    this.windows.push(pcm);
    if (this.receivedMs - this.lastProgressMs >= PROGRESS_EVERY_MS) {
      this.lastProgressMs = this.receivedMs;
      this.options.listener.progress(this.options.offsetMs + this.receivedMs);
    }
  }


  private utteranceId(window: AudioWindow): string {
    return utteranceId(this.options.trackId, this.options.epoch, window.utteranceId);
  }

  private shift(words: readonly Word[]): Word[] {
    const offset = this.options.offsetMs;
    return words.map((w) => ({ ...w, startMs: w.startMs + offset, endMs: w.endMs + offset }));
  }

  private dispatch(window: AudioWindow): void {
    const { transcriber, listener, metrics, language, prompt, offsetMs } = this.options;
    metrics.windows.inc({ kind: window.kind });
    if (window.kind === 'partial') {
      if (this.partialInFlight) return;
      this.partialInFlight = true;
      void transcriber.partial(window, language, prompt, this.speechConfirmedUtterance === window.utteranceId).then((result) => {
        this.partialInFlight = false;
        if (!result) {
          metrics.sttFailures.inc({ kind: 'partial' });
          return;
        }
        if (result.skipped) return;
        if (result.speechMs !== undefined) this.speechConfirmedUtterance = window.utteranceId;
        metrics.sttSeconds.observe({ kind: 'partial' }, result.sttMs / 1000);
        const captions = this.captions.partial(window, result.words, result.timed);
        if (captions) listener.partial(this.utteranceId(window), this.shift(captions.stable), this.shift(captions.unstable), window.startMs + offsetMs);
      });
      return;
    }
    const closedAt = this.lastReceivedAt;
    const speechEndAt = window.closedBy === 'max-length' ? closedAt : this.lastSpeechAt;
    const utteranceId = this.utteranceId(window);
    const span = { startMs: window.startMs + offsetMs, endMs: window.endMs + offsetMs };
    listener.queued(utteranceId, span);
    const transcribed = transcriber.final(
      window,
      {
        onFailure: (error) => {
          metrics.sttFailures.inc({ kind: 'final' });
          listener.sttFailed(error, utteranceId);
        },
        onRecovered: () => listener.sttRecovered(),
      },
      language,
      prompt,
    );
    // Handled in the chain below; this only stops Node from calling it unhandled while it waits its turn.
    transcribed.catch(() => undefined);
    // Transcribed concurrently, published in window order: the seam merger needs the previous final.
    this.finalChain = this.finalChain.then(async () => {
      let result;
      try {
        result = await transcribed;
      } catch (error) {
        listener.abandoned(utteranceId, span, error as Error);
        return;
      }
      if (!result.skipped) metrics.sttSeconds.observe({ kind: 'final' }, result.sttMs / 1000);
      const words = this.captions.final(window, result.words, result.timed);
      await listener.final(utteranceId, this.shift(words), span, { speechEndAt, closedAt, sttMs: result.sttMs });
    });
  }
}
