/**
 * One consultation: its tracks (one per producer device), the finals published so far, and the caption
 * viewers watching it. Every final is stored before its event goes out, with a per-session sequence
 * number so a viewer that reconnects can ask for what it missed. Ending a session waits for the last
 * windows, merges every track by time into one transcript, stores it, and then reports completion.
 */
import type { CaptionEvent, FinalEvent, SessionEvent, SpeakerRole, TrackInfo, UploadProgressEvent } from '../../client-sdk/src/protocol.ts';
import { CloseCode } from '../../client-sdk/src/protocol.ts';
import { SessionEndedError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SessionRow, SessionState, SessionStore } from '../store/session-store.ts';
import { buildTranscript } from '../transcript/transcript-document.ts';
import type { Archiver } from '../archive/archiver.ts';
import type { BusMessage, CaptionBus } from './caption-bus.ts';
import { CaptionFeed, type Viewer } from './caption-feed.ts';
import { OrderedWrites, SttHealth, type TrackEventContext } from './track-events.ts';
import { endInterruptedTracks, TrackTable, type ProducerRequest, type UploadTrack } from './track-table.ts';
import type { SpokenPart } from './track-speakers.ts';
import type { KnownSpeaker } from '../stt/transcriber.ts';
import type { SessionStatus } from '../../client-sdk/src/protocol.ts';
import { sessionStatus } from './session-status.ts';
import type { PipelineFactory, TrackPipeline } from './track-pipeline.ts';
import type { TrackTails } from './track-tail.ts';

export interface SessionDependencies {
  factory: PipelineFactory;
  store: SessionStore;
  /** What the gateways of a fleet tell each other (an in-process bus for a gateway on its own). */
  bus: CaptionBus;
  /** Absent only when archiving was disabled with the insecure development flag. */
  archiver: Archiver | undefined;
  /** A fleet's track tails (TRACK_TAIL_MS with REDIS_URL). */
  tails?: TrackTails;
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
  /** The clinical terms of a language and the session's vocabulary (a diarized track's content roles). */
  clinicalTerms(language: string | undefined, vocabulary: readonly string[]): (word: string) => boolean;
  /** What a diarizing recognizer is told of a participant's voice (their enrolled clip), if it diarizes. */
  knownSpeakers(participant: string): Promise<KnownSpeaker[]>;
  /** The recognizer's model, recorded with each session's STT usage (analytics). */
  sttModel: string;
  /** Its price per audio minute (STT_PRICE_PER_MINUTE), if known: the cost metric. */
  sttPricePerMinute: number | undefined;
}

/** A track as the store (and the gateway holding it) says, with the epoch that says how recent it is. */
export type RemoteTrack = TrackInfo & { epoch: number };

/** How often an ending session looks whether the other gateways have closed their tracks of it. */
const FLEET_END_POLL_MS = 200;
/** Longest wait for another living gateway to close its tracks before the transcript is merged without its last words. */
const FLEET_END_WAIT_MS = 60000;

export class Session {
  readonly id: string;
  readonly encounterRef: string | null;
  readonly encounterType: string | null;
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
  private endingLocally: Promise<void> | undefined;
  private readonly completionWaiters: (() => void)[] = [];
  /** Tracks of the session as the store and their holders say (every gateway's), by track, with their epoch. */
  private remoteTracks = new Map<string, RemoteTrack>();
  /** Each other gateway's last statement of its own tracks' states. */
  private readonly statedBy = new Map<string, TrackInfo[]>();
  /** This gateway's STT usage for the session already added to the store. */
  private sttUsageRecorded = { audioMs: 0, calls: 0, dropped: 0 };
  /** Store reads of the tracks, in order: an older one finishing late is not used. */
  private trackReads = 0;

  /** `heldElsewhere`: tracks that other living gateways held live when the session was loaded. */
  constructor(row: SessionRow, finals: FinalEvent[], tracks: TrackInfo[], epochs: Map<string, number>, deps: SessionDependencies, heldElsewhere: RemoteTrack[] = []) {
    this.id = row.id;
    this.encounterRef = row.encounterRef;
    this.encounterType = row.encounterType;
    this.language = row.language;
    this.vocabulary = row.vocabulary;
    this.state = row.state;
    this.deps = deps;
    this.log = deps.log.child({ sessionId: row.id });
    this.remoteTracks = new Map(heldElsewhere.map((t) => [t.trackId, t]));
    this.feed = new CaptionFeed(row.id, finals, deps.store, deps.bus, this.log, deps.metrics, (message) => this.receive(message));
    this.events = {
      feed: this.feed, store: deps.store, writes: new OrderedWrites(this.log), stt: new SttHealth(), metrics: deps.metrics, log: this.log,
      epochOf: (trackId) => this.tracks.epochOf(trackId),
      stateChanged: () => this.announce(),
    };
    this.tracks = new TrackTable(
      {
        ...deps, sessionId: row.id, language: row.language ?? undefined, vocabulary: row.vocabulary, log: this.log, events: this.events, changed: () => this.announce(), tookOver: (trackId, epoch) => this.feed.release(trackId, epoch),
        storedUntil: (trackId) => this.feed.finals.reduce((end, f) => (f.trackId === trackId ? Math.max(end, Math.ceil(f.endMs)) : end), 0),
      },
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
    this.announce();
  }

  describe(): SessionEvent {
    return {
      type: 'session',
      sessionId: this.id,
      state: this.state === 'completed' ? 'ended' : this.state,
      ...this.sttState(),
      tracks: this.allTracks(),
      lastSeq: this.feed.lastSeq,
    };
  }

  /** Every gateway's tracks: those live here as this gateway has them, the others as the store and their holders say. */
  private allTracks(): TrackInfo[] {
    const tracks = new Map(this.tracks.describe().map((t) => [t.trackId, t]));
    for (const { epoch, ...track } of this.remoteTracks.values()) {
      // What this gateway holds is as it has it, unless another has taken the track over since (a later epoch).
      if (!this.tracks.heldHere(track.trackId) || epoch > this.tracks.epochOf(track.trackId)) tracks.set(track.trackId, track);
    }
    return [...tracks.values()];
  }

  /**
   * The tracks as the store has them (a holder's writes win over any other's), each told in the words of
   * the gateway holding it when it said something (a track `reconnecting` is `live` in the store).
   */
  private async refreshRemoteTracks(): Promise<void> {
    const read = ++this.trackReads;
    const rows = await this.deps.store.listTracks(this.id);
    if (read !== this.trackReads) return;
    this.remoteTracks = new Map(
      rows.map((row) => {
        const stated = row.owner ? this.statedBy.get(row.owner)?.find((t) => t.trackId === row.trackId) : undefined;
        const stored: TrackInfo = { trackId: row.trackId, role: row.role as SpeakerRole, participant: row.participant, format: row.format as TrackInfo['format'], state: row.state, receivedMs: row.receivedMs, ...(row.maxSpeakers ? { maxSpeakers: row.maxSpeakers } : {}) };
        return [row.trackId, { ...(stated ?? stored), epoch: row.epoch }];
      }),
    );
  }

  /** What another gateway holding the session said: its tracks' states, that the session ended, or a request to end it. */
  private receive(message: BusMessage): void {
    if (message.kind === 'end') {
      void this.endLocally().catch((error) => this.log.error({ err: error }, 'could not end this gateway\'s part of the session'));
      return;
    }
    if (message.kind === 'release') {
      this.tracks.release(message.trackId, message.epoch);
      return;
    }
    const event = message.event;
    if (event.type !== 'session') return;
    this.statedBy.set(message.origin, event.tracks);
    void this.refreshRemoteTracks()
      .catch((error) => this.log.warn({ err: error }, "could not read the session's tracks; shown as the other gateways said"))
      .then(() => {
        if (event.state === 'ended' && this.state !== 'completed') {
          // Another gateway merged the transcript.
          this.state = 'completed';
          for (const resolve of this.completionWaiters.splice(0)) resolve();
        }
        this.feed.sendLocally(this.describe());
        if (this.state === 'completed' && this.feed.viewerCount === 0) this.deps.onIdle(this);
      });
  }

  /** Starts (or resumes) a track for a producer connection; the returned pipeline takes its audio units. */
  openTrack(request: ProducerRequest): Promise<TrackPipeline> {
    if (this.state !== 'active') return Promise.reject(new SessionEndedError(`session ${this.id} has ${this.state === 'ending' ? 'been ended' : 'completed'}`));
    return this.tracks.openTrack(request).then((pipeline) => {
      this.announce();
      return pipeline;
    });
  }

  /** The track of an uploaded recording, transcribing from now on; `upload` publishes its finals. */
  addUploadTrack(info: TrackInfo, upload: UploadTrack): Promise<void> {
    return this.tracks.addUploadTrack(info, upload);
  }

  /** A final of an uploaded recording's track (one speaker's part), published like a live one (stored, then sent). */
  publishUploadFinal(trackId: string, utteranceId: string, part: SpokenPart): Promise<void> {
    return this.feed.publish(trackId, utteranceId, part);
  }

  /** Resolves once the session has completed (its transcript stored). */
  completion(): Promise<void> {
    if (this.state === 'completed') return Promise.resolve();
    return new Promise((resolve) => this.completionWaiters.push(resolve));
  }

  /** An upload window the recognizer answered: counted with the session's STT usage. */
  uploadWindowAnswered(audioMs: number, dropped: number): void {
    this.events.stt.usage.record('final', audioMs);
    this.events.stt.usage.dropped += dropped;
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
      await this.endLocally();
      this.feed.requestEnd();
      await this.othersClosed();
      await this.feed.catchUp();
      // Producers of tracks whose gateway stopped, and that never came back: their last words, from the tails.
      const stopped = (await this.deps.store.listTracks(this.id)).filter((t) => t.state === 'ended' && t.format !== 'upload');
      if ((await this.tracks.recoverTails(stopped)) > 0) {
        await this.events.writes.settled();
        await this.recordSttUsage();
      }
      // The store has every gateway's finals; this one's memory may lack those of a gateway that died.
      const finals = await this.deps.store.listSegments(this.id);
      const version = await this.deps.store.completeSession(this.id, (v) => buildTranscript(this, finals, v, new Date()));
      this.state = 'completed';
      for (const resolve of this.completionWaiters.splice(0)) resolve();
      if (version !== undefined) {
        this.deps.metrics.sessionsCompleted.inc({ encounter_type: this.encounterType ?? 'unspecified' });
        this.log.info({ version, segments: finals.length }, 'session completed');
        this.announce();
        this.deps.onCompleted(this, version);
      }
      if (this.feed.viewerCount === 0) this.deps.onIdle(this);
    })();
    return this.ending;
  }

  /**
   * This gateway's part of ending the session (asked here, or by another gateway): its producers are
   * closed, their last finals stored and sent, and what it sent the recognizer counted.
   */
  private endLocally(): Promise<void> {
    this.endingLocally ??= (async () => {
      if (this.state === 'active') this.state = 'ending';
      this.announce();
      this.tracks.disconnectAll(CloseCode.normal, 'session ended');
      await Promise.all(this.tracks.ids().map((id) => this.closeTrack(id)));
      await this.events.writes.settled();
      await this.feed.settled();
      await this.recordSttUsage();
    })();
    return this.endingLocally;
  }

  /** Adds what this gateway sent STT for the session since it last recorded it (each gateway adds its own). */
  private async recordSttUsage(): Promise<void> {
    const { usage } = this.events.stt;
    const { sentMs } = usage.figures;
    const total = { audioMs: sentMs.partial + sentMs.final + sentMs.speculative, calls: usage.calls, dropped: usage.dropped };
    const recorded = this.sttUsageRecorded;
    this.sttUsageRecorded = total;
    const audioMs = total.audioMs - recorded.audioMs;
    if (this.deps.sttPricePerMinute !== undefined) this.deps.metrics.sttEstimatedCost.inc({ model: this.deps.sttModel }, (audioMs / 60000) * this.deps.sttPricePerMinute);
    await this.deps.store.recordSttUsage(this.id, { model: this.deps.sttModel, audioMs, calls: total.calls - recorded.calls, dropped: total.dropped - recorded.dropped });
  }

  /**
   * Waits until no other living gateway holds a track of the session live (each was asked to close
   * them; asked again each second, as the bus may lose a message). Tracks of gateways that died are
   * ended here; a living gateway that does not answer within FLEET_END_WAIT_MS is passed over.
   */
  private async othersClosed(): Promise<void> {
    const deadline = performance.now() + FLEET_END_WAIT_MS;
    let askedAt = performance.now();
    for (;;) {
      await endInterruptedTracks(this.deps, this.id);
      const heldElsewhere = (await this.deps.store.listTracks(this.id)).filter((t) => t.state === 'live' && t.format !== 'upload' && t.owner !== this.deps.store.instanceId);
      if (heldElsewhere.length === 0) return;
      if (performance.now() > deadline) {
        this.log.error({ tracks: heldElsewhere.map((t) => `${t.trackId}@${t.owner}`) }, 'other gateways did not close their tracks in time; the transcript is merged without their last words');
        return;
      }
      if (performance.now() - askedAt >= 1000) {
        this.feed.requestEnd();
        askedAt = performance.now();
      }
      await new Promise((resolve) => setTimeout(resolve, FLEET_END_POLL_MS));
    }
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

  /** The session was deleted: its viewers are disconnected (4410). */
  closeViewers(code: number, reason: string): void {
    this.feed.closeViewers(code, reason);
  }

  /** The session leaves this gateway's memory: it stops listening to the others. */
  dispose(): void {
    this.feed.close();
  }

  removeViewer(viewer: Viewer): void {
    this.feed.removeViewer(viewer);
    if (this.feed.viewerCount === 0 && this.state === 'completed') this.deps.onIdle(this);
  }

  private broadcast(event: CaptionEvent): void {
    this.feed.broadcast(event);
  }

  /**
   * The session's state to this gateway's viewers (every gateway's tracks) and to the other gateways
   * (only this one's tracks: an echo of what they said would bring back states they have left).
   */
  private announce(): void {
    const merged = this.describe();
    this.feed.sendLocally(merged);
    this.feed.publishToOthers({ ...merged, tracks: this.tracks.describe() });
  }

}
