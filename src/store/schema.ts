/**
 * The database schema (drizzle-orm, PostgreSQL dialect; the same tables on PostgreSQL and on PGlite).
 * Migrations are generated from this file by drizzle-kit into ../../drizzle and committed.
 */
import { bigint, bigserial, index, integer, jsonb, pgTable, primaryKey, real, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Word } from '../../client-sdk/src/protocol.ts';

/** A visit: one session of live audio, ending in one authoritative transcript. */
export const sessions = pgTable('sessions', {
  id: text('id').primaryKey(),
  /** The clinic's reference for the encounter (visit, appointment), if it gave one. */
  encounterRef: text('encounter_ref'),
  state: text('state', { enum: ['active', 'ending', 'completed'] }).notNull().default('active'),
  language: text('language'),
  /** The visit's own terms (drug names, the patient's conditions): prompted and corrected toward. */
  vocabulary: jsonb('vocabulary').$type<string[]>().notNull().default([]),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  endedAt: timestamp('ended_at', { withTimezone: true }),
  completedAt: timestamp('completed_at', { withTimezone: true }),
  webhookState: text('webhook_state', { enum: ['none', 'pending', 'delivered', 'failed'] }).notNull().default('none'),
  webhookAttempts: integer('webhook_attempts').notNull().default(0),
  webhookLastError: text('webhook_last_error'),
}, (t) => [index('sessions_state_idx').on(t.state)]);

/** One participant's device streaming into a session. */
export const tracks = pgTable('tracks', {
  sessionId: text('session_id').notNull().references(() => sessions.id, { onDelete: 'cascade' }),
  trackId: text('track_id').notNull(),
  role: text('role', { enum: ['doctor', 'patient'] }).notNull(),
  participant: text('participant').notNull(),
  format: text('format').notNull(),
  state: text('state', { enum: ['live', 'ended'] }).notNull(),
  /** Track time reached (ms); a reconnecting producer continues from here. */
  receivedMs: bigint('received_ms', { mode: 'number' }).notNull().default(0),
  /** Connections so far; utterance ids include it so they stay unique across reconnections. */
  epoch: integer('epoch').notNull().default(0),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  endedAt: timestamp('ended_at', { withTimezone: true }),
}, (t) => [primaryKey({ columns: [t.sessionId, t.trackId] })]);

/** Every final window sent to STT: its fate, for status, progress and diagnosis. */
export const sttJobs = pgTable('stt_jobs', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  sessionId: text('session_id').notNull().references(() => sessions.id, { onDelete: 'cascade' }),
  trackId: text('track_id').notNull(),
  utteranceId: text('utterance_id').notNull(),
  startMs: bigint('start_ms', { mode: 'number' }).notNull(),
  endMs: bigint('end_ms', { mode: 'number' }).notNull(),
  status: text('status', { enum: ['pending', 'done', 'failed'] }).notNull(),
  attempts: integer('attempts').notNull().default(0),
  lastError: text('last_error'),
  sttMs: integer('stt_ms'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  completedAt: timestamp('completed_at', { withTimezone: true }),
}, (t) => [index('stt_jobs_session_status_idx').on(t.sessionId, t.status), uniqueIndex('stt_jobs_utterance_idx').on(t.sessionId, t.utteranceId)]);

/** A final caption: written before its event goes out, never changed afterwards. */
export const segments = pgTable('segments', {
  id: text('id').primaryKey(),
  sessionId: text('session_id').notNull().references(() => sessions.id, { onDelete: 'cascade' }),
  seq: integer('seq').notNull(),
  trackId: text('track_id').notNull(),
  role: text('role', { enum: ['doctor', 'patient'] }).notNull(),
  speaker: text('speaker').notNull(),
  utteranceId: text('utterance_id').notNull(),
  text: text('text').notNull(),
  words: jsonb('words').$type<Word[]>().notNull(),
  startMs: bigint('start_ms', { mode: 'number' }).notNull(),
  endMs: bigint('end_ms', { mode: 'number' }).notNull(),
  confidence: real('confidence'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [uniqueIndex('segments_session_seq_idx').on(t.sessionId, t.seq)]);

/** The merged transcript of a completed session; a new version when it is finalized again. */
export const transcripts = pgTable('transcripts', {
  sessionId: text('session_id').notNull().references(() => sessions.id, { onDelete: 'cascade' }),
  version: integer('version').notNull(),
  content: jsonb('content').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [primaryKey({ columns: [t.sessionId, t.version] })]);

/** Who read what, when: every transcript and session read by a token. */
export const auditEvents = pgTable('audit_events', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  actor: text('actor').notNull(),
  actorRole: text('actor_role').notNull(),
  action: text('action').notNull(),
  sessionId: text('session_id'),
  detail: jsonb('detail').$type<Record<string, unknown>>(),
  ip: text('ip'),
}, (t) => [index('audit_session_at_idx').on(t.sessionId, t.at)]);

/** The encrypted recording of one track connection (epoch), in object storage. */
export const recordings = pgTable('recordings', {
  sessionId: text('session_id').notNull().references(() => sessions.id, { onDelete: 'cascade' }),
  trackId: text('track_id').notNull(),
  epoch: integer('epoch').notNull(),
  /** `full`: one age file of the whole Ogg Opus stream. `slices`: recovered after a crash, see the manifest. */
  kind: text('kind', { enum: ['full', 'slices'] }).notNull(),
  state: text('state', { enum: ['spooled', 'uploaded'] }).notNull(),
  objectKey: text('object_key').notNull(),
  sizeBytes: integer('size_bytes'),
  plaintextSha256: text('plaintext_sha256'),
  durationMs: bigint('duration_ms', { mode: 'number' }),
  recipientFingerprints: jsonb('recipient_fingerprints').$type<string[]>().notNull(),
  attempts: integer('attempts').notNull().default(0),
  lastError: text('last_error'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  uploadedAt: timestamp('uploaded_at', { withTimezone: true }),
}, (t) => [primaryKey({ columns: [t.sessionId, t.trackId, t.epoch] }), index('recordings_state_idx').on(t.state)]);

/** A recording uploaded as a file: what validation found, and the windows it was cut into. */
export const uploads = pgTable('uploads', {
  sessionId: text('session_id').primaryKey().references(() => sessions.id, { onDelete: 'cascade' }),
  trackId: text('track_id').notNull(),
  fileName: text('file_name'),
  format: text('format').notNull(),
  sizeBytes: bigint('size_bytes', { mode: 'number' }).notNull(),
  durationMs: bigint('duration_ms', { mode: 'number' }).notNull(),
  sampleRate: integer('sample_rate').notNull(),
  meanDbfs: real('mean_dbfs').notNull(),
  warnings: jsonb('warnings').$type<{ code: string; message: string }[]>().notNull(),
  priority: text('priority', { enum: ['high', 'normal'] }).notNull(),
  /** Every window's span and seam (what the merger needs), in order. */
  windows: jsonb('windows').$type<UploadWindow[]>().notNull(),
  state: text('state', { enum: ['transcribing', 'needs_attention', 'completed'] }).notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index('uploads_state_idx').on(t.state)]);

/**
 * A session's data key, wrapped by the key-encryption key (AT_REST_KEY): what its audio at rest (upload
 * originals and windows, spilled STT backlog) is sealed under. Deleted once nothing at rest needs it;
 * whatever it sealed is unreadable from then on.
 */
export const sessionKeys = pgTable('session_keys', {
  sessionId: text('session_id').primaryKey(),
  wrappedKey: text('wrapped_key').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

export interface UploadWindow {
  index: number;
  utteranceId: number;
  startMs: number;
  endMs: number;
  keepFromMs?: number;
  keepUntilMs?: number;
  speech?: [number, number][];
}
