/**
 * The tracks of one session: per track its current connection (pipeline, epoch, archive spool) or its
 * uploaded recording, opened and closed in order. A connection's audio being in is enough to let the
 * producer reconnect; its last finals and the sealing of its recording follow on the track's own chain.
 *
 * A producer whose connection drops (no close frame) keeps its track for the resume window: the pipeline,
 * with its open utterance, waits, and a new connection presenting the track's resume token takes it over
 * (and takes over a live connection that silently stopped delivering too). Only when the window passes
 * is the track closed as if the producer had ended it.
 */
import type { IngestFormat, SpeakerRole, TrackInfo } from '../../client-sdk/src/protocol.ts';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { CloseCode } from '../../client-sdk/src/protocol.ts';
import type { Archiver } from '../archive/archiver.ts';
import type { TrackArchive } from '../archive/track-archive.ts';
import { CapReached, TrackBusyError, type IngestError } from '../errors.ts';
import { checkLanguage } from './languages.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SessionStore } from '../store/session-store.ts';
import { trackListener, type TrackEventContext } from './track-events.ts';
import type { PipelineFactory, TrackPipeline } from './track-pipeline.ts';

export interface ProducerRequest {
  trackId: string;
  role: SpeakerRole;
  participant: string;
  format: IngestFormat;
  sampleRate: number;
  language?: string;
  /** Track time of this connection's first sample, when the producer knows it (a resume, a reconnect after a crash). */
  startMs?: number;
  /** The `resume` token of the track's previous connection: this connection continues it. */
  resumeToken?: string;
  /**
   * A live source that cannot resend (WebRTC): resumed without `startMs`, the time it was away (until its
   * new connection's first audio) is filled with silence, so the track stays aligned with the others.
   */
  realTime?: boolean;
  /**
   * Called synchronously the moment the pipeline exists, before anything else can run: the connection
   * hands over the audio it buffered meanwhile, in order, and writes straight to the pipeline after.
   * `resumeToken` lets a later connection of this producer take the track over.
   */
  attach(pipeline: TrackPipeline, resumeToken: string): void;
  /** Pushes what the connection's demuxer still holds (the end of a container, the jitter buffer). */
  drainInput(): Promise<void>;
  onFailed(error: IngestError): void;
  /**
   * Closes the producer's connection (the session is ending, the gateway is shutting down, or a resumed
   * connection took over); the connection writes nothing more to the pipeline after this.
   */
  disconnect(code: number, reason: string): void;
}

export interface UploadTrack {
  /** Waits for the windows still queued, publishes what is left (past dead-lettered ones), stops. */
  finish(): Promise<void>;
}

interface TrackState {
  info: TrackInfo;
  pipeline: TrackPipeline | undefined;
  /** Track time where the current connection started. */
  offsetMs: number;
  epoch: number;
  /** The producer's current connection; undefined while the track waits for a dropped one to resume. */
  connection: ProducerRequest | undefined;
  /** What a new connection presents to continue this epoch of the track. */
  resumeToken: string;
  /** Ends the track when its dropped producer has not resumed in time. */
  resumeTimer: NodeJS.Timeout | undefined;
  /** closeTrack has been called for the current connection. */
  closing: boolean;
  /**
   * A producer's connection is open or its audio still being flushed. Cleared before its last finals are
   * published (they may wait long for STT), so a reconnect is not refused meanwhile; the track's state
   * stays `live` for viewers until those finals are out.
   */
  connected: boolean;
  archive: TrackArchive | undefined;
  /** Settles once openTrack has finished (successfully or not) for this connection. */
  ready: Promise<void>;
  /** The track of an uploaded recording: its windows come from the job queue, not a pipeline. */
  upload: UploadTrack | undefined;
  done: Promise<void>;
}

export interface TrackTableOptions {
  sessionId: string;
  /** Default STT language of the session's tracks. */
  language: string | undefined;
  /** The session's own terms. */
  vocabulary: readonly string[];
  /** The languages the recognizer transcribes; undefined: any. */
  languages?: readonly string[];
  factory: PipelineFactory;
  store: SessionStore;
  archiver: Archiver | undefined;
  metrics: Metrics;
  log: Logger;
  /** Live tracks the session may have at once. */
  maxLiveTracks: number;
  /** How long a track whose producer dropped waits for it to resume; 0 ends it at once. */
  resumeWindowMs: number;
  events: TrackEventContext;
  /** A track started, ended or failed: viewers get the session's state again. */
  changed(): void;
}

export class TrackTable {
  private readonly tracks = new Map<string, TrackState>();
  private readonly options: TrackTableOptions;

  /** `known`: the tracks stored for the session, with their connection counts. */
  constructor(options: TrackTableOptions, known: TrackInfo[], epochs: Map<string, number>) {
    this.options = options;
    for (const info of known) {
      this.tracks.set(info.trackId, idleTrack(info, epochs.get(info.trackId) ?? 0, undefined));
    }
  }

  /** Every track with its audio received so far. */
  describe(): TrackInfo[] {
    return [...this.tracks.values()].map((t) => ({ ...t.info, receivedMs: t.offsetMs + (t.pipeline?.receivedMs ?? 0) }));
  }

  info(trackId: string): TrackInfo | undefined {
    return this.tracks.get(trackId)?.info;
  }

  epochOf(trackId: string): number {
    return this.tracks.get(trackId)?.epoch ?? 0;
  }

  ids(): string[] {
    return [...this.tracks.keys()];
  }

  /** Closes every producer's connection with `code` (their tracks are then closed by closeTrack). */
  disconnectAll(code: number, reason: string): void {
    for (const track of this.tracks.values()) track.connection?.disconnect(code, reason);
  }

  /** Starts (or resumes) a track for a producer connection; the returned pipeline takes its messages. */
  async openTrack(request: ProducerRequest): Promise<TrackPipeline> {
    const existing = this.tracks.get(request.trackId);
    if (existing?.connected && !existing.closing && existing.pipeline && request.resumeToken !== undefined && sameToken(request.resumeToken, existing.resumeToken)) {
      return this.resume(existing, existing.pipeline, request);
    }
    if (existing && (existing.upload ? existing.info.state === 'live' : existing.connected)) throw new TrackBusyError(`track ${request.trackId} is already streaming`);
    checkLanguage(request.language ?? this.options.language, this.options.languages);
    const live = [...this.tracks.values()].filter((t) => t.info.state !== 'ended').length;
    if (live >= this.options.maxLiveTracks) throw new CapReached(`session ${this.options.sessionId} has ${live} live tracks, the most allowed; retry after one ends`);
    const storedMs = existing ? existing.offsetMs + (existing.pipeline?.receivedMs ?? 0) : 0;
    // Never earlier than what is stored: new words must not be timed before finals already published.
    const offsetMs = Math.max(storedMs, request.startMs ?? 0);
    const info: TrackInfo = { trackId: request.trackId, role: request.role, participant: request.participant, format: request.format, state: 'live', receivedMs: offsetMs };
    const epoch = (existing?.epoch ?? 0) + 1;
    let settle!: () => void;
    const track: TrackState = {
      ...idleTrack(info, epoch, undefined), offsetMs, connection: request, connected: true,
      ready: new Promise<void>((resolve) => (settle = resolve)),
      done: existing?.done ?? Promise.resolve(),
    };
    this.tracks.set(request.trackId, track);
    try {
      await this.options.store.saveTrack(this.options.sessionId, { ...info, epoch });
      track.archive = await this.options.archiver?.openTrack({ sessionId: this.options.sessionId, trackId: request.trackId, epoch }, request.format === 'pcm16' ? request.sampleRate : 48000);
    } catch (error) {
      if (existing) this.tracks.set(request.trackId, existing);
      else this.tracks.delete(request.trackId);
      track.connected = false;
      settle();
      throw error;
    }
    track.pipeline = this.options.factory({
      trackId: request.trackId,
      language: request.language ?? this.options.language,
      offsetMs,
      epoch,
      listener: trackListener(this.options.events, info, request.onFailed),
      archive: track.archive,
      usage: this.options.events.stt.usage,
      vocabulary: this.options.vocabulary,
    });
    // Audio the track already has (resent after the resume window passed) is skipped, not appended again.
    if (request.startMs !== undefined && request.startMs < storedMs) track.pipeline.resume(request.startMs);
    request.attach(track.pipeline, track.resumeToken);
    settle();
    this.options.metrics.activeTracks.inc();
    this.options.log.info({ trackId: request.trackId, role: request.role, format: request.format, offsetMs, epoch }, 'track live');
    this.options.changed();
    return track.pipeline;
  }

  /** The track of an uploaded recording, transcribing from now on; `upload` publishes its finals. */
  async addUploadTrack(info: TrackInfo, upload: UploadTrack): Promise<void> {
    this.tracks.set(info.trackId, idleTrack(info, 1, upload));
    await this.options.store.saveTrack(this.options.sessionId, { ...info, epoch: 1 });
    this.options.changed();
  }

  /** A track's transport failed (ICE/DTLS, a vanished sender): its state says why. */
  trackFailed(trackId: string, message: string): void {
    const track = this.tracks.get(trackId);
    if (track) track.info.failure = message;
  }

  /**
   * A new connection of the track's producer takes over: the old one (dropped or silently dead) is closed
   * with `replaced`, and the pipeline continues where the track's audio is, aligned to `startMs`.
   */
  private resume(track: TrackState, pipeline: TrackPipeline, request: ProducerRequest): TrackPipeline {
    // Refused (a gap beyond real time) before anything changes: the old connection, if any, goes on.
    if (request.startMs === undefined && request.realTime) pipeline.resumeLive();
    else pipeline.resume(request.startMs);
    const previous = track.connection;
    clearTimeout(track.resumeTimer);
    track.resumeTimer = undefined;
    track.connection = request;
    previous?.disconnect(CloseCode.replaced, 'a newer connection of this producer took over the track');
    track.info.state = 'live';
    delete track.info.failure;
    request.attach(pipeline, track.resumeToken);
    this.options.metrics.producerResumes.inc({ after: previous ? 'takeover' : 'drop' });
    this.options.log.info({ trackId: track.info.trackId, startMs: request.startMs, trackMs: pipeline.trackMs, takeover: previous !== undefined }, 'track resumed');
    this.options.changed();
    return pipeline;
  }

  /** The producer's connection dropped without closing: the track waits for it to resume, then ends. */
  connectionLost(trackId: string, connection: ProducerRequest): void {
    const track = this.tracks.get(trackId);
    if (!track || track.connection !== connection || track.closing) return;
    // Without audio there is nothing to continue: the producer's next connection starts the track afresh.
    if (this.options.resumeWindowMs === 0 || !track.pipeline || track.pipeline.hasFailed || track.pipeline.receivedMs === 0) {
      void this.closeTrack(trackId, connection);
      return;
    }
    // What its demuxer held is dropped with it: the producer sends again from its last acknowledgement.
    track.connection = undefined;
    track.info.state = 'reconnecting';
    track.resumeTimer = setTimeout(() => {
      track.resumeTimer = undefined;
      this.options.log.info({ trackId }, 'producer did not resume in time');
      void this.closeTrack(trackId);
    }, this.options.resumeWindowMs);
    this.options.log.info({ trackId, trackMs: track.pipeline.trackMs }, 'producer connection lost; waiting for it to resume');
    this.options.changed();
  }

  /**
   * The producer is gone: flush the track, publish its last finals, mark it ended. With `connection`, only
   * while that connection is still the track's.
   */
  closeTrack(trackId: string, connection?: ProducerRequest): Promise<void> {
    const track = this.tracks.get(trackId);
    if (!track || track.closing || track.info.state === 'ended') return track?.done ?? Promise.resolve();
    if (connection && track.connection !== connection) return track.done;
    track.closing = true;
    clearTimeout(track.resumeTimer);
    track.resumeTimer = undefined;
    track.done = track.done.then(async () => {
      if (track.upload) {
        await track.upload.finish();
        track.info.state = 'ended';
        await this.options.store.saveTrack(this.options.sessionId, { ...track.info, epoch: track.epoch });
        this.options.changed();
        return;
      }
      // A connection may still be opening (loading the session, creating its spool): wait for it.
      await track.ready;
      const pipeline = track.pipeline;
      if (!pipeline) return;
      try {
        try {
          await track.connection?.drainInput();
          await pipeline.close();
        } finally {
          // Its audio is in: the producer may reconnect now, while its last finals wait for STT.
          track.connected = false;
        }
        await pipeline.end();
      } catch (error) {
        this.options.log.error({ err: error, trackId }, 'track did not finish');
      }
      if (track.archive) {
        await this.options.archiver!.completeTrack({ sessionId: this.options.sessionId, trackId, epoch: track.epoch }, track.archive).catch((error) =>
          this.options.log.error({ err: error, trackId }, 'recording could not be sealed; its one-second slices stay spooled for recovery'),
        );
        track.archive = undefined;
      }
      track.offsetMs += pipeline.receivedMs;
      track.pipeline = undefined;
      track.connection = undefined;
      track.info.state = 'ended';
      track.info.receivedMs = track.offsetMs;
      this.options.metrics.activeTracks.dec();
      await this.options.events.writes.settled();
      // A newer connection of the track owns its row now.
      if (this.tracks.get(trackId) === track) {
        await this.options.store.saveTrack(this.options.sessionId, { ...track.info, epoch: track.epoch }).catch((error) => this.options.log.error({ err: error, trackId }, 'could not store track end'));
      }
      this.options.log.info({ trackId, receivedMs: track.offsetMs }, 'track ended');
      this.options.changed();
    });
    return track.done;
  }

  /** Gateway shutdown: producers are told to reconnect (1001), and what they sent is transcribed and published. */
  async drain(): Promise<void> {
    const live = [...this.tracks.values()].filter((t) => t.info.state !== 'ended');
    for (const track of live) track.connection?.disconnect(CloseCode.goingAway, 'gateway shutting down; reconnect to continue');
    await Promise.all(live.map((t) => this.closeTrack(t.info.trackId)));
    await this.options.events.writes.settled();
  }
}

function idleTrack(info: TrackInfo, epoch: number, upload: UploadTrack | undefined): TrackState {
  return {
    info, pipeline: undefined, offsetMs: info.receivedMs, epoch, connection: undefined, resumeToken: randomBytes(18).toString('base64url'), resumeTimer: undefined,
    closing: false, connected: false, archive: undefined, ready: Promise.resolve(), done: Promise.resolve(), upload,
  };
}

/** Compares resume tokens in constant time: their length is fixed, their content must not leak by timing. */
function sameToken(presented: string, expected: string): boolean {
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
