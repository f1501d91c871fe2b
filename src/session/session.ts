/**
 * One consultation: its tracks (one per producer device), the finals published so far, and the caption
 * viewers watching it. Every final is stored before its event goes out, with a per-session sequence
 * number so a viewer that reconnects can ask for what it missed. Ending a session waits for the last
 * windows, merges every track by time into one transcript, stores it, and then reports completion.
 */
import pRetry from 'p-retry';
import type { CaptionEvent, FinalEvent, IngestFormat, SessionEvent, SpeakerRole, TrackInfo, UploadProgressEvent, Word } from '../../client-sdk/src/protocol.ts';
import { CloseCode } from '../../client-sdk/src/protocol.ts';
import { CapReached, SessionEndedError, TrackBusyError, type IngestError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SessionRow, SessionState, SessionStore } from '../store/session-store.ts';
import { buildTranscript } from '../transcript/transcript-document.ts';
import { joinWords } from '../transcript/words.ts';
import type { Archiver } from '../archive/archiver.ts';
import type { TrackArchive } from '../archive/track-archive.ts';
import type { PipelineFactory } from './registry.ts';
import { sessionStatus, type SessionStatus } from './session-status.ts';
import type { TrackListener, TrackPipeline } from './track-pipeline.ts';

export interface Viewer {
  send(event: CaptionEvent): void;
}

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
  readonly finals: FinalEvent[];
  private readonly tracks = new Map<string, TrackState>();
  private readonly viewers = new Set<Viewer>();
  private readonly deps: SessionDependencies;
  private readonly log: Logger;
  private sttDegraded = false;
  /** Final windows of this session waiting for STT (an outage makes this grow). */
  private readonly backlog = { windows: 0, audioMs: 0 };
  private lastUploadProgress: UploadProgressEvent | undefined;
  private ending: Promise<void> | undefined;
  /** Finals are stored and sent one at a time, in seq order, whichever track produced them. */
  private publishing: Promise<void> = Promise.resolve();
  /** Highest seq already sent to viewers; later ones reach a new viewer through the broadcast. */
  private publishedSeq: number;
  /** Job and track-position writes, kept in order (queued before finished) without holding up the audio path. */
  private backgroundWrites: Promise<void> = Promise.resolve();

  constructor(row: SessionRow, finals: FinalEvent[], tracks: TrackInfo[], epochs: Map<string, number>, deps: SessionDependencies) {
    this.id = row.id;
    this.encounterRef = row.encounterRef;
    this.language = row.language;
    this.state = row.state;
    this.finals = finals;
    this.publishedSeq = finals.length;
    this.deps = deps;
    this.log = deps.log.child({ sessionId: row.id });
    for (const info of tracks) {
      this.tracks.set(info.trackId, { info, pipeline: undefined, offsetMs: info.receivedMs, epoch: epochs.get(info.trackId) ?? 0, disconnect: undefined, drainInput: undefined, closing: false, connected: false, archive: undefined, ready: Promise.resolve(), done: Promise.resolve(), upload: undefined });
    }
  }

  describe(): SessionEvent {
    return {
      type: 'session',
      sessionId: this.id,
      state: this.state === 'completed' ? 'ended' : this.state,
      stt: this.sttDegraded ? 'degraded' : 'ok',
      tracks: [...this.tracks.values()].map((t) => ({ ...t.info, receivedMs: t.offsetMs + (t.pipeline?.receivedMs ?? 0) })),
      lastSeq: this.publishedSeq,
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
      listener: this.listenerFor(info, request.onFailed),
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
    return this.publishFinal(this.tracks.get(trackId)!.info, utteranceId, words);
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
      await this.backgroundWrites;
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
      if (this.viewers.size === 0) this.deps.onIdle(this);
      return Promise.resolve();
    }
    this.ending ??= (async () => {
      this.state = 'ending';
      await this.deps.store.setSessionState(this.id, 'ending');
      this.broadcast(this.describe());
      for (const track of this.tracks.values()) track.disconnect?.(CloseCode.normal, 'session ended');
      await Promise.all([...this.tracks.keys()].map((id) => this.closeTrack(id)));
      await this.backgroundWrites;
      await this.publishing;
      const version = await this.deps.store.saveTranscript(this.id, (v) => buildTranscript(this, this.finals, v, new Date()));
      await this.deps.store.setSessionState(this.id, 'completed');
      this.state = 'completed';
      this.log.info({ version, segments: this.finals.length }, 'session completed');
      this.broadcast(this.describe());
      this.deps.onCompleted(this, version);
      if (this.viewers.size === 0) this.deps.onIdle(this);
    })();
    return this.ending;
  }

  /** Status for the REST API: the live state plus what only the database knows. */
  async status(): Promise<SessionStatus> {
    const live = this.describe();
    return (await sessionStatus(this.deps.store, this.deps.archiver, this.id, { state: this.state, stt: live.stt, sttBacklog: { ...this.backlog }, lastSeq: live.lastSeq, tracks: live.tracks }))!;
  }

  /**
   * Gateway shutdown: producers are told to reconnect (1001), and what they sent is transcribed,
   * stored and published before the process goes. The session itself stays active.
   */
  async drain(): Promise<void> {
    const live = [...this.tracks.values()].filter((t) => t.info.state === 'live');
    for (const track of live) track.disconnect?.(CloseCode.goingAway, 'gateway shutting down; reconnect to continue');
    await Promise.all(live.map((t) => this.closeTrack(t.info.trackId)));
    await this.backgroundWrites;
  }

  addViewer(viewer: Viewer, afterSeq = 0): void {
    viewer.send(this.describe());
    if (this.lastUploadProgress) viewer.send(this.lastUploadProgress);
    for (const final of this.finals) if (final.seq > afterSeq && final.seq <= this.publishedSeq) viewer.send(final);
    this.viewers.add(viewer);
    this.deps.metrics.viewers.inc();
  }

  removeViewer(viewer: Viewer): void {
    if (this.viewers.delete(viewer)) this.deps.metrics.viewers.dec();
    if (this.viewers.size === 0 && this.state === 'completed') this.deps.onIdle(this);
  }

  private broadcast(event: CaptionEvent): void {
    for (const viewer of this.viewers) viewer.send(event);
  }

  private changeBacklog(windows: number, audioMs: number): void {
    this.backlog.windows += windows;
    this.backlog.audioMs += audioMs;
  }

  private writeInOrder(write: () => Promise<void>): void {
    this.backgroundWrites = this.backgroundWrites.then(write).catch((error) => this.log.warn({ err: error }, 'could not record a job or track position'));
  }

  /** Stores a final, retrying while the database is unreachable; viewers hear about a lasting failure. */
  private async storeFinal(final: FinalEvent): Promise<void> {
    try {
      await pRetry(() => this.deps.store.insertSegment(final), { retries: 6, minTimeout: 200, maxTimeout: 5000 });
    } catch (error) {
      this.log.error({ err: error, segmentId: final.segmentId }, 'final could not be stored');
      this.broadcast({ type: 'error', sessionId: this.id, code: 'storage_unavailable', message: `segment ${final.segmentId} could not be stored: ${(error as Error).message}`, trackId: final.trackId });
    }
  }

  /** Numbers a final, stores it and sends it, in seq order whichever track it comes from. */
  private async publishFinal(info: TrackInfo, utteranceId: string, words: Word[]): Promise<void> {
    if (words.length === 0) return;
    const seq = this.finals.length + 1;
    const final: FinalEvent = {
      type: 'final',
      sessionId: this.id,
      seq,
      segmentId: `${this.id}.${seq}`,
      trackId: info.trackId,
      role: info.role,
      speaker: info.participant,
      utteranceId,
      text: joinWords(words),
      words,
      startMs: words[0].startMs,
      endMs: words[words.length - 1].endMs,
    };
    this.finals.push(final);
    const published = this.publishing.then(async () => {
      await this.storeFinal(final);
      this.publishedSeq = final.seq;
      this.broadcast(final);
    });
    this.publishing = published;
    await published;
  }

  private listenerFor(info: TrackInfo, onFailed: (error: IngestError) => void): TrackListener {
    return {
      partial: (utteranceId, stable, unstable, startMs) => {
        this.broadcast({ type: 'partial', sessionId: this.id, trackId: info.trackId, role: info.role, utteranceId, stable: joinWords(stable), unstable: joinWords(unstable), startMs });
      },
      queued: (utteranceId, window) => {
        this.changeBacklog(1, window.endMs - window.startMs);
        this.writeInOrder(() => this.deps.store.jobQueued(this.id, info.trackId, utteranceId, window));
      },
      final: async (utteranceId, words: Word[], window, timing) => {
        this.changeBacklog(-1, window.startMs - window.endMs);
        this.writeInOrder(() => this.deps.store.jobFinished(this.id, utteranceId, 'done', timing.sttMs));
        if (words.length > 0) {
          await this.publishFinal(info, utteranceId, words);
        } else {
          // Still tell viewers the utterance is over, so a partial caption does not linger.
          this.broadcast({ type: 'partial', sessionId: this.id, trackId: info.trackId, role: info.role, utteranceId, stable: '', unstable: '', startMs: window.startMs });
        }
        const now = performance.now();
        this.deps.metrics.finalLatency.observe(Math.max(0, now - timing.speechEndAt - timing.sttMs) / 1000);
        this.deps.metrics.finalProcessing.observe(Math.max(0, now - timing.closedAt - timing.sttMs) / 1000);
      },
      sttFailed: (error, utteranceId) => {
        this.log.warn({ err: error, trackId: info.trackId }, 'STT failed; window kept for retry');
        this.writeInOrder(() => this.deps.store.jobFailedAttempt(this.id, utteranceId, error.message));
        const wasDegraded = this.sttDegraded;
        this.sttDegraded = true;
        this.broadcast({ type: 'error', sessionId: this.id, code: 'stt_unavailable', message: `speech-to-text failed, retrying: ${error.message}`, trackId: info.trackId });
        if (!wasDegraded) this.broadcast(this.describe());
      },
      progress: (trackMs) => {
        this.writeInOrder(() => this.deps.store.saveTrack(this.id, { ...info, receivedMs: trackMs, epoch: this.tracks.get(info.trackId)?.epoch ?? 0 }));
      },
      sttRecovered: () => {
        if (!this.sttDegraded) return;
        this.sttDegraded = false;
        this.log.info('STT recovered');
        this.broadcast(this.describe());
      },
      abandoned: (utteranceId, window, error) => {
        this.changeBacklog(-1, window.startMs - window.endMs);
        this.log.error({ trackId: info.trackId, ...window, reason: error.message }, 'final window not transcribed before shutdown');
        this.writeInOrder(() => this.deps.store.jobFinished(this.id, utteranceId, 'failed', null, `gateway shut down: ${error.message}`));
      },
      failed: (error) => {
        this.log.warn({ trackId: info.trackId, reason: error.message }, 'track stream rejected');
        // Part of the session state, for viewers and the REST status, whatever the transport.
        info.failure = error.message;
        this.broadcast({ type: 'error', sessionId: this.id, code: 'track_failed', message: error.message, trackId: info.trackId });
        onFailed(error);
      },
    };
  }
}
