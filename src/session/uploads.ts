/**
 * Uploaded recordings, end to end: receive the body into a private directory, validate, decode and
 * segment it (ingest/upload-ingest), then create the session, archive the original encrypted, and queue
 * one job per window. Results from the queue (from whichever worker ran them) are routed to the upload's
 * UploadTranscription. A rejected upload leaves nothing: no session, no files, no jobs.
 */
import type { TrackPrompts } from '../stt/clinical-vocabulary.ts';
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { SpeakerRole, TrackInfo } from '../../client-sdk/src/protocol.ts';
import type { Archiver } from '../archive/archiver.ts';
import type { AudioSealer } from '../archive/data-keys.ts';
import { SealedFileReader } from '../archive/sealed-file.ts';
import type { VoiceActivityDetector } from '../audio/vad.ts';
import type { StreamDenoiser } from '../audio/noise-suppressor.ts';
import { inspectUpload, receiveUpload, type UploadAnalysis } from './upload-ingest.ts';
import { SessionExistsError, UploadRejected } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SegmenterOptions } from '../segmenter/segmenter.ts';
import type { UploadWindow } from '../store/schema.ts';
import type { SessionStore } from '../store/session-store.ts';
import { DirectoryWindowAudio, type UploadPriority, type WindowQueue } from '../stt/window-queue.ts';
import { checkLanguage } from './languages.ts';
import type { SessionRegistry } from './registry.ts';
import type { Session } from './session.ts';
import { UploadTranscription } from './upload-transcription.ts';
import { TrackSpeakers } from './track-speakers.ts';
import { RoleBook } from '../diarizer/roles.ts';

export interface UploadRequest {
  id?: string;
  encounterRef?: string;
  encounterType?: string;
  language?: string;
  role: SpeakerRole;
  participant: string;
  fileName?: string;
  priority: UploadPriority;
  /** The recording hears several people: diarized into at most this many speakers. */
  maxSpeakers?: number;
}

export interface UploadServiceOptions {
  registry: SessionRegistry;
  store: SessionStore;
  queue: WindowQueue;
  archiver: Archiver | undefined;
  log: Logger;
  /** Where uploads are received and staged until accepted. */
  workDir: string;
  maxBytes: number;
  maxDurationMs: number;
  /** A body that sends nothing for this long is given up. */
  bodyIdleTimeoutMs: number;
  /** Seals the original and the window audio at rest under the session's data key. */
  sealer: AudioSealer;
  segmenter: Partial<SegmenterOptions>;
  vad(): VoiceActivityDetector;
  /** A track's noise suppression (undefined: off). */
  denoiser?(): StreamDenoiser | undefined;
  /** What an upload's windows are prompted with and its finals corrected toward, by language and session vocabulary. */
  prompts(language: string | undefined, vocabulary: readonly string[]): TrackPrompts;
  /** The languages the recognizer transcribes; undefined: any. */
  languages?: readonly string[];
  clinicalTerms(language: string | undefined, vocabulary: readonly string[]): (word: string) => boolean;
  metrics: Metrics;
}

/** Window audio is queued this many windows at a time, so a long recording is never all in memory. */
const QUEUE_BATCH = 16;
const TRACK_ID = 'upload';

export class UploadService {
  private readonly options: UploadServiceOptions;
  private readonly active = new Map<string, UploadTranscription>();

  constructor(options: UploadServiceOptions) {
    this.options = options;
    options.queue.listen({
      completed: (job, result, attempts) => void this.active.get(job.sessionId)?.completed(job, result, attempts).catch((error) => this.failedToRecord(job.sessionId, error)),
      dead: (job, error, attempts) => {
        options.metrics.windowsDeadLettered.inc();
        void this.active.get(job.sessionId)?.deadLettered(job, error, attempts).catch((error) => this.failedToRecord(job.sessionId, error));
      },
    });
  }

  /** Receives, validates and queues an upload; resolves with its session once every window is queued. */
  async accept(body: Readable, request: UploadRequest): Promise<{ session: Session; analysis: UploadAnalysis }> {
    const { registry, store, queue, archiver, log } = this.options;
    const sessionId = request.id ?? randomUUID();
    checkLanguage(request.language, this.options.languages);
    if (await store.getSession(sessionId)) throw new SessionExistsError(`session ${sessionId} exists already`);
    const dir = join(this.options.workDir, randomUUID());
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const dataKey = (await store.dataKey(sessionId, () => this.options.sealer.newDataKey()))!;
    let accepted = false;
    let sizeBytes: number | null = null;
    try {
      const key = await this.options.sealer.key(dataKey);
      const received = await receiveUpload(body, join(dir, 'original'), key, this.options.maxBytes, this.options.bodyIdleTimeoutMs);
      sizeBytes = received.sizeBytes;
      const file = await SealedFileReader.open(received.path, key, 'original');
      const staged = new DirectoryWindowAudio(join(dir, 'windows'), this.options.sealer);
      const analysis = await inspectUpload(file, {
        maxDurationMs: this.options.maxDurationMs,
        segmenter: this.options.segmenter,
        vad: this.options.vad(),
        denoiser: this.options.denoiser,
        window: (window, audio) => staged.put({ id: String(window.index), dataKey }, audio),
        maxSpeakers: request.maxSpeakers,
      }).catch((error: unknown) => {
        if (error instanceof UploadRejected) throw error;
        log.error({ err: error, sessionId }, 'processing an upload failed');
        throw new UploadRejected('processing_failed', 'the gateway failed while processing the recording; nothing was kept, and other sessions are unaffected');
      });
      const session = await registry.create({ id: sessionId, encounterRef: request.encounterRef, encounterType: request.encounterType, language: request.language });
      await store.saveUpload({
        sessionId, trackId: TRACK_ID, fileName: request.fileName ?? null, format: analysis.format, sizeBytes: received.sizeBytes, durationMs: analysis.durationMs,
        sampleRate: analysis.sampleRate, meanDbfs: analysis.meanDbfs, warnings: analysis.warnings, priority: request.priority, windows: analysis.windows, state: 'transcribing',
        speakers: analysis.speakers,
      });
      const track: TrackInfo = {
        trackId: TRACK_ID, role: request.role, participant: request.participant, format: 'upload', state: 'live', receivedMs: analysis.durationMs,
        ...(request.maxSpeakers ? { maxSpeakers: request.maxSpeakers } : {}),
      };
      const transcription = await this.attach(session, track, analysis.windows, dataKey, analysis.speakers);
      const startedAt = performance.now();
      void session.completion().then(() => this.options.metrics.uploadRealTimeFactor.observe(analysis.durationMs / Math.max(1, performance.now() - startedAt)), () => undefined);
      accepted = true;
      await archiver?.archiveFile({ sessionId, trackId: TRACK_ID, epoch: 1 }, file.stream(), analysis.format, analysis.durationMs);
      await transcription.registerWindows();
      for (let i = 0; i < analysis.windows.length; i += QUEUE_BATCH) {
        const batch = await Promise.all(analysis.windows.slice(i, i + QUEUE_BATCH).map(async (w) => ({ job: transcription.job(w), audio: (await staged.get({ id: String(w.index), dataKey }))! })));
        await queue.add(batch, request.priority);
      }
      this.options.metrics.uploadAudioSeconds.inc(analysis.durationMs / 1000);
      log.info({ sessionId, format: analysis.format, durationMs: analysis.durationMs, windows: analysis.windows.length, warnings: analysis.warnings.map((w) => w.code) }, 'upload accepted');
      return { session, analysis };
    } catch (error) {
      // Counted for the operators (nothing else of a refused upload is kept).
      if (error instanceof UploadRejected) {
        this.options.metrics.uploadsRejected.inc({ code: error.code });
        await store.recordUploadRejection(error.code, sizeBytes).catch((e) => log.warn({ err: e }, 'could not count a rejected upload'));
      }
      throw error;
    } finally {
      await rm(dir, { recursive: true, force: true });
      if (!accepted) await this.destroyKey(sessionId, dataKey);
    }
  }

  /**
   * At start: uploads a previous gateway process was transcribing carry on. Their jobs waited in the
   * queue (Redis), or their window audio on disk (the in-process queue) and are queued again.
   */
  async recover(): Promise<number> {
    const { registry, store, log } = this.options;
    // Bodies a previous process was receiving when it stopped: their uploads were never accepted.
    await rm(this.options.workDir, { recursive: true, force: true });
    const rows = [...(await store.uploadsInState('transcribing')), ...(await store.uploadsInState('needs_attention'))];
    for (const row of rows) {
      const session = await registry.get(row.sessionId);
      if (!session || session.state !== 'active' || this.active.has(row.sessionId)) continue;
      const track = session.describe().tracks.find((t) => t.trackId === row.trackId);
      if (!track) continue;
      const dataKey = await store.dataKey(row.sessionId);
      if (!dataKey) {
        log.error({ sessionId: row.sessionId }, "an upload's data key is gone: its queued windows cannot be read");
        continue;
      }
      const transcription = await this.attach(session, { ...track, state: 'live' }, row.windows, dataKey, row.speakers);
      await transcription.resume(session.finals.filter((f) => f.trackId === row.trackId).flatMap((f) => f.words));
      log.info({ sessionId: row.sessionId, windows: row.windows.length }, 'resumed the transcription of an upload');
    }
    return rows.length;
  }

  /** Upload windows not yet transcribed, over the uploads this gateway transcribes. */
  pendingWindows(): number {
    let pending = 0;
    for (const transcription of this.active.values()) pending += transcription.pendingWindows;
    return pending;
  }

  /** Queues an upload's dead-lettered windows again; undefined when the session has no upload here. */
  retry(sessionId: string): Promise<number> | undefined {
    return this.active.get(sessionId)?.retryDead();
  }

  /** Gives the session its upload track, transcribed by a new UploadTranscription until the session ends. */
  private async attach(session: Session, track: TrackInfo, windows: UploadWindow[], dataKey: string, speakers: UploadAnalysis['speakers']): Promise<UploadTranscription> {
    const { queue, store, log } = this.options;
    const language = session.language ?? undefined;
    let labels = new TrackSpeakers();
    if (speakers) {
      // The same participant's voice print, as on a live track: a recording of the doctor's own visits.
      const profile = await store.speakerProfile(track.participant);
      const roles = new RoleBook({ doctorPrint: profile?.print, language, isClinicalTerm: this.options.clinicalTerms(language, session.vocabulary) });
      labels = new TrackSpeakers(roles, () => speakers.prints);
    }
    const transcription = new UploadTranscription({
      speakers: labels, turns: speakers?.turns, track,
      session, trackId: track.trackId, windows, language: session.language ?? undefined, prompts: this.options.prompts(session.language ?? undefined, session.vocabulary), queue, store, log, dataKey,
      onFinished: () => {
        this.active.delete(session.id);
        // Every window is released: nothing at rest needs the key any more.
        void this.destroyKey(session.id, dataKey);
      },
    });
    this.active.set(session.id, transcription);
    await session.addUploadTrack(track, transcription);
    return transcription;
  }

  private async destroyKey(sessionId: string, dataKey: string): Promise<void> {
    this.options.sealer.forget(dataKey);
    await this.options.store.destroyDataKey(sessionId).catch((error) => this.options.log.error({ err: error, sessionId }, 'could not destroy a data key'));
  }

  private failedToRecord(sessionId: string, error: unknown): void {
    this.options.log.error({ err: error, sessionId }, 'could not record a window result');
  }
}
