/** The queries the gateway makes, over either database driver. */
import { and, asc, count, desc, eq, gt, ne, notInArray, sql } from 'drizzle-orm';
import type { FinalEvent, TrackInfo } from '../../client-sdk/src/protocol.ts';
import type { Database } from './database.ts';
import { auditEvents, recordings, segments, sessionKeys, sessions, sttJobs, tracks, transcripts, uploads } from './schema.ts';

export type SessionRow = typeof sessions.$inferSelect;
export type TrackRow = typeof tracks.$inferSelect;
export type RecordingRow = typeof recordings.$inferSelect;
export type UploadRow = typeof uploads.$inferSelect;
type RecordingKey = { sessionId: string; trackId: string; epoch: number };
export type SessionState = SessionRow['state'];
export type WebhookState = SessionRow['webhookState'];

/** A track as stored: the protocol's view of it plus its connection count. */
export type TrackRecord = TrackInfo & { epoch: number };

export interface AuditRecord {
  actor: string;
  actorRole: string;
  action: string;
  sessionId?: string;
  detail?: Record<string, unknown>;
  ip?: string;
}

export class SessionStore {
  private readonly db: Database;

  constructor(db: Database) {
    this.db = db;
  }

  async getSession(id: string): Promise<SessionRow | undefined> {
    const [row] = await this.db.select().from(sessions).where(eq(sessions.id, id));
    return row;
  }

  /** Inserts the session; false when it exists already. */
  async createSession(values: { id: string; encounterRef?: string; language?: string; vocabulary?: string[] }): Promise<boolean> {
    const inserted = await this.db.insert(sessions).values(values).onConflictDoNothing().returning({ id: sessions.id });
    return inserted.length === 1;
  }

  async sessionsInState(state: SessionState): Promise<SessionRow[]> {
    return this.db.select().from(sessions).where(eq(sessions.state, state));
  }

  async setSessionState(id: string, state: SessionState): Promise<void> {
    const now = new Date();
    await this.db
      .update(sessions)
      .set({ state, ...(state === 'ending' ? { endedAt: now } : {}), ...(state === 'completed' ? { completedAt: now } : {}) })
      .where(eq(sessions.id, id));
  }

  async setWebhook(id: string, state: WebhookState, attempts: number, lastError: string | null): Promise<void> {
    await this.db.update(sessions).set({ webhookState: state, webhookAttempts: attempts, webhookLastError: lastError }).where(eq(sessions.id, id));
  }

  async sessionsWithWebhook(state: WebhookState): Promise<SessionRow[]> {
    return this.db.select().from(sessions).where(eq(sessions.webhookState, state));
  }

  async listTracks(sessionId: string): Promise<TrackRow[]> {
    return this.db.select().from(tracks).where(eq(tracks.sessionId, sessionId)).orderBy(asc(tracks.createdAt));
  }

  async saveTrack(sessionId: string, { failure: _failure, ...track }: TrackRecord): Promise<void> {
    // A track waiting for its producer to resume is live in the store: a restart ends it like any live one.
    const values = { sessionId, ...track, state: track.state === 'ended' ? ('ended' as const) : ('live' as const), endedAt: track.state === 'ended' ? new Date() : null };
    await this.db
      .insert(tracks)
      .values(values)
      .onConflictDoUpdate({ target: [tracks.sessionId, tracks.trackId], set: { role: values.role, participant: values.participant, format: values.format, state: values.state, receivedMs: values.receivedMs, epoch: values.epoch, endedAt: values.endedAt } });
  }

  /** Tracks left live by a gateway that stopped without closing them. */
  async endInterruptedTracks(sessionId: string): Promise<void> {
    await this.db.update(tracks).set({ state: 'ended', endedAt: new Date() }).where(and(eq(tracks.sessionId, sessionId), eq(tracks.state, 'live'), ne(tracks.format, 'upload')));
  }

  async insertSegment(final: FinalEvent): Promise<void> {
    await this.db.insert(segments).values({
      id: final.segmentId,
      sessionId: final.sessionId,
      seq: final.seq,
      trackId: final.trackId,
      role: final.role,
      speaker: final.speaker,
      utteranceId: final.utteranceId,
      text: final.text,
      words: final.words,
      startMs: final.startMs,
      endMs: final.endMs,
    });
  }

  /** Highest final seq stored for the session (0 when none). */
  async lastSeq(sessionId: string): Promise<number> {
    const [row] = await this.db.select({ seq: sql<number>`coalesce(max(${segments.seq}), 0)` }).from(segments).where(eq(segments.sessionId, sessionId));
    return Number(row?.seq ?? 0);
  }

  async listSegments(sessionId: string): Promise<FinalEvent[]> {
    const rows = await this.db.select().from(segments).where(eq(segments.sessionId, sessionId)).orderBy(asc(segments.seq));
    return rows.map((r) => ({
      type: 'final',
      sessionId: r.sessionId,
      seq: r.seq,
      segmentId: r.id,
      trackId: r.trackId,
      role: r.role,
      speaker: r.speaker,
      utteranceId: r.utteranceId,
      text: r.text,
      words: r.words,
      startMs: r.startMs,
      endMs: r.endMs,
    }));
  }

  async jobQueued(sessionId: string, trackId: string, utteranceId: string, span: { startMs: number; endMs: number }): Promise<void> {
    await this.db.insert(sttJobs).values({ sessionId, trackId, utteranceId, ...span, status: 'pending' }).onConflictDoNothing();
  }

  async jobFailedAttempt(sessionId: string, utteranceId: string, error: string): Promise<void> {
    await this.db
      .update(sttJobs)
      .set({ attempts: sql`${sttJobs.attempts} + 1`, lastError: error })
      .where(and(eq(sttJobs.sessionId, sessionId), eq(sttJobs.utteranceId, utteranceId)));
  }

  async jobFinished(sessionId: string, utteranceId: string, status: 'done' | 'failed', sttMs: number | null, error?: string): Promise<void> {
    await this.db
      .update(sttJobs)
      .set({ status, sttMs: sttMs === null ? null : Math.round(sttMs), completedAt: new Date(), attempts: sql`${sttJobs.attempts} + 1`, ...(error ? { lastError: error } : {}) })
      .where(and(eq(sttJobs.sessionId, sessionId), eq(sttJobs.utteranceId, utteranceId)));
  }

  /** A window's last word from the job queue: its result is in, or every attempt failed (dead-lettered). */
  async jobSettled(sessionId: string, utteranceId: string, status: 'pending' | 'done' | 'failed', attempts: number, sttMs: number | null, error: string | null): Promise<void> {
    await this.db
      .update(sttJobs)
      .set({ status, attempts, sttMs: sttMs === null ? null : Math.round(sttMs), lastError: error, completedAt: status === 'pending' ? null : new Date() })
      .where(and(eq(sttJobs.sessionId, sessionId), eq(sttJobs.utteranceId, utteranceId)));
  }

  async failedJobs(sessionId: string) {
    return this.db.select().from(sttJobs).where(and(eq(sttJobs.sessionId, sessionId), eq(sttJobs.status, 'failed'))).orderBy(asc(sttJobs.startMs));
  }

  /** The session's wrapped data key, made by `create` on first use (one per session, whoever asks first). */
  async dataKey(sessionId: string, create?: () => Promise<string>): Promise<string | undefined> {
    const [row] = await this.db.select({ wrappedKey: sessionKeys.wrappedKey }).from(sessionKeys).where(eq(sessionKeys.sessionId, sessionId));
    if (row || !create) return row?.wrappedKey;
    await this.db.insert(sessionKeys).values({ sessionId, wrappedKey: await create() }).onConflictDoNothing();
    return this.dataKey(sessionId);
  }

  async destroyDataKey(sessionId: string): Promise<void> {
    await this.db.delete(sessionKeys).where(eq(sessionKeys.sessionId, sessionId));
  }

  async saveUpload(values: typeof uploads.$inferInsert): Promise<void> {
    await this.db.insert(uploads).values(values);
  }

  async getUpload(sessionId: string): Promise<UploadRow | undefined> {
    const [row] = await this.db.select().from(uploads).where(eq(uploads.sessionId, sessionId));
    return row;
  }

  async setUploadState(sessionId: string, state: UploadRow['state']): Promise<void> {
    await this.db.update(uploads).set({ state }).where(eq(uploads.sessionId, sessionId));
  }

  async uploadsInState(state: UploadRow['state']): Promise<UploadRow[]> {
    return this.db.select().from(uploads).where(eq(uploads.state, state));
  }

  /** Windows whose audio died with a previous gateway process before STT answered. */
  async failPendingJobs(sessionId: string, reason: string): Promise<void> {
    // An upload's windows wait in the job queue, not in the process: they are not lost with it.
    const uploadTracks = this.db.select({ trackId: tracks.trackId }).from(tracks).where(and(eq(tracks.sessionId, sessionId), eq(tracks.format, 'upload')));
    await this.db
      .update(sttJobs)
      .set({ status: 'failed', lastError: reason, completedAt: new Date() })
      .where(and(eq(sttJobs.sessionId, sessionId), eq(sttJobs.status, 'pending'), notInArray(sttJobs.trackId, uploadTracks)));
  }

  async jobCounts(sessionId: string): Promise<Record<'pending' | 'done' | 'failed', number>> {
    const rows = await this.db.select({ status: sttJobs.status, n: count() }).from(sttJobs).where(eq(sttJobs.sessionId, sessionId)).groupBy(sttJobs.status);
    const counts = { pending: 0, done: 0, failed: 0 };
    for (const row of rows) counts[row.status] = Number(row.n);
    return counts;
  }

  /** Stores the next version of a session's transcript, built for that version number. */
  async saveTranscript(sessionId: string, build: (version: number) => unknown): Promise<number> {
    return this.db.transaction(async (tx) => {
      const [latest] = await tx.select({ version: transcripts.version }).from(transcripts).where(eq(transcripts.sessionId, sessionId)).orderBy(desc(transcripts.version)).limit(1);
      const version = (latest?.version ?? 0) + 1;
      await tx.insert(transcripts).values({ sessionId, version, content: build(version) });
      return version;
    });
  }

  async latestTranscript(sessionId: string): Promise<{ version: number; content: unknown } | undefined> {
    const [row] = await this.db.select().from(transcripts).where(eq(transcripts.sessionId, sessionId)).orderBy(desc(transcripts.version)).limit(1);
    return row && { version: row.version, content: row.content };
  }

  async audit(event: AuditRecord): Promise<void> {
    await this.db.insert(auditEvents).values(event);
  }

  async auditTrail(sessionId: string, afterId = 0) {
    return this.db.select().from(auditEvents).where(and(eq(auditEvents.sessionId, sessionId), gt(auditEvents.id, afterId))).orderBy(asc(auditEvents.id));
  }

  async saveRecording(values: typeof recordings.$inferInsert): Promise<void> {
    await this.db.insert(recordings).values(values).onConflictDoNothing();
  }

  async updateRecording(key: RecordingKey, values: Partial<typeof recordings.$inferInsert>): Promise<void> {
    await this.db.update(recordings).set(values).where(this.recordingIs(key));
  }

  async recordingAttemptFailed(key: RecordingKey, error: string): Promise<void> {
    await this.db.update(recordings).set({ attempts: sql`${recordings.attempts} + 1`, lastError: error }).where(this.recordingIs(key));
  }

  async recordingsOf(sessionId: string): Promise<RecordingRow[]> {
    return this.db.select().from(recordings).where(eq(recordings.sessionId, sessionId)).orderBy(asc(recordings.createdAt));
  }

  private recordingIs(key: RecordingKey) {
    return and(eq(recordings.sessionId, key.sessionId), eq(recordings.trackId, key.trackId), eq(recordings.epoch, key.epoch));
  }
}
