/**
 * A session track fed by RTP, from WebRTC (WHIP) or plain UDP: packets go through a small jitter buffer
 * (reordering) into the same pipeline as the WebSocket ingest's raw Opus format, where gaps are
 * concealed by the Opus decoder. Once packets are expected, a track that receives nothing for
 * `idleTimeoutMs` is ended as a vanished peer. Ending it (or a failure) is reported to the session's viewers.
 */
import type { SpeakerRole } from '../../client-sdk/src/protocol.ts';
import { JitterBuffer } from '../audio/jitter-buffer.ts';
import type { Logger } from '../log.ts';
import type { SessionRegistry } from '../session/registry.ts';
import type { Session } from '../session/session.ts';
import type { TrackPipeline } from '../session/track-pipeline.ts';

/** 3 packets of 20 ms: enough for the reordering a network path causes, little added latency. */
const JITTER_DEPTH = 3;

export interface RtpTrackOptions {
  registry: SessionRegistry;
  log: Logger;
  sessionId: string;
  trackId: string;
  role: SpeakerRole;
  participant: string;
  language?: string;
  /** 'webrtc' or 'rtp', for logs and the track's format label. */
  transport: string;
  idleTimeoutMs: number;
  /** The session or the gateway closed the track; the transport must be torn down. */
  onClosed(reason: string): void;
}

export class RtpTrack {
  private readonly options: RtpTrackOptions;
  private readonly jitter = new JitterBuffer<Buffer>(JITTER_DEPTH);
  private session!: Session;
  private pipeline: TrackPipeline | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private ended: Promise<void> | undefined;

  private constructor(options: RtpTrackOptions) {
    this.options = options;
  }

  /** Opens the session track; throws TrackBusyError / SessionEndedError like the WebSocket ingest. */
  static async open(options: RtpTrackOptions): Promise<RtpTrack> {
    const track = new RtpTrack(options);
    track.session = await options.registry.getOrCreate(options.sessionId);
    await track.session.openTrack({
      trackId: options.trackId,
      role: options.role,
      participant: options.participant,
      format: 'opus',
      sampleRate: 48000,
      language: options.language,
      attach: (pipeline) => (track.pipeline = pipeline),
      onFailed: (error) => void track.end(`stream rejected: ${error.message}`),
      disconnect: (_code, reason) => {
        options.onClosed(reason);
        void track.end();
      },
    });
    return track;
  }

  /** From now on, silence longer than `idleTimeoutMs` means the sender is gone. */
  expectPackets(): void {
    if (!this.ended) this.armIdleTimer();
  }

  /** A received packet (from a UDP or werift event handler: a defect here ends this track only). */
  push(sequence: number, payload: Buffer): void {
    if (this.ended || !this.pipeline) return;
    this.armIdleTimer();
    try {
      for (const { sequence: s, packet } of this.jitter.push(sequence, payload)) this.write(s, packet);
    } catch (error) {
      void this.end(`the gateway failed while processing this track: ${(error as Error).message}`);
    }
  }

  /** Ends the track; with a reason, viewers are told why (a failure, not a hang-up). */
  end(failure?: string): Promise<void> {
    this.ended ??= (async () => {
      clearTimeout(this.idleTimer);
      for (const { sequence, packet } of this.jitter.flush()) this.write(sequence, packet);
      if (failure) {
        this.options.log.warn({ sessionId: this.options.sessionId, trackId: this.options.trackId, transport: this.options.transport, reason: failure }, 'RTP track failed');
        this.session.trackFailed(this.options.trackId, failure);
        this.options.onClosed(failure);
      }
      await this.session.closeTrack(this.options.trackId);
    })();
    return this.ended;
  }

  private write(sequence: number, payload: Buffer): void {
    const message = Buffer.allocUnsafe(payload.length + 2);
    message.writeUInt16BE(sequence, 0);
    payload.copy(message, 2);
    this.pipeline!.write(message);
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => void this.end(`no audio for ${this.options.idleTimeoutMs / 1000} s: the sender vanished`), this.options.idleTimeoutMs);
  }
}
