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
import type { TrackSpool } from '../archive/track-archive.ts';
import { CapReached, TrackBusyError, type IngestError } from '../errors.ts';
import { checkLanguage } from './languages.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SessionStore } from '../store/session-store.ts';
import type { KnownSpeaker } from '../stt/transcriber.ts';
import { trackListener, type TrackEventContext } from './track-events.ts';
import { LiveDiarizer, VoicePrinter } from '../diarizer/diarizer.ts';
import { mergePrints, type VoicePrint } from '../diarizer/voice-print.ts';

/** Speech a doctor's track must have (frames: 10 s) for its voice print to be learned. */
const MIN_LEARNED_FRAMES = 500;
/**
 * How long a connection taking a track over waits for its draining holder to store the track's end (under
 * the SDK's 10 s connect timeout; past it the track is taken over as from a stopped gateway), and how often
 * it looks.
 */
const DRAIN_WAIT_MS = 8000;
const DRAIN_POLL_MS = 100;
import { DEFAULT_SEGMENTER_OPTIONS } from '../segmenter/segmenter.ts';
import { RoleBook } from '../diarizer/roles.ts';
import { TrackSpeakers, type DiarizedTrack } from './track-speakers.ts';
import type { PipelineFactory, TrackListener, TrackPipeline } from './track-pipeline.ts';
import type { RecoveredTail, TrackTail, TrackTails } from './track-tail.ts';
import type { TrackRow } from '../store/session-store.ts';

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
  /** The track hears several people (one phone on the desk): diarized into at most this many speakers. */
  maxSpeakers?: number;
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
  /** This gateway has held the track at its current epoch (not only read it from the store). */
  heldHere: boolean;
  /** Another gateway took the track over: this one publishes nothing more of it. */
  released: boolean;
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
  archive: TrackSpool | undefined;
  /** Its audio past the stored finals, kept for another gateway (a fleet with TRACK_TAIL_MS). */
  tail: TrackTail | undefined;
  /** Settles once openTrack has finished (successfully or not) for this connection. */
  ready: Promise<void>;
  /** The track of an uploaded recording: its windows come from the job queue, not a pipeline. */
  upload: UploadTrack | undefined;
  /** A diarized track's speakers: kept across its connections (a reconnection keeps who is who). */
  diarized: DiarizedTrack | undefined;
  /** A doctor's own track: their voice, learned for the diarized tracks they stream later. */
  voice: VoicePrinter | undefined;
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
  /** A fleet's track tails (Redis); undefined: a gateway on its own, or tails off. */
  tails?: TrackTails;
  /** Track time where the track's stored finals end (every gateway's). */
  storedUntil(trackId: string): number;
  metrics: Metrics;
  log: Logger;
  /** Live tracks the session may have at once. */
  maxLiveTracks: number;
  clinicalTerms(language: string | undefined, vocabulary: readonly string[]): (word: string) => boolean;
  /** What a diarizing recognizer is told of a participant's voice (their enrolled clip), if it diarizes. */
  knownSpeakers(participant: string): Promise<KnownSpeaker[]>;
  /** How long a track whose producer dropped waits for it to resume; 0 ends it at once. */
  resumeWindowMs: number;
  events: TrackEventContext;
  /** A track started, ended or failed: viewers get the session's state again. */
  changed(): void;
  /** This gateway took the track over from another that held it at `epoch`. */
  tookOver(trackId: string, epoch: number): void;
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

  /** Whether this gateway holds (or held, until it ended) the track's current epoch, rather than only knowing it from the store. */
  heldHere(trackId: string): boolean {
    return this.tracks.get(trackId)?.heldHere ?? false;
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

  /**
   * Starts (or resumes) a track for a producer connection; the returned pipeline takes its messages.
   * `recovered`: a stopped connection's tail, transcribed first (else taken here when the producer cannot resend).
   */
  async openTrack(request: ProducerRequest, recovered?: RecoveredTail): Promise<TrackPipeline> {
    const existing = this.tracks.get(request.trackId);
    if (existing?.connected && !existing.closing && existing.pipeline && request.resumeToken !== undefined && sameToken(request.resumeToken, existing.resumeToken)) {
      return this.resume(existing, existing.pipeline, request);
    }
    if (existing && (existing.upload ? existing.info.state === 'live' : existing.connected)) throw new TrackBusyError(`track ${request.trackId} is already streaming`);
    checkLanguage(request.language ?? this.options.language, this.options.languages);
    const live = [...this.tracks.values()].filter((t) => t.info.state !== 'ended').length;
    if (live >= this.options.maxLiveTracks) throw new CapReached(`session ${this.options.sessionId} has ${live} live tracks, the most allowed; retry after one ends`);
    let storedMs = existing ? existing.offsetMs + (existing.pipeline?.receivedMs ?? 0) : 0;
    // Never earlier than what is stored: new words must not be timed before finals already published.
    const offsetMs = Math.max(storedMs, request.startMs ?? 0);
    const maxSpeakers = request.maxSpeakers ?? existing?.info.maxSpeakers;
    const info: TrackInfo = { trackId: request.trackId, role: request.role, participant: request.participant, format: request.format, state: 'live', receivedMs: offsetMs, ...(maxSpeakers ? { maxSpeakers } : {}) };
    const epoch = (existing?.epoch ?? 0) + 1;
    let settle!: () => void;
    const track: TrackState = {
      ...idleTrack(info, epoch, undefined), heldHere: true, offsetMs, connection: request, connected: true, diarized: existing?.diarized,
      voice: existing?.voice ?? (!maxSpeakers && request.role === 'doctor' ? new VoicePrinter() : undefined),
      ready: new Promise<void>((resolve) => (settle = resolve)),
      done: existing?.done ?? Promise.resolve(),
    };
    this.tracks.set(request.trackId, track);
    try {
      // Another gateway of a fleet may have held the track since this one loaded it: the store knows.
      let row = await this.options.store.getTrack(this.options.sessionId, request.trackId);
      // One draining (SIGTERM) finishes what it held and then stores the track's end: this epoch starts
      // after its last final, else what it publishes meanwhile would be transcribed here a second time.
      if (row?.state === 'live' && row.owner && row.owner !== this.options.store.instanceId && (await this.options.store.isDraining(row.owner))) row = await this.afterDrain(row);
      if (row?.state === 'live' && row.owner !== this.options.store.instanceId) {
        // Taken over from another gateway (it died, or the producer lost its way to it): what that one was
        // still transcribing is the producer's to resend, and its recording is what it streamed.
        await endInterruptedTracks(this.options, this.options.sessionId);
        await this.options.archiver?.abandoned({ sessionId: this.options.sessionId, trackId: request.trackId, epoch: row.epoch });
        this.options.tookOver(request.trackId, row.epoch);
      }
      if (row) {
        track.epoch = Math.max(track.epoch, row.epoch + 1);
        storedMs = Math.max(storedMs, row.receivedMs, this.options.storedUntil(request.trackId));
        const stopped = { sessionId: this.options.sessionId, trackId: request.trackId, epoch: row.epoch };
        // The last connection's audio past its stored finals: this producer resends it, or it cannot.
        if (request.startMs === undefined) recovered ??= await this.options.tails?.take(stopped, storedMs);
        else this.options.tails?.discard(stopped);
        track.offsetMs = info.receivedMs = Math.max(storedMs, recovered?.startMs ?? 0, request.startMs ?? 0);
      }
      await this.options.store.saveTrack(this.options.sessionId, { ...info, epoch: track.epoch }, true);
      if (maxSpeakers && !track.diarized) track.diarized = await this.diarize(request, maxSpeakers);
      track.archive = await this.options.archiver?.openTrack({ sessionId: this.options.sessionId, trackId: request.trackId, epoch: track.epoch }, request.format === 'pcm16' ? request.sampleRate : 48000);
      track.tail = this.options.tails?.open({ sessionId: this.options.sessionId, trackId: request.trackId, epoch: track.epoch });
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
      offsetMs: track.offsetMs,
      epoch: track.epoch,
      listener: unlessReleased(track, trackListener(this.options.events, info, request.onFailed, track.diarized?.labels ?? new TrackSpeakers())),
      diarizer: track.diarized?.diarizer,
      voice: track.voice,
      knownSpeakers: track.diarized?.labels.knownSpeakers,
      archive: track.archive,
      tail: track.tail,
      usage: this.options.events.stt.usage,
      vocabulary: this.options.vocabulary,
    });
    // Audio the track already has (resent after the resume window passed) is skipped, not appended again.
    if (request.startMs !== undefined && request.startMs < storedMs) track.pipeline.resume(request.startMs);
    if (recovered) {
      this.options.log.warn({ trackId: request.trackId, fromMs: recovered.startMs, toMs: recovered.endMs }, "transcribing the audio a stopped gateway held past the track's stored finals");
      this.options.metrics.tailsRecovered.inc();
      for (const unit of recovered.units) track.pipeline.push(unit);
      track.pipeline.endUtterance();
    }
    request.attach(track.pipeline, track.resumeToken);
    settle();
    this.options.metrics.activeTracks.inc();
    this.options.log.info({ trackId: request.trackId, role: request.role, format: request.format, offsetMs: track.offsetMs, epoch: track.epoch }, 'track live');
    this.options.changed();
    return track.pipeline;
  }

  /** The track's row once its draining holder has stored its end (or stopped holding it), waiting at most DRAIN_WAIT_MS. */
  private async afterDrain(row: TrackRow): Promise<TrackRow | undefined> {
    const until = performance.now() + DRAIN_WAIT_MS;
    let current: TrackRow | undefined = row;
    const started = performance.now();
    while (current?.state === 'live' && current.owner === row.owner && performance.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
      current = await this.options.store.getTrack(this.options.sessionId, row.trackId);
    }
    const done = current?.state !== 'live' || current.owner !== row.owner;
    this.options.log.info({ trackId: row.trackId, holder: row.owner, waitedMs: Math.round(performance.now() - started), done }, done ? 'the draining holder stored the track; continuing after its finals' : 'the draining holder did not finish in time; taking the track over');
    return current;
  }

  /** A diarized track's speakers: its diarizer, and roles with the doctor's voice print if the participant has one. */
  private async diarize(request: ProducerRequest, maxSpeakers: number): Promise<DiarizedTrack> {
    const diarizer = new LiveDiarizer({ maxSpeakers, frameMs: DEFAULT_SEGMENTER_OPTIONS.frameMs });
    const profile = await this.options.store.speakerProfile(request.participant);
    const language = request.language ?? this.options.language;
    const roles = new RoleBook({ doctorPrint: profile?.print, language, isClinicalTerm: this.options.clinicalTerms(language, this.options.vocabulary) });
    const known = await this.options.knownSpeakers(request.participant);
    return { diarizer, labels: new TrackSpeakers(roles, () => diarizer.prints(), known) };
  }

  /** A doctor's own track taught their voice: added to what earlier tracks taught (never over an enrolled print). */
  private async learnVoice(participant: string, print: VoicePrint): Promise<void> {
    const { store } = this.options;
    const known = await store.speakerProfile(participant);
    if (known?.source === 'enrolled') return;
    await store.saveSpeakerProfile(participant, 'learned', known ? mergePrints(known.print, print) : print);
  }

  /** The track of an uploaded recording, transcribing from now on; `upload` publishes its finals. */
  async addUploadTrack(info: TrackInfo, upload: UploadTrack): Promise<void> {
    this.tracks.set(info.trackId, idleTrack(info, 1, upload));
    await this.options.store.saveTrack(this.options.sessionId, { ...info, epoch: 1 });
    this.options.changed();
  }

  /**
   * Another gateway took the track over from this one's `epoch` (the producer reached it and not this one:
   * a partition, not a death): the connection here is closed and the pipeline ends without publishing
   * anything more — the producer resends that audio to the other gateway from the track's stored finals.
   */
  release(trackId: string, epoch: number): void {
    const track = this.tracks.get(trackId);
    if (!track || track.epoch !== epoch || track.info.state === 'ended' || !track.heldHere) return;
    track.released = true;
    this.options.log.warn({ trackId, epoch }, 'another gateway took the track over; this connection is closed and its last words are left to it');
    track.connection?.disconnect(CloseCode.replaced, 'the track continues on another gateway');
    void this.closeTrack(trackId);
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
      await track.tail?.close();
      track.tail = undefined;
      // A newer connection of the track owns its row now.
      if (this.tracks.get(trackId) === track) {
        await this.options.store.saveTrack(this.options.sessionId, { ...track.info, epoch: track.epoch }).catch((error) => this.options.log.error({ err: error, trackId }, 'could not store track end'));
      }
      this.options.log.info({ trackId, receivedMs: track.offsetMs }, 'track ended');
      if (track.voice && track.voice.frames >= MIN_LEARNED_FRAMES) {
        await this.learnVoice(track.info.participant, track.voice.print()).catch((error) => this.options.log.warn({ err: error, trackId }, "could not store the doctor's learned voice print"));
      }
      this.options.changed();
    });
    return track.done;
  }

  /**
   * The session ends: the tails that stopped connections left (their producers never came back) are
   * transcribed, each as a connection of its own that ends at once. Returns how many there were.
   */
  async recoverTails(stopped: readonly TrackRow[]): Promise<number> {
    const { tails, sessionId, log } = this.options;
    if (!tails) return 0;
    let count = 0;
    for (const row of stopped) {
      const recovered = await tails.take({ sessionId, trackId: row.trackId, epoch: row.epoch }, Math.max(row.receivedMs, this.options.storedUntil(row.trackId)));
      if (!recovered) continue;
      count++;
      const request: ProducerRequest = {
        trackId: row.trackId, role: row.role as SpeakerRole, participant: row.participant, format: row.format as IngestFormat, sampleRate: 48000,
        ...(row.maxSpeakers ? { maxSpeakers: row.maxSpeakers } : {}),
        attach: () => {},
        drainInput: async () => {},
        onFailed: (error) => log.error({ err: error, trackId: row.trackId }, "a stopped connection's tail failed"),
        disconnect: () => {},
      };
      try {
        await this.openTrack(request, recovered);
      } catch (error) {
        log.error({ err: error, trackId: row.trackId }, "a stopped connection's tail could not be transcribed: its last words are lost");
        continue;
      }
      await this.closeTrack(row.trackId);
    }
    return count;
  }

  /** Gateway shutdown: producers are told to reconnect (1001), and what they sent is transcribed and published. */
  async drain(): Promise<void> {
    const live = [...this.tracks.values()].filter((t) => t.info.state !== 'ended');
    for (const track of live) track.connection?.disconnect(CloseCode.goingAway, 'gateway shutting down; reconnect to continue');
    await Promise.all(live.map((t) => this.closeTrack(t.info.trackId)));
    await this.options.events.writes.settled();
  }
}

/**
 * Ends the session's live tracks that no living gateway holds (their holder stopped): their pending
 * windows fail (their audio died with it; an SDK producer resends it) and their recordings become what
 * was streamed. Returns the tracks ended, with the epoch that was cut off.
 */
export async function endInterruptedTracks({ store, archiver }: { store: SessionStore; archiver: Archiver | undefined }, sessionId: string): Promise<{ trackId: string; epoch: number }[]> {
  const ended = await store.endInterruptedTracks(sessionId);
  if (ended.length === 0) return ended;
  await store.failPendingJobs(sessionId, ended.map((t) => t.trackId), 'gateway stopped before the window was transcribed');
  for (const track of ended) await archiver?.abandoned({ sessionId, ...track });
  return ended;
}

/** A track's listener that publishes nothing once another gateway has taken the track over. */
function unlessReleased(track: TrackState, listener: TrackListener): TrackListener {
  return {
    ...listener,
    partial: (...args) => void (track.released || listener.partial(...args)),
    final: (...args) => (track.released ? Promise.resolve() : listener.final(...args)),
    progress: (...args) => void (track.released || listener.progress(...args)),
  };
}

function idleTrack(info: TrackInfo, epoch: number, upload: UploadTrack | undefined): TrackState {
  return {
    info, heldHere: upload !== undefined, released: false, pipeline: undefined, offsetMs: info.receivedMs, epoch, connection: undefined, resumeToken: randomBytes(18).toString('base64url'), resumeTimer: undefined,
    closing: false, connected: false, archive: undefined, tail: undefined, ready: Promise.resolve(), done: Promise.resolve(), upload, diarized: undefined, voice: undefined,
  };
}

/** Compares resume tokens in constant time: their length is fixed, their content must not leak by timing. */
function sameToken(presented: string, expected: string): boolean {
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
