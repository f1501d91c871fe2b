/**
 * The transcription of one uploaded recording: its windows go to the job queue, their results come back
 * in any order, and are published in window order (the seam merger needs the previous window) through
 * the same TrackCaptions and Session as a live track. Progress goes to the store and to viewers after
 * each window; once every window is in, the session ends and its transcript is stored.
 * A window that exhausted its attempts is dead-lettered: later windows wait (their merge depends on it)
 * until it is retried, or until the session is ended, which publishes everything past it.
 */
import { correctTerms } from '../stt/clinical-prompt.ts';
import type { TrackPrompts } from '../stt/clinical-vocabulary.ts';
import type { TrackInfo, UploadProgressEvent, Word } from '../../client-sdk/src/protocol.ts';
import { adoptLabels, type SpeakerTurn } from '../diarizer/diarizer.ts';
import type { SpokenPart, TrackSpeakers } from './track-speakers.ts';
import type { Logger } from '../log.ts';
import type { UploadWindow } from '../store/schema.ts';
import type { SessionStore } from '../store/session-store.ts';
import type { WindowJob, WindowJobResult, WindowQueue } from '../stt/window-queue.ts';
import { TrackCaptions } from '../transcript/track-captions.ts';
import { utteranceId } from './track-pipeline.ts';
import type { UploadTrack } from './track-table.ts';

/** What an upload's transcription records: each window's job and the upload's state. */
export type UploadJobStore = Pick<SessionStore, 'jobQueued' | 'jobSettled' | 'setUploadState'>;

/** What an upload's transcription needs of its session: where its finals and progress go. */
export interface UploadOutput {
  readonly id: string;
  /** Stores and sends a final of the upload's track (one speaker's part). */
  publishUploadFinal(trackId: string, utteranceId: string, part: SpokenPart): Promise<void>;
  uploadProgress(event: UploadProgressEvent): void;
  /** A window the recognizer answered (its audio, and the words dropped as invented): the session's STT usage. */
  uploadWindowAnswered(audioMs: number, dropped: number): void;
  /** A window was dead-lettered. */
  windowFailed(trackId: string, message: string): void;
  /** Every window is in: the session ends and its transcript is stored. */
  end(): Promise<void>;
}

export interface UploadTranscriptionOptions {
  session: UploadOutput;
  trackId: string;
  windows: UploadWindow[];
  language?: string;
  /** The upload's prompt (defaults of its language and the session's vocabulary) and the terms its finals are corrected toward. */
  prompts: TrackPrompts;
  queue: WindowQueue;
  store: UploadJobStore;
  log: Logger;
  /** The session's wrapped data key: its window audio is sealed under it. */
  dataKey: string;
  /** The session has ended: nothing more comes for this upload. */
  onFinished(): void;
  /** Who said what: the upload's participant, or the speakers its diarization found over the whole file. */
  speakers: TrackSpeakers;
  /** The speaker turns of a diarized upload (track time). */
  turns?: readonly SpeakerTurn[];
  /** The track's role and participant (a part's role and speaker when not diarized). */
  track: Pick<TrackInfo, 'role' | 'participant'>;
}

export class UploadTranscription implements UploadTrack {
  private readonly options: UploadTranscriptionOptions;
  private readonly results = new Map<number, WindowJobResult>();
  private readonly dead = new Map<number, string>();
  private readonly captions = new TrackCaptions();
  private next = 0;
  private publishing: Promise<void> = Promise.resolve();
  private ending = false;
  /** Waiting for every window to be in or dead-lettered (a retry puts a window back in play). */
  private settledWaiters: (() => void)[] = [];
  private finished = false;

  constructor(options: UploadTranscriptionOptions) {
    this.options = options;
  }

  /** Windows neither published nor dead-lettered. */
  get pendingWindows(): number {
    return Math.max(0, this.options.windows.length - this.next - this.dead.size);
  }

  get sessionId(): string {
    return this.options.session.id;
  }

  job(window: UploadWindow): WindowJob {
    const { session, trackId, language, prompts, dataKey } = this.options;
    const prompt = prompts.builder.build();
    return { id: `${session.id}.${trackId}.${window.index}`, sessionId: session.id, trackId, index: window.index, startMs: window.startMs, endMs: window.endMs, speech: window.speech, language, prompt, dataKey };
  }

  utteranceId(window: UploadWindow): string {
    // An upload is one connection of its track: epoch 1.
    return utteranceId(this.options.trackId, 1, window.utteranceId);
  }

  /**
   * After a gateway restart: picks up where the previous process stopped. A window's audio is released
   * only after its final was published, so the first window the queue still holds is the next to publish.
   */
  async resume(publishedWords: Word[]): Promise<void> {
    const outcomes = [];
    for (const window of this.options.windows) outcomes.push(await this.options.queue.resume(this.job(window)));
    const next = outcomes.findIndex((o) => o.state !== 'released');
    this.next = next === -1 ? this.options.windows.length : next;
    this.captions.resumeAfter(publishedWords);
    for (const [index, outcome] of outcomes.entries()) {
      if (index < this.next) continue;
      const job = this.job(this.options.windows[index]);
      if (outcome.state === 'completed') await this.completed(job, outcome.result, outcome.attempts);
      else if (outcome.state === 'dead') await this.deadLettered(job, outcome.error, outcome.attempts);
      else if (outcome.state === 'released') await this.deadLettered(job, 'the window audio expired before it was transcribed', 0);
    }
    await this.advance();
  }

  /** Records every window as pending; the caller queues the jobs. */
  async registerWindows(): Promise<void> {
    for (const window of this.options.windows) await this.options.store.jobQueued(this.sessionId, this.options.trackId, this.utteranceId(window), { startMs: window.startMs, endMs: window.endMs });
    this.report();
  }

  async completed(job: WindowJob, result: WindowJobResult, attempts: number): Promise<void> {
    const window = this.options.windows[job.index];
    if (!window || this.results.has(job.index) || job.index < this.next) return;
    this.results.set(job.index, result);
    this.dead.delete(job.index);
    if (result.sttMs > 0) this.options.session.uploadWindowAnswered(window.endMs - window.startMs, result.dropped ?? 0);
    await this.options.store.jobSettled(this.sessionId, this.utteranceId(window), 'done', attempts, result.sttMs, null);
    await this.advance();
  }

  async deadLettered(job: WindowJob, error: string, attempts: number): Promise<void> {
    const window = this.options.windows[job.index];
    if (!window || this.results.has(job.index)) return;
    this.dead.set(job.index, error);
    this.options.log.error({ sessionId: this.sessionId, window: job.index, attempts, reason: error }, 'upload window dead-lettered after its last attempt');
    await this.options.store.jobSettled(this.sessionId, this.utteranceId(window), 'failed', attempts, null, error);
    this.options.session.windowFailed(this.options.trackId, `window ${job.index} (${window.startMs}–${window.endMs} ms) failed ${attempts} times: ${error}`);
    await this.options.store.setUploadState(this.sessionId, 'needs_attention');
    this.report();
    this.checkSettled();
  }

  /** Queues the dead-lettered windows again; returns how many. */
  async retryDead(): Promise<number> {
    const windows = [...this.dead.keys()].map((i) => this.options.windows[i]);
    if (windows.length === 0) return 0;
    for (const window of windows) {
      this.dead.delete(window.index);
      await this.options.store.jobSettled(this.sessionId, this.utteranceId(window), 'pending', 0, null, null);
    }
    await this.options.store.setUploadState(this.sessionId, 'transcribing');
    await this.options.queue.retry(windows.map((w) => this.job(w)));
    this.report();
    return windows.length;
  }

  /** Session end: waits for every window still queued, then publishes past dead-lettered ones. */
  async finish(): Promise<void> {
    if (!this.settled()) await new Promise<void>((resolve) => this.settledWaiters.push(resolve));
    this.ending = true;
    await this.advance();
    this.options.onFinished();
  }

  /** Publishes the results that are next in window order. */
  private advance(): Promise<void> {
    this.publishing = this.publishing.then(async () => {
      const { windows, session, trackId, queue } = this.options;
      while (this.next < windows.length) {
        const window = windows[this.next];
        const result = this.results.get(this.next);
        if (!result && !(this.ending && this.dead.has(this.next))) break;
        if (result) {
          const words = correctTerms(this.captions.final(window, result.words, result.timed ?? true), this.options.prompts.lexicon);
          // A diarizing recognizer's segments, when it gave them, labelled as the whole file's speakers.
          const turns = this.options.turns && result.speakers ? adoptLabels(result.speakers, this.options.turns) : this.options.turns;
          for (const part of this.options.speakers.parts(this.options.track, words, turns)) await session.publishUploadFinal(trackId, this.utteranceId(window), part);
          this.results.delete(this.next);
          await queue.release(this.job(window)).catch((error) => this.options.log.warn({ err: error }, 'could not release a finished window job'));
        }
        this.next++;
      }
      this.report();
      this.checkSettled();
      if (this.next === windows.length && !this.finished) {
        this.finished = true;
        await this.options.store.setUploadState(this.sessionId, 'completed').catch((error) => this.options.log.warn({ err: error }, 'could not store the upload state'));
        // Ended by the last window; when the session is being ended already, it is waiting for this.
        if (!this.ending) void session.end().catch((error) => this.options.log.error({ err: error, sessionId: this.sessionId }, 'could not complete the upload session'));
      }
    });
    return this.publishing;
  }

  private settled(): boolean {
    return this.next + this.results.size + this.dead.size >= this.options.windows.length;
  }

  private checkSettled(): void {
    if (!this.settled()) return;
    for (const resolve of this.settledWaiters.splice(0)) resolve();
  }

  private report(): void {
    const total = this.options.windows.length;
    const state: UploadProgressEvent['state'] = this.next === total ? 'completed' : this.dead.size > 0 ? 'needs_attention' : 'transcribing';
    this.options.session.uploadProgress({
      type: 'upload',
      sessionId: this.sessionId,
      trackId: this.options.trackId,
      state,
      windowsTotal: total,
      windowsDone: this.next + this.results.size,
      windowsFailed: this.dead.size,
    });
  }
}
