/** The queries the gateway makes, over either database driver. */
import { and, asc, count, desc, eq, gt, inArray, lt, ne, notInArray, sql } from 'drizzle-orm';
import type { FinalEvent, SpeakerProfile, TrackInfo } from '../../client-sdk/src/protocol.ts';
import type { VoicePrint } from '../diarizer/voice-print.ts';
import type { Database } from './database.ts';
import { auditEvents, instances, recordings, segments, sessionKeys, sessions, speakerProfiles, sttJobs, tracks, transcripts, uploadRejections, uploads } from './schema.ts';

export type SessionRow = typeof sessions.$inferSelect;
export type TrackRow = typeof tracks.$inferSelect;
export type RecordingRow = typeof recordings.$inferSelect;
export type UploadRow = typeof uploads.$inferSelect;
type RecordingKey = { sessionId: string; trackId: string; epoch: number };
export type SessionState = SessionRow['state'];
export type WebhookState = SessionRow['webhookState'];

/** A track as stored: the protocol's view of it plus its connection count. */
export type TrackRecord = TrackInfo & { epoch: number };

/** A final before the store numbers it (its `seq` and the `segmentId` made from it). */
export type UnnumberedFinal = Omit<FinalEvent, 'seq' | 'segmentId'>;

export interface AuditRecord {
  actor: string;
  actorRole: string;
  action: string;
  sessionId?: string;
  detail?: Record<string, unknown>;
  ip?: string;
}

const p = (name: string) => sql.placeholder(name);

/**
 * The statements every live track runs (its progress every 5 s; per final: its job queued and finished,
 * and the final appended), built once with placeholders: drizzle otherwise builds each query's text on
 * every call, about two thirds of their CPU in the gateway (a track's progress 650–780 → 265–373 µs,
 * measured with 3000 calls against PostgreSQL). Nullable values go through a cast (the columns' own mapping
 * refuses a null), and a time goes as ISO text (postgres.js, as drizzle configures it, sends no Date).
 */
function hotStatements(db: Database, instanceId: string | undefined) {
  const insertTrack = () =>
    db
      .insert(tracks)
      .values({
        sessionId: p('sessionId'),
        trackId: p('trackId'),
        role: p('role'),
        participant: p('participant'),
        format: p('format'),
        state: p('state'),
        receivedMs: p('receivedMs'),
        epoch: p('epoch'),
        maxSpeakers: sql`${p('maxSpeakers')}::integer`,
        endedAt: sql`${p('endedAt')}::timestamptz`,
        owner: sql`${p('owner')}::text`,
      });
  const onConflict = { target: [tracks.sessionId, tracks.trackId], set: { role: sql`excluded.role`, participant: sql`excluded.participant`, format: sql`excluded.format`, state: sql`excluded.state`, receivedMs: sql`excluded.received_ms`, epoch: sql`excluded.epoch`, endedAt: sql`excluded.ended_at`, owner: sql`excluded.owner` } };
  const counter = db.$with('counter').as(db.update(sessions).set({ lastSeq: sql`${sessions.lastSeq} + 1` }).where(eq(sessions.id, p('sessionId'))).returning({ seq: sessions.lastSeq }));
  return {
    /** Whoever held the track before. */
    takeTrack: insertTrack().onConflictDoUpdate(onConflict).prepare('take_track'),
    /** Only while no other instance holds the track: one that lost it to another cannot undo the other's state. */
    saveTrack: instanceId ? insertTrack().onConflictDoUpdate({ ...onConflict, setWhere: sql`(${tracks.owner} is null or ${tracks.owner} = ${instanceId})` }).prepare('save_track') : undefined,
    jobQueued: db.insert(sttJobs).values({ sessionId: p('sessionId'), trackId: p('trackId'), utteranceId: p('utteranceId'), startMs: p('startMs'), endMs: p('endMs'), status: 'pending' }).onConflictDoNothing().prepare('job_queued'),
    jobFinished: db
      .update(sttJobs)
      .set({ status: sql`${p('status')}::text`, sttMs: sql`${p('sttMs')}::integer`, completedAt: sql`now()`, attempts: sql`${sttJobs.attempts} + 1`, lastError: sql`coalesce(${p('error')}::text, ${sttJobs.lastError})` })
      .where(and(eq(sttJobs.sessionId, p('sessionId')), eq(sttJobs.utteranceId, p('utteranceId'))))
      .prepare('job_finished'),
    // Every column, each cast, in the order of the table's definition (drizzle checks it and names the columns).
    appendSegment: db
      .with(counter)
      .insert(segments)
      .select((qb) =>
        qb
          .select({
            id: sql`${p('sessionId')}::text || '.' || ${counter.seq}`.as('id'),
            sessionId: sql`${p('sessionId')}::text`.as('session_id'),
            seq: counter.seq,
            trackId: sql`${p('trackId')}::text`.as('track_id'),
            role: sql`${p('role')}::text`.as('role'),
            roleSource: sql`${p('roleSource')}::text`.as('role_source'),
            speaker: sql`${p('speaker')}::text`.as('speaker'),
            utteranceId: sql`${p('utteranceId')}::text`.as('utterance_id'),
            text: sql`${p('text')}::text`.as('text'),
            words: sql`${p('words')}::jsonb`.as('words'),
            startMs: sql`${p('startMs')}::bigint`.as('start_ms'),
            endMs: sql`${p('endMs')}::bigint`.as('end_ms'),
            confidence: sql`${p('confidence')}::real`.as('confidence'),
            latencyMs: sql`${p('latencyMs')}::integer`.as('latency_ms'),
            wordCount: sql`${p('wordCount')}::integer`.as('word_count'),
            createdAt: sql`now()`.as('created_at'),
          })
          .from(counter),
      )
      .returning({ seq: segments.seq, segmentId: segments.id })
      .prepare('append_segment'),
  };
}

export class SessionStore {
  private readonly db: Database;
  /** This gateway instance's id: the owner written on the tracks it holds live. */
  readonly instanceId: string | undefined;
  private readonly hot: ReturnType<typeof hotStatements>;

  constructor(db: Database, instanceId?: string) {
    this.db = db;
    this.instanceId = instanceId;
    this.hot = hotStatements(db, instanceId);
  }

  /** Renews (or starts) this instance's lease until `leaseMs` from now, by the database's clock. */
  async renewLease(leaseMs: number, draining = false): Promise<void> {
    if (!this.instanceId) return;
    const until = sql`now() + ${`${Math.round(leaseMs)} milliseconds`}::interval`;
    await this.db
      .insert(instances)
      .values({ id: this.instanceId, leaseUntil: until, draining: draining ? 1 : 0 })
      .onConflictDoUpdate({ target: instances.id, set: { leaseUntil: until, draining: draining ? 1 : 0 } });
  }

  /** This instance stops: its lease ends now (what it held is another's to take over at once). */
  async endLease(): Promise<void> {
    if (this.instanceId) await this.db.delete(instances).where(eq(instances.id, this.instanceId));
  }

  /** The instances whose lease has not run out (by the database's clock). */
  async liveInstances(): Promise<string[]> {
    const rows = await this.db.select({ id: instances.id }).from(instances).where(sql`${instances.leaseUntil} > now()`);
    return rows.map((r) => r.id);
  }

  /** Whether `instanceId` is draining (SIGTERM) with its lease still running: it is finishing what it holds. */
  async isDraining(instanceId: string): Promise<boolean> {
    const [row] = await this.db.select({ id: instances.id }).from(instances).where(and(eq(instances.id, instanceId), eq(instances.draining, 1), sql`${instances.leaseUntil} > now()`));
    return row !== undefined;
  }

  /** Checks that the database answers (readiness). */
  async ping(): Promise<void> {
    await this.db.execute(sql`select 1`);
  }

  async getSession(id: string): Promise<SessionRow | undefined> {
    const [row] = await this.db.select().from(sessions).where(eq(sessions.id, id));
    return row;
  }

  /** Inserts the session; false when it exists already. */
  async createSession(values: { id: string; encounterRef?: string; encounterType?: string; language?: string; vocabulary?: string[] }): Promise<boolean> {
    const inserted = await this.db.insert(sessions).values(values).onConflictDoNothing().returning({ id: sessions.id });
    return inserted.length === 1;
  }

  /** What the recognizer was sent for a session's live tracks, written when it completes (analytics). */
  async recordSttUsage(id: string, usage: { model: string; audioMs: number; calls: number; dropped: number }): Promise<void> {
    // Added to: each gateway of a fleet that held tracks of the session counts its own.
    await this.db
      .update(sessions)
      .set({
        sttModel: usage.model,
        sttAudioMs: sql`${sessions.sttAudioMs} + ${Math.round(usage.audioMs)}`,
        sttCalls: sql`${sessions.sttCalls} + ${usage.calls}`,
        hallucinationsDropped: sql`${sessions.hallucinationsDropped} + ${usage.dropped}`,
      })
      .where(eq(sessions.id, id));
  }

  /** An upload refused before anything was kept: its code, for the operators' figures. */
  async recordUploadRejection(code: string, sizeBytes: number | null): Promise<void> {
    await this.db.insert(uploadRejections).values({ code, sizeBytes });
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

  async speakerProfile(participant: string): Promise<(SpeakerProfile & { print: VoicePrint }) | undefined> {
    const [row] = await this.db.select().from(speakerProfiles).where(eq(speakerProfiles.participant, participant));
    return row && { participant: row.participant, source: row.source, speechMs: row.print.frames * 20, updatedAt: row.updatedAt.toISOString(), print: row.print };
  }

  /** The sealed reference clip of an enrolled voice, if one is kept. */
  async speakerReference(participant: string): Promise<{ reference: string; referenceKey: string } | undefined> {
    const [row] = await this.db.select({ reference: speakerProfiles.reference, referenceKey: speakerProfiles.referenceKey }).from(speakerProfiles).where(eq(speakerProfiles.participant, participant));
    return row?.reference && row.referenceKey ? { reference: row.reference, referenceKey: row.referenceKey } : undefined;
  }

  /**
   * Stores a participant's voice print (with the sealed reference clip of an enrollment); a learned one
   * never replaces an enrolled one.
   */
  async saveSpeakerProfile(participant: string, source: SpeakerProfile['source'], print: VoicePrint, sealed?: { reference: string; referenceKey: string }): Promise<void> {
    const set = { source, print, updatedAt: new Date(), reference: sealed?.reference ?? null, referenceKey: sealed?.referenceKey ?? null };
    const upsert = this.db.insert(speakerProfiles).values({ participant, ...set });
    if (source === 'enrolled') await upsert.onConflictDoUpdate({ target: speakerProfiles.participant, set });
    else await upsert.onConflictDoUpdate({ target: speakerProfiles.participant, set, setWhere: eq(speakerProfiles.source, 'learned') });
  }

  async deleteSpeakerProfile(participant: string): Promise<boolean> {
    const rows = await this.db.delete(speakerProfiles).where(eq(speakerProfiles.participant, participant)).returning({ participant: speakerProfiles.participant });
    return rows.length > 0;
  }

  /**
   * Deletes a session and everything stored of it (tracks, jobs, segments, transcript versions, upload,
   * recording rows, its data key); the audit trail stays (it holds who did what, never content).
   */
  async deleteSession(id: string): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      await tx.delete(sessionKeys).where(eq(sessionKeys.sessionId, id));
      const rows = await tx.delete(sessions).where(eq(sessions.id, id)).returning({ id: sessions.id });
      return rows.length > 0;
    });
  }

  /** Completed sessions whose transcript is older than `before` (retention), oldest first. */
  async sessionsCompletedBefore(before: Date, limit: number): Promise<string[]> {
    const rows = await this.db.select({ id: sessions.id }).from(sessions).where(and(eq(sessions.state, 'completed'), lt(sessions.completedAt, before))).orderBy(asc(sessions.completedAt)).limit(limit);
    return rows.map((r) => r.id);
  }

  /** Uploaded recordings older than `before` (retention), oldest first. */
  async recordingsUploadedBefore(before: Date, limit: number): Promise<RecordingKey[]> {
    return this.db
      .select({ sessionId: recordings.sessionId, trackId: recordings.trackId, epoch: recordings.epoch })
      .from(recordings)
      .where(and(eq(recordings.state, 'uploaded'), lt(recordings.uploadedAt, before)))
      .orderBy(asc(recordings.uploadedAt))
      .limit(limit);
  }

  async deleteRecording(key: RecordingKey): Promise<void> {
    await this.db.delete(recordings).where(this.recordingIs(key));
  }

  async listTracks(sessionId: string): Promise<TrackRow[]> {
    return this.db.select().from(tracks).where(eq(tracks.sessionId, sessionId)).orderBy(asc(tracks.createdAt));
  }

  /**
   * Writes a track's state. `takeOver`: a producer connected here, so this instance holds the track now
   * (whoever held it before); otherwise the write applies only while no other instance holds it, so an
   * instance that lost the track to another cannot undo the other's state.
   */
  async saveTrack(sessionId: string, { failure: _failure, ...track }: TrackRecord, takeOver = false): Promise<void> {
    // A track waiting for its producer to resume is live in the store: a restart ends it like any live one.
    const live = track.state !== 'ended';
    const statement = takeOver || !this.hot.saveTrack ? this.hot.takeTrack : this.hot.saveTrack;
    await statement.execute({
      sessionId,
      trackId: track.trackId,
      role: track.role,
      participant: track.participant,
      format: track.format,
      state: live ? 'live' : 'ended',
      receivedMs: track.receivedMs,
      epoch: track.epoch,
      maxSpeakers: track.maxSpeakers ?? null,
      endedAt: live ? null : new Date().toISOString(),
      owner: live ? (this.instanceId ?? null) : null,
    });
  }

  async getTrack(sessionId: string, trackId: string): Promise<TrackRow | undefined> {
    const [row] = await this.db.select().from(tracks).where(and(eq(tracks.sessionId, sessionId), eq(tracks.trackId, trackId)));
    return row;
  }

  /**
   * Live tracks held by no living instance (their gateway stopped without closing them, or its lease ran
   * out) are ended; returns those ended (with the epoch that was cut off). Tracks another living instance
   * holds stay live.
   */
  async endInterruptedTracks(sessionId: string): Promise<{ trackId: string; epoch: number }[]> {
    const held = await this.liveInstances();
    const ended = await this.db
      .update(tracks)
      .set({ state: 'ended', endedAt: new Date(), owner: null })
      .where(and(eq(tracks.sessionId, sessionId), eq(tracks.state, 'live'), ne(tracks.format, 'upload'), ...(held.length > 0 ? [sql`(${tracks.owner} is null or ${notInArray(tracks.owner, held)})`] : [])))
      .returning({ trackId: tracks.trackId, epoch: tracks.epoch });
    return ended;
  }

  /**
   * Stores a final under its session's next seq and returns it numbered, in one statement (one round trip
   * per final, not four: this runs for every final of every track). The counter's row stays locked until
   * the statement commits, so seqs commit in order across every gateway: a stored seq means every lower one
   * is stored too. `latencyMs`: end of speech → published, minus STT (live finals).
   */
  async appendSegment(unnumbered: UnnumberedFinal, latencyMs?: number): Promise<FinalEvent> {
    const confidences = unnumbered.words.flatMap((w) => (w.confidence === undefined ? [] : [w.confidence]));
    const [row] = await this.hot.appendSegment.execute({
      sessionId: unnumbered.sessionId,
      trackId: unnumbered.trackId,
      role: unnumbered.role,
      roleSource: unnumbered.roleSource,
      speaker: unnumbered.speaker,
      utteranceId: unnumbered.utteranceId,
      text: unnumbered.text,
      words: JSON.stringify(unnumbered.words),
      startMs: unnumbered.startMs,
      endMs: unnumbered.endMs,
      confidence: confidences.length > 0 ? confidences.reduce((a, b) => a + b, 0) / confidences.length : null,
      latencyMs: latencyMs === undefined ? null : Math.round(latencyMs),
      wordCount: unnumbered.words.length,
    });
    if (!row) throw new Error(`session ${unnumbered.sessionId} does not exist`);
    return { ...unnumbered, ...row };
  }

  /** Highest final seq stored for the session (0 when none). */
  async lastSeq(sessionId: string): Promise<number> {
    const [row] = await this.db.select({ seq: sql<number>`coalesce(max(${segments.seq}), 0)` }).from(segments).where(eq(segments.sessionId, sessionId));
    return Number(row?.seq ?? 0);
  }

  /** The session's stored finals in seq order, those after `afterSeq` only when given. */
  async listSegments(sessionId: string, afterSeq = 0): Promise<FinalEvent[]> {
    const rows = await this.db.select().from(segments).where(and(eq(segments.sessionId, sessionId), gt(segments.seq, afterSeq))).orderBy(asc(segments.seq));
    return rows.map((r) => ({
      type: 'final',
      sessionId: r.sessionId,
      seq: r.seq,
      segmentId: r.id,
      trackId: r.trackId,
      role: r.role,
      roleSource: r.roleSource,
      speaker: r.speaker,
      utteranceId: r.utteranceId,
      text: r.text,
      words: r.words,
      startMs: r.startMs,
      endMs: r.endMs,
    }));
  }

  async jobQueued(sessionId: string, trackId: string, utteranceId: string, span: { startMs: number; endMs: number }): Promise<void> {
    await this.hot.jobQueued.execute({ sessionId, trackId, utteranceId, startMs: span.startMs, endMs: span.endMs });
  }

  async jobFailedAttempt(sessionId: string, utteranceId: string, error: string): Promise<void> {
    await this.db
      .update(sttJobs)
      .set({ attempts: sql`${sttJobs.attempts} + 1`, lastError: error })
      .where(and(eq(sttJobs.sessionId, sessionId), eq(sttJobs.utteranceId, utteranceId)));
  }

  async jobFinished(sessionId: string, utteranceId: string, status: 'done' | 'failed', sttMs: number | null, error?: string): Promise<void> {
    await this.hot.jobFinished.execute({ sessionId, utteranceId, status, sttMs: sttMs === null ? null : Math.round(sttMs), error: error || null });
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

  /** The pending window jobs of these live tracks fail (their audio died with the gateway that held them). */
  async failPendingJobs(sessionId: string, trackIds: readonly string[], reason: string): Promise<void> {
    if (trackIds.length === 0) return;
    await this.db
      .update(sttJobs)
      .set({ status: 'failed', lastError: reason, completedAt: new Date() })
      .where(and(eq(sttJobs.sessionId, sessionId), eq(sttJobs.status, 'pending'), inArray(sttJobs.trackId, [...trackIds])));
  }

  async jobCounts(sessionId: string): Promise<Record<'pending' | 'done' | 'failed', number>> {
    const rows = await this.db.select({ status: sttJobs.status, n: count() }).from(sttJobs).where(eq(sttJobs.sessionId, sessionId)).groupBy(sttJobs.status);
    const counts = { pending: 0, done: 0, failed: 0 };
    for (const row of rows) counts[row.status] = Number(row.n);
    return counts;
  }

  /**
   * Marks the session completed and stores its merged transcript as the next version, in one
   * transaction and once: undefined when it was completed already (another gateway merged it).
   */
  async completeSession(sessionId: string, build: (version: number) => unknown): Promise<number | undefined> {
    return this.db.transaction(async (tx) => {
      const [row] = await tx.update(sessions).set({ state: 'completed', completedAt: new Date() }).where(and(eq(sessions.id, sessionId), ne(sessions.state, 'completed'))).returning({ id: sessions.id });
      if (!row) return undefined;
      const [latest] = await tx.select({ version: transcripts.version }).from(transcripts).where(eq(transcripts.sessionId, sessionId)).orderBy(desc(transcripts.version)).limit(1);
      const version = (latest?.version ?? 0) + 1;
      await tx.insert(transcripts).values({ sessionId, version, content: build(version) });
      return version;
    });
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

  /** One stored version of a session's transcript (every version stays readable). */
  async transcriptVersion(sessionId: string, version: number): Promise<{ version: number; content: unknown } | undefined> {
    const [row] = await this.db.select().from(transcripts).where(and(eq(transcripts.sessionId, sessionId), eq(transcripts.version, version)));
    return row && { version: row.version, content: row.content };
  }

  /** The versions of a session's transcript, oldest first, with when each was stored. */
  async transcriptVersions(sessionId: string): Promise<{ version: number; createdAt: Date; content: unknown }[]> {
    return this.db.select({ version: transcripts.version, createdAt: transcripts.createdAt, content: transcripts.content }).from(transcripts).where(eq(transcripts.sessionId, sessionId)).orderBy(asc(transcripts.version));
  }

  /**
   * Stores `build(version)` as the next version only while `basedOn` is still the latest (a correction of
   * an outdated version is refused: undefined).
   */
  async saveTranscriptOver(sessionId: string, basedOn: number, build: (version: number) => unknown): Promise<number | undefined> {
    return this.db.transaction(async (tx) => {
      const [latest] = await tx.select({ version: transcripts.version }).from(transcripts).where(eq(transcripts.sessionId, sessionId)).orderBy(desc(transcripts.version)).limit(1).for('update');
      if (latest?.version !== basedOn) return undefined;
      await tx.insert(transcripts).values({ sessionId, version: basedOn + 1, content: build(basedOn + 1) });
      return basedOn + 1;
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
