/**
 * One consultation: its tracks (one per producer device), the finals published so far, and the caption
 * viewers watching it. Every final is stored before its event goes out, with a per-session sequence
 * number so a viewer that reconnects can ask for what it missed. Ending a session waits for the last
 * windows, merges every track by time into one transcript, stores it, and then reports completion.
 */
import type { CaptionEvent, FinalEvent, SessionEvent, TrackInfo, UploadProgressEvent, Word } from '../../client-sdk/src/protocol.ts';
import { CloseCode } from '../../client-sdk/src/protocol.ts';
import { SessionEndedError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SessionRow, SessionState, SessionStore } from '../store/session-store.ts';
import { buildTranscript } from '../transcript/transcript-document.ts';
import type { Archiver } from '../archive/archiver.ts';
import { CaptionFeed, type Viewer } from './caption-feed.ts';
import { OrderedWrites, SttHealth, type TrackEventContext } from './track-events.ts';
import { TrackTable, type ProducerRequest, type UploadTrack } from './track-table.ts';
import type { SessionStatus } from '../../client-sdk/src/protocol.ts';
import { sessionStatus } from './session-status.ts';
import type { PipelineFactory, TrackPipeline } from './track-pipeline.ts';

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
  /** How long a track whose producer dropped waits for it to resume (PRODUCER_RESUME_MS). */
  resumeWindowMs: number;
  /** The recognizer's refusal while it refuses the gateway's requests (shared by every session). */
  sttRefusal(): string | undefined;
  /** The languages the recognizer transcribes (STT_LANGUAGES); undefined: any. */
  languages?: readonly string[];
}

export class Session {
  readonly id: string;
  readonly encounterRef: string | null;
  readonly language: string | null;
  /** The visit's own terms (prompted, and corrected toward in finals). */
  readonly vocabulary: readonly string[];
  state: SessionState;
  private readonly tracks: TrackTable;
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
    this.vocabulary = row.vocabulary;
    this.state = row.state;
    this.deps = deps;
    this.log = deps.log.child({ sessionId: row.id });
    this.feed = new CaptionFeed(row.id, finals, deps.store, this.log, deps.metrics);
    this.events = {
      feed: this.feed, store: deps.store, writes: new OrderedWrites(this.log), stt: new SttHealth(), metrics: deps.metrics, log: this.log,
      epochOf: (trackId) => this.tracks.epochOf(trackId),
      stateChanged: () => this.broadcast(this.describe()),
    };
    this.tracks = new TrackTable(
      { ...deps, sessionId: row.id, language: row.language ?? undefined, vocabulary: row.vocabulary, log: this.log, events: this.events, changed: () => this.broadcast(this.describe()) },
      tracks,
      epochs,
    );
  }

  /** Every final so far, in seq order. */
  get finals(): readonly FinalEvent[] {
    return this.feed.finals;
  }

  private sttState(): Pick<SessionEvent, 'stt' | 'sttError'> {
    const refusal = this.deps.sttRefusal();
    if (refusal) return { stt: 'misconfigured', sttError: refusal };
    return { stt: this.events.stt.degraded ? 'degraded' : 'ok' };
  }

  /** The recognizer started or stopped refusing requests: viewers see the new state. */
  sttStateChanged(): void {
    this.broadcast(this.describe());
  }

  describe(): SessionEvent {
    return {
      type: 'session',
      sessionId: this.id,
      state: this.state === 'completed' ? 'ended' : this.state,
      ...this.sttState(),
      tracks: this.tracks.describe(),
      lastSeq: this.feed.lastSeq,
    };
  }

  /** Starts (or resumes) a track for a producer connection; the returned pipeline takes its audio units. */
  openTrack(request: ProducerRequest): Promise<TrackPipeline> {
    if (this.state !== 'active') return Promise.reject(new SessionEndedError(`session ${this.id} has ${this.state === 'ending' ? 'been ended' : 'completed'}`));
    return this.tracks.openTrack(request);
  }

  /** The track of an uploaded recording, transcribing from now on; `upload` publishes its finals. */
  addUploadTrack(info: TrackInfo, upload: UploadTrack): Promise<void> {
    return this.tracks.addUploadTrack(info, upload);
  }

  /** A final of an uploaded recording's track, published like a live one (stored, then sent). */
  publishUploadFinal(trackId: string, utteranceId: string, words: Word[]): Promise<void> {
    return this.feed.publish(this.tracks.info(trackId)!, utteranceId, words);
  }

  /** Progress of an uploaded recording; a viewer connecting later receives the latest. */
  uploadProgress(event: UploadProgressEvent): void {
    this.lastUploadProgress = event;
    this.broadcast(event);
  }

  /** A track's transport failed (ICE/DTLS, a vanished sender), for viewers; the track is then closed. */
  trackFailed(trackId: string, message: string): void {
    this.tracks.trackFailed(trackId, message);
    this.broadcast({ type: 'error', sessionId: this.id, code: 'track_failed', message, trackId });
  }

  /** A dead-lettered window, for viewers. */
  windowFailed(trackId: string, message: string): void {
    this.broadcast({ type: 'error', sessionId: this.id, code: 'window_failed', message, trackId });
  }

  /**
   * The producer is gone: flush the track, publish its last finals, mark it ended. With `connection`, only
   * while that connection is still the track's (a connection taken over by a resumed one ends nothing).
   */
  closeTrack(trackId: string, connection?: ProducerRequest): Promise<void> {
    return this.tracks.closeTrack(trackId, connection);
  }

  /** The producer's connection dropped without closing: the track waits for it to resume, then ends. */
  connectionLost(trackId: string, connection: ProducerRequest): void {
    this.tracks.connectionLost(trackId, connection);
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
      this.tracks.disconnectAll(CloseCode.normal, 'session ended');
      await Promise.all(this.tracks.ids().map((id) => this.closeTrack(id)));
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
    return (await sessionStatus(this.deps.store, this.deps.archiver, this.id, { state: this.state, stt: live.stt, sttError: live.sttError ?? null, sttBacklog: { ...this.events.stt.backlog }, sttAudio: this.events.stt.usage.figures, lastSeq: live.lastSeq, tracks: live.tracks }))!;
  }

  /**
   * Gateway shutdown: producers are told to reconnect (1001), and what they sent is transcribed,
   * stored and published before the process goes. The session itself stays active.
   */
  drain(): Promise<void> {
    return this.tracks.drain();
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
