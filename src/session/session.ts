/**
 * One consultation: its tracks (one per producer device), the finals published so far, and the caption
 * viewers watching it. Every final is stored before its event goes out, with a per-session sequence
 * number so a viewer that reconnects can ask for what it missed. Ending a session waits for the last
 * windows, merges every track by time into one transcript, stores it, and then reports completion.
 */
import type { CaptionEvent, FinalEvent, IngestFormat, SessionEvent, SpeakerRole, TrackInfo, UploadProgressEvent, Word } from '../../client-sdk/src/protocol.ts';
import { CloseCode } from '../../client-sdk/src/protocol.ts';
import { CapReached, SessionEndedError, TrackBusyError, type IngestError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SessionRow, SessionState, SessionStore } from '../store/session-store.ts';
import { buildTranscript } from '../transcript/transcript-document.ts';
import type { Archiver } from '../archive/archiver.ts';
import type { TrackArchive } from '../archive/track-archive.ts';
import { CaptionFeed, type Viewer } from './caption-feed.ts';
import { OrderedWrites, SttHealth, trackListener, type TrackEventContext } from './track-events.ts';
import type { SessionStatus } from '../../client-sdk/src/protocol.ts';
import { sessionStatus } from './session-status.ts';
import type { PipelineFactory, TrackPipeline } from './track-pipeline.ts';

export interface ProducerRequest {
  trackId: string;
  role: SpeakerRole;
  participant: string;
  format: IngestFormat;
  sampleRate: number;
  language?: string;
  /** Track time of this connection's first sample, when the producer knows it (a reconnect after a crash). */
  startMs?: number;
  /**
   * Called synchronously the moment the pipeline exists, before anything else can run: the connection
   * hands over the audio it buffered meanwhile, in order, and writes straight to the pipeline after.
   */
  attach(pipeline: TrackPipeline): void;
  /** Pushes what the connection's demuxer still holds (the end of a container, the jitter buffer). */
  drainInput(): Promise<void>;
  onFailed(error: IngestError): void;
  /** Closes the producer's connection (the session is ending, or the gateway is shutting down). */
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
  disconnect: ((code: number, reason: string) => void) | undefined;
  drainInput: (() => Promise<void>) | undefined;
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

export interface SessionDependencies {
  factory: PipelineFactory;
  store: SessionStore;
  /** Absent only when archiving was disabled with the insecure development flag. */
  archiver: Archiver | undefined;
  log: Logger;
  metrics: Metrics;
  /** Called once the transcript is stored (webhook delivery). */
  onCompleted(session: Session, transcriptVersion: number): void;
  /** The session is completed and nobody watches it: it may leave memory (the store has all of it). */
  onIdle(session: Session): void;
  /** Live tracks one session may have at once. */
  maxLiveTracks: number;
}

export class Session {
  readonly id: string;
  readonly encounterRef: string | null;
  readonly language: string | null;
  state: SessionState;
  private readonly tracks = new Map<string, TrackState>();
  private readonly feed: CaptionFeed;
  private readonly events: TrackEventContext;
  private readonly deps: SessionDependencies;
  private readonly log: Logger;
  private lastUploadProgress: UploadProgressEvent | undefined;
  private ending: Promise<void> | undefined;

  constructor(row: SessionRow, finals: FinalEvent[], tracks: TrackInfo[], epochs: Map<string, number>, deps: SessionDependencies) {
    this.id = row.id;
    this.encounterRef = row.encounterRef;
    this.language = row.language;
    this.state = row.state;
    this.deps = deps;
    this.log = deps.log.child({ sessionId: row.id });
    this.feed = new CaptionFeed(row.id, finals, deps.store, this.log, deps.metrics);
    this.events = {
      feed: this.feed, store: deps.store, writes: new OrderedWrites(this.log), stt: new SttHealth(), metrics: deps.metrics, log: this.log,
      epochOf: (trackId) => this.tracks.get(trackId)?.epoch ?? 0,
      stateChanged: () => this.broadcast(this.describe()),
    };
    for (const info of tracks) {
      this.tracks.set(info.trackId, { info, pipeline: undefined, offsetMs: info.receivedMs, epoch: epochs.get(info.trackId) ?? 0, disconnect: undefined, drainInput: undefined, closing: false, connected: false, archive: undefined, ready: Promise.resolve(), done: Promise.resolve(), upload: undefined });
    }
  }

  /** Every final so far, in seq order. */
  get finals(): readonly FinalEvent[] {
    return this.feed.finals;
  }

  describe(): SessionEvent {
    return {
      type: 'session',
      sessionId: this.id,
      state: this.state === 'completed' ? 'ended' : this.state,
      stt: this.events.stt.degraded ? 'degraded' : 'ok',
      tracks: [...this.tracks.values()].map((t) => ({ ...t.info, receivedMs: t.offsetMs + (t.pipeline?.receivedMs ?? 0) })),
      lastSeq: this.feed.lastSeq,
    };
  }

  /** Starts (or resumes) a track for a producer connection; the returned pipeline takes its messages. */
  async openTrack(request: ProducerRequest): Promise<TrackPipeline> {
    if (this.state !== 'active') throw new SessionEndedError(`session ${this.id} has ${this.state === 'ending' ? 'been ended' : 'completed'}`);
    const existing = this.tracks.get(request.trackId);
    if (existing && (existing.upload ? existing.info.state === 'live' : existing.connected)) throw new TrackBusyError(`track ${request.trackId} is already streaming`);
    const live = [...this.tracks.values()].filter((t) => t.info.state === 'live').length;
    if (live >= this.deps.maxLiveTracks) throw new CapReached(`session ${this.id} has ${live} live tracks, the most allowed; retry after one ends`);
    const storedMs = existing ? existing.offsetMs + (existing.pipeline?.receivedMs ?? 0) : 0;
    // Never earlier than what is stored: new words must not be timed before finals already published.
    const offsetMs = Math.max(storedMs, request.startMs ?? 0);
    const info: TrackInfo = { trackId: request.trackId, role: request.role, participant: request.participant, format: request.format, state: 'live', receivedMs: offsetMs };
    const epoch = (existing?.epoch ?? 0) + 1;
    let settle!: () => void;
    const track: TrackState = {
      info, pipeline: undefined, offsetMs, epoch, disconnect: request.disconnect, drainInput: request.drainInput, closing: false, connected: true, archive: undefined, upload: undefined,
      ready: new Promise<void>((resolve) => (settle = resolve)),
      done: existing?.done ?? Promise.resolve(),
    };
    this.tracks.set(request.trackId, track);
    try {
      await this.deps.store.saveTrack(this.id, { ...info, epoch });
      track.archive = await this.deps.archiver?.openTrack({ sessionId: this.id, trackId: request.trackId, epoch }, request.format === 'pcm16' ? request.sampleRate : 48000);
    } catch (error) {
      if (existing) this.tracks.set(request.trackId, existing);
      else this.tracks.delete(request.trackId);
      track.connected = false;
      settle();
      throw error;
    }
    track.pipeline = this.deps.factory({
      trackId: request.trackId,
      language: request.language ?? this.language ?? undefined,
      offsetMs,
      epoch,
      listener: trackListener(this.events, info, request.onFailed),
      archive: track.archive,
    });
    request.attach(track.pipeline);
    settle();
    this.deps.metrics.activeTracks.inc();
    this.log.info({ trackId: request.trackId, role: request.role, format: request.format, offsetMs, epoch }, 'track live');
    this.broadcast(this.describe());
    return track.pipeline;
  }

  /** The track of an uploaded recording, transcribing from now on; `upload` publishes its finals. */
  async addUploadTrack(info: TrackInfo, upload: UploadTrack): Promise<void> {
    this.tracks.set(info.trackId, { info, pipeline: undefined, offsetMs: info.receivedMs, epoch: 1, disconnect: undefined, drainInput: undefined, closing: false, connected: false, archive: undefined, ready: Promise.resolve(), done: Promise.resolve(), upload });
    await this.deps.store.saveTrack(this.id, { ...info, epoch: 1 });
    this.broadcast(this.describe());
  }

  /** A final of an uploaded recording's track, published like a live one (stored, then sent). */
  publishUploadFinal(trackId: string, utteranceId: string, words: Word[]): Promise<void> {
    return this.feed.publish(this.tracks.get(trackId)!.info, utteranceId, words);
  }

  /** Progress of an uploaded recording; a viewer connecting later receives the latest. */
  uploadProgress(event: UploadProgressEvent): void {
    this.lastUploadProgress = event;
    this.broadcast(event);
  }

  /** A track's transport failed (ICE/DTLS, a vanished sender), for viewers; the track is then closed. */
  trackFailed(trackId: string, message: string): void {
    const track = this.tracks.get(trackId);
    if (track) track.info.failure = message;
    this.broadcast({ type: 'error', sessionId: this.id, code: 'track_failed', message, trackId });
  }

  /** A dead-lettered window, for viewers. */
  windowFailed(trackId: string, message: string): void {
    this.broadcast({ type: 'error', sessionId: this.id, code: 'window_failed', message, trackId });
  }

  /** The producer is gone: flush the track, publish its last finals, mark it ended. */
  closeTrack(trackId: string): Promise<void> {
    const track = this.tracks.get(trackId);
    if (!track || track.closing || track.info.state === 'ended') return track?.done ?? Promise.resolve();
    track.closing = true;
    track.done = track.done.then(async () => {
      if (track.upload) {
        await track.upload.finish();
        track.info.state = 'ended';
        await this.deps.store.saveTrack(this.id, { ...track.info, epoch: track.epoch });
        this.broadcast(this.describe());
        return;
      }
      // A connection may still be opening (loading the session, creating its spool): wait for it.
      await track.ready;
      const pipeline = track.pipeline;
      if (!pipeline) return;
      try {
        try {
          await track.drainInput?.();
          await pipeline.close();
        } finally {
          // Its audio is in: the producer may reconnect now, while its last finals wait for STT.
          track.connected = false;
        }
        await pipeline.end();
      } catch (error) {
        this.log.error({ err: error, trackId }, 'track did not finish');
      }
      if (track.archive) {
        await this.deps.archiver!.completeTrack({ sessionId: this.id, trackId, epoch: track.epoch }, track.archive).catch((error) =>
          this.log.error({ err: error, trackId }, 'recording could not be sealed; its one-second slices stay spooled for recovery'),
        );
        track.archive = undefined;
      }
      track.offsetMs += pipeline.receivedMs;
      track.pipeline = undefined;
      track.disconnect = undefined;
      track.info.state = 'ended';
      track.info.receivedMs = track.offsetMs;
      this.deps.metrics.activeTracks.dec();
      await this.events.writes.settled();
      // A newer connection of the track owns its row now.
      if (this.tracks.get(trackId) === track) {
        await this.deps.store.saveTrack(this.id, { ...track.info, epoch: track.epoch }).catch((error) => this.log.error({ err: error, trackId }, 'could not store track end'));
      }
      this.log.info({ trackId, receivedMs: track.offsetMs }, 'track ended');
      this.broadcast(this.describe());
    });
    return track.done;
  }

  /**
   * Ends the session: closes the producers, waits for every in-flight window, merges all tracks into
   * one transcript, stores it and marks the session completed. Safe to call again (and after a restart).
   */
  end(): Promise<void> {
    if (this.state === 'completed') {
      if (this.feed.viewerCount === 0) this.deps.onIdle(this);
      return Promise.resolve();
    }
    this.ending ??= (async () => {
      this.state = 'ending';
      await this.deps.store.setSessionState(this.id, 'ending');
      this.broadcast(this.describe());
      for (const track of this.tracks.values()) track.disconnect?.(CloseCode.normal, 'session ended');
      await Promise.all([...this.tracks.keys()].map((id) => this.closeTrack(id)));
      await this.events.writes.settled();
      await this.feed.settled();
      const version = await this.deps.store.saveTranscript(this.id, (v) => buildTranscript(this, this.finals, v, new Date()));
      await this.deps.store.setSessionState(this.id, 'completed');
      this.state = 'completed';
      this.log.info({ version, segments: this.finals.length }, 'session completed');
      this.broadcast(this.describe());
      this.deps.onCompleted(this, version);
      if (this.feed.viewerCount === 0) this.deps.onIdle(this);
    })();
    return this.ending;
  }

  /** Status for the REST API: the live state plus what only the database knows. */
  async status(): Promise<SessionStatus> {
    const live = this.describe();
    return (await sessionStatus(this.deps.store, this.deps.archiver, this.id, { state: this.state, stt: live.stt, sttBacklog: { ...this.events.stt.backlog }, lastSeq: live.lastSeq, tracks: live.tracks }))!;
  }

  /**
   * Gateway shutdown: producers are told to reconnect (1001), and what they sent is transcribed,
   * stored and published before the process goes. The session itself stays active.
   */
  async drain(): Promise<void> {
    const live = [...this.tracks.values()].filter((t) => t.info.state === 'live');
    for (const track of live) track.disconnect?.(CloseCode.goingAway, 'gateway shutting down; reconnect to continue');
    await Promise.all(live.map((t) => this.closeTrack(t.info.trackId)));
    await this.events.writes.settled();
  }

  addViewer(viewer: Viewer, afterSeq = 0): void {
    this.feed.addViewer(viewer, afterSeq, this.lastUploadProgress ? [this.describe(), this.lastUploadProgress] : [this.describe()]);
  }

  removeViewer(viewer: Viewer): void {
    this.feed.removeViewer(viewer);
    if (this.feed.viewerCount === 0 && this.state === 'completed') this.deps.onIdle(this);
  }

  private broadcast(event: CaptionEvent): void {
    this.feed.broadcast(event);
  }

}
