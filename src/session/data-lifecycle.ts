/**
 * What a clinic's privacy officer needs of the stored visits: a session deleted on request (its
 * recordings in object storage, its transcript versions, segments, jobs, upload and window audio; the
 * audit trail stays, without content), and a retention policy swept on a schedule: recordings older than
 * `recordingsDays` are deleted (the transcript stays), sessions whose transcript is older than
 * `transcriptsDays` are deleted whole. 0 keeps a kind forever.
 *
 * Several gateways may sweep: each sweep takes a PostgreSQL advisory lock first, so one runs at a time
 * and the others skip that round.
 */
import { CloseCode } from '../../client-sdk/src/protocol.ts';
import type { Archiver } from '../archive/archiver.ts';
import { SessionStillActive } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { SessionStore } from '../store/session-store.ts';
import type { SessionRegistry } from './registry.ts';

export interface RetentionPolicy {
  recordingsDays: number;
  transcriptsDays: number;
  /** How often the sweep runs, ms. */
  sweepMs: number;
}

/** Rows handled per query of a sweep (a long backlog is worked through a batch at a time). */
const SWEEP_BATCH = 100;
const DAY_MS = 24 * 3600 * 1000;

export interface DataLifecycleOptions {
  store: SessionStore;
  registry: SessionRegistry;
  archiver: Archiver | undefined;
  log: Logger;
  retention: RetentionPolicy;
  /** Runs `work` only if no other gateway is sweeping (a database advisory lock); false when skipped. */
  exclusive(work: () => Promise<void>): Promise<boolean>;
}

export interface SweepResult {
  sessions: number;
  recordings: number;
}

export class DataLifecycle {
  private readonly options: DataLifecycleOptions;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<unknown> = Promise.resolve();

  constructor(options: DataLifecycleOptions) {
    this.options = options;
  }

  /**
   * Deletes a session and all it holds; false when there is no such session. A session still live or
   * being ended is refused (SessionStillActive): end it first, so nothing is written after the deletion.
   */
  async deleteSession(id: string): Promise<{ deleted: boolean; objects: number }> {
    const { store, registry, archiver, log } = this.options;
    const row = await store.getSession(id);
    if (!row) return { deleted: false, objects: 0 };
    if (row.state !== 'completed') throw new SessionStillActive(`session ${id} is ${row.state}; end it (POST /v1/sessions/${id}/end) before deleting it`);
    // Objects first: if storage is unreachable nothing is deleted and the request can be repeated.
    const objects = (await archiver?.deleteSession(id)) ?? 0;
    await registry.forget(id, CloseCode.sessionDeleted, 'the session was deleted');
    const deleted = await store.deleteSession(id);
    log.info({ sessionId: id, objects }, 'session deleted');
    return { deleted, objects };
  }

  /** One retention sweep now (what the schedule runs). */
  sweep(now = new Date()): Promise<SweepResult> {
    const run = this.sweeping.then(async () => {
      const result: SweepResult = { sessions: 0, recordings: 0 };
      await this.options.exclusive(async () => {
        const { recordingsDays, transcriptsDays } = this.options.retention;
        if (transcriptsDays > 0) result.sessions = await this.expireSessions(new Date(now.getTime() - transcriptsDays * DAY_MS));
        if (recordingsDays > 0) result.recordings = await this.expireRecordings(new Date(now.getTime() - recordingsDays * DAY_MS));
      });
      if (result.sessions + result.recordings > 0) this.options.log.info({ ...result }, 'retention sweep deleted what had expired');
      return result;
    });
    this.sweeping = run.catch(() => undefined);
    return run;
  }

  /** Sweeps on the schedule (nothing to do when every kind is kept forever). */
  start(): void {
    const { recordingsDays, transcriptsDays, sweepMs } = this.options.retention;
    if (recordingsDays <= 0 && transcriptsDays <= 0) return;
    const tick = () => void this.sweep().catch((error) => this.options.log.error({ err: error }, 'retention sweep failed; it runs again at the next interval'));
    tick();
    this.timer = setInterval(tick, sweepMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.sweeping;
  }

  private async expireSessions(before: Date): Promise<number> {
    let deleted = 0;
    for (let ids = await this.options.store.sessionsCompletedBefore(before, SWEEP_BATCH); ids.length > 0; ids = await this.options.store.sessionsCompletedBefore(before, SWEEP_BATCH)) {
      for (const id of ids) {
        await this.deleteSession(id);
        await this.options.store.audit({ actor: 'retention', actorRole: 'system', action: 'session.expire', sessionId: id, detail: { transcriptsDays: this.options.retention.transcriptsDays } });
        deleted++;
      }
    }
    return deleted;
  }

  private async expireRecordings(before: Date): Promise<number> {
    const { store, archiver } = this.options;
    if (!archiver) return 0;
    let deleted = 0;
    for (let keys = await store.recordingsUploadedBefore(before, SWEEP_BATCH); keys.length > 0; keys = await store.recordingsUploadedBefore(before, SWEEP_BATCH)) {
      for (const key of keys) {
        await archiver.deleteRecording(key);
        await store.deleteRecording(key);
        await store.audit({ actor: 'retention', actorRole: 'system', action: 'recording.expire', sessionId: key.sessionId, detail: { trackId: key.trackId, epoch: key.epoch, recordingsDays: this.options.retention.recordingsDays } });
        deleted++;
      }
    }
    return deleted;
  }
}
