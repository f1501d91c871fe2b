/**
 * A session track fed by RTP, from WebRTC (WHIP) or plain UDP: packets go through a small jitter buffer
 * (reordering) and the packet sequencer (gaps, late packets) straight into the track's pipeline as Opus
 * packets and lost-packet markers, which the Opus decoder conceals. Once packets are expected, a track
 * that receives nothing for `idleTimeoutMs` is ended as a vanished peer. Ending it (or a failure) is
 * reported to the session's viewers. A resumable transport's failure (WHIP) leaves the session track
 * waiting for a new connection with its resume token instead of ending it.
 */
import { CloseCode, type SpeakerRole } from '../../client-sdk/src/protocol.ts';
import { JitterBuffer, type Numbered } from '../audio/jitter-buffer.ts';
import { PacketSequencer } from '../audio/packet-sequencer.ts';
import type { Logger } from '../log.ts';
import type { SessionRegistry } from '../session/registry.ts';
import type { Session } from '../session/session.ts';
import type { TrackPipeline } from '../session/track-pipeline.ts';
import type { ProducerRequest } from '../session/track-table.ts';

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
  /** The track hears several people: diarized into at most this many speakers. */
  maxSpeakers?: number;
  /** 'webrtc' or 'rtp', for logs and the track's format label. */
  transport: string;
  idleTimeoutMs: number;
  /** WHIP: this connection continues the track of an earlier one that had this resume token. */
  resumeToken?: string;
  /** A failed transport leaves the track waiting for a resumed connection (WHIP), rather than ending it (plain RTP). */
  resumable: boolean;
  /** The session or the gateway closed the track; the transport must be torn down. */
  onClosed(reason: string): void;
}

export class RtpTrack {
  private readonly options: RtpTrackOptions;
  private readonly jitter = new JitterBuffer<Buffer>(JITTER_DEPTH);
  private readonly sequencer = new PacketSequencer<Buffer>();
  private session!: Session;
  private pipeline: TrackPipeline | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private ended: Promise<void> | undefined;
  private connection!: ProducerRequest;
  /** Given to the producer: a later connection presenting it continues this track. */
  resumeToken = '';

  private constructor(options: RtpTrackOptions) {
    this.options = options;
  }

  /** Opens the session track; throws TrackBusyError / SessionEndedError like the WebSocket ingest. */
  static async open(options: RtpTrackOptions): Promise<RtpTrack> {
    const track = new RtpTrack(options);
    track.session = await options.registry.getOrCreate(options.sessionId);
    track.connection = {
      trackId: options.trackId,
      role: options.role,
      participant: options.participant,
      format: 'opus',
      sampleRate: 48000,
      language: options.language,
      maxSpeakers: options.maxSpeakers,
      resumeToken: options.resumeToken,
      realTime: true,
      attach: (pipeline, resumeToken) => {
        track.pipeline = pipeline;
        track.resumeToken = resumeToken;
      },
      drainInput: async () => track.release(track.jitter.flush()),
      onFailed: (error) => void track.end(`stream rejected: ${error.message}`),
      disconnect: (code, reason) => {
        options.onClosed(reason);
        if (code !== CloseCode.replaced) return void track.end();
        // A newer connection continues the track: this one only stops (its late packets are ignored).
        clearTimeout(track.idleTimer);
        track.ended ??= Promise.resolve();
      },
    };
    await track.session.openTrack(track.connection);
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
    this.pipeline.guarded(() => this.release(this.jitter.push(sequence, payload)));
  }

  /**
   * Ends the track; with a reason, viewers are told why (a failure, not a hang-up), and a resumable
   * transport's track waits for its producer to resume instead.
   */
  end(failure?: string): Promise<void> {
    this.ended ??= (async () => {
      clearTimeout(this.idleTimer);
      if (failure) {
        this.options.log.warn({ sessionId: this.options.sessionId, trackId: this.options.trackId, transport: this.options.transport, reason: failure }, 'RTP track failed');
        this.session.trackFailed(this.options.trackId, failure);
        this.options.onClosed(failure);
        if (this.options.resumable && !this.pipeline?.hasFailed) return this.session.connectionLost(this.options.trackId, this.connection);
      }
      await this.session.closeTrack(this.options.trackId, this.connection);
    })();
    return this.ended;
  }

  private release(packets: Numbered<Buffer>[]): void {
    for (const { sequence, packet } of packets) {
      for (const item of this.sequencer.push(sequence, packet)) this.pipeline!.push(item.kind === 'packet' ? { kind: 'opus', packet: item.packet } : item);
    }
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => void this.end(`no audio for ${this.options.idleTimeoutMs / 1000} s: the sender vanished`), this.options.idleTimeoutMs);
  }
}
