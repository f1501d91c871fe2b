/**
 * The database schema (drizzle-orm, PostgreSQL dialect; the same tables on PostgreSQL and on PGlite).
 * Migrations are generated from this file by drizzle-kit into ../../drizzle and committed.
 */
import { bigint, bigserial, index, integer, jsonb, pgTable, primaryKey, real, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Word } from '../../client-sdk/src/protocol.ts';
import type { SpeakerTurn } from '../diarizer/diarizer.ts';
import type { VoicePrint } from '../diarizer/voice-print.ts';

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
  /** What kind of visit (validated at creation): quality is reported per kind. */
  encounterType: text('encounter_type'),
  /** The recognizer's model, and the audio it was sent and answered for the live tracks (ms) and in how many calls: written at completion. */
  sttModel: text('stt_model'),
  sttAudioMs: bigint('stt_audio_ms', { mode: 'number' }).notNull().default(0),
  sttCalls: integer('stt_calls').notNull().default(0),
  /** Words the recognizer answered that were dropped as invented (silence, stock phrases, loops). */
  hallucinationsDropped: integer('hallucinations_dropped').notNull().default(0),
  /** The last final's seq: every gateway of a fleet numbers the session's finals from this one counter. */
  lastSeq: integer('last_seq').notNull().default(0),
}, (t) => [index('sessions_state_idx').on(t.state), index('sessions_created_idx').on(t.createdAt)]);

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
  /** Set for a track that hears several people: the most speakers its diarizer tells apart. */
  maxSpeakers: integer('max_speakers'),
  /** The gateway instance holding the track live (`instances.id`); a live track whose holder's lease ran out was interrupted. */
  owner: text('owner'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  endedAt: timestamp('ended_at', { withTimezone: true }),
}, (t) => [primaryKey({ columns: [t.sessionId, t.trackId] })]);

/**
 * The gateway processes of a fleet, each renewing its lease (the database's clock, never the instance's):
 * an instance whose lease ran out is dead, and what it held live may be taken over.
 */
export const instances = pgTable('instances', {
  id: text('id').primaryKey(),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
  leaseUntil: timestamp('lease_until', { withTimezone: true }).notNull(),
  /** Draining (SIGTERM): it takes no new work, and its producers are told to reconnect elsewhere. */
  draining: integer('draining').notNull().default(0),
});

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
  roleSource: text('role_source', { enum: ['track', 'voice', 'content', 'order'] }).notNull().default('track'),
  speaker: text('speaker').notNull(),
  utteranceId: text('utterance_id').notNull(),
  text: text('text').notNull(),
  words: jsonb('words').$type<Word[]>().notNull(),
  startMs: bigint('start_ms', { mode: 'number' }).notNull(),
  endMs: bigint('end_ms', { mode: 'number' }).notNull(),
  /** Mean of its words' confidences, where the recognizer gives them. */
  confidence: real('confidence'),
  /** End of speech → final published, minus the STT call (live finals only). */
  latencyMs: integer('latency_ms'),
  /** Its words, counted once (analytics read it for every segment of a period). */
  wordCount: integer('word_count').notNull().default(0),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [uniqueIndex('segments_session_seq_idx').on(t.sessionId, t.seq)]);

/** An upload refused before anything was kept: only its code, size and time (no session exists for it). */
export const uploadRejections = pgTable('upload_rejections', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  code: text('code').notNull(),
  sizeBytes: bigint('size_bytes', { mode: 'number' }),
}, (t) => [index('upload_rejections_at_idx').on(t.at)]);

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
  /** A diarized upload's speakers over the whole file: their turns and voice prints (index i: speaker i + 1). */
  speakers: jsonb('speakers').$type<{ turns: SpeakerTurn[]; prints: VoicePrint[] }>(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index('uploads_state_idx').on(t.state)]);

/**
 * What the gateway keeps of a participant's voice: a voice print (averages of a few numbers per frame,
 * from which no audio can be made), enrolled from a clip or learned from their own doctor tracks.
 */
export const speakerProfiles = pgTable('speaker_profiles', {
  participant: text('participant').primaryKey(),
  source: text('source', { enum: ['enrolled', 'learned'] }).notNull(),
  print: jsonb('print').$type<VoicePrint>().notNull(),
  /**
   * The enrolled clip's first seconds (16 kHz PCM, sealed under `reference_key`, a data key wrapped by
   * AT_REST_KEY, base64): what a diarizing recognizer is told of the doctor's voice. Enrolled prints only.
   */
  reference: text('reference'),
  referenceKey: text('reference_key'),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

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
