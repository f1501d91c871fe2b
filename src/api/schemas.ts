/**
 * The REST shapes, once, in zod: each response schema is checked against its type in the wire protocol
 * (`client-sdk/src/protocol.ts`), and the route schemas Fastify validates, serializes and documents
 * (OpenAPI) with are generated from them (`z.toJSONSchema`), not written again by hand.
 */
import { z } from 'zod';
import { ENCOUNTER_TYPES, INGEST_FORMATS, ROLE_SOURCES, SPEAKER_ROLES, type IngestFormat, UPLOAD_FORMATS, type ApiError, type SessionStatus, type SpeakerRole, type TranscriptDocument, type UploadFormat } from '../../client-sdk/src/protocol.ts';

/**
 * Session and track ids: letters, digits, `.`, `_`, `-`, at most 128, never dots alone (`.` and `..`
 * mean something to every filesystem). The router's parameter limit is set above 128 to match.
 */
export const ID_MAX_LENGTH = 128;
export const id = z.string().regex(/^(?!\.+$)[A-Za-z0-9._-]{1,128}$/, 'ids are 1–128 of A–Z a–z 0–9 . _ -, not dots alone');
/** Free text from callers (names, references, file names): no control characters (NUL breaks PostgreSQL). */
export const text = (max: number) => z.string().min(1).max(max).regex(/^[^\u0000-\u001f\u007f]*$/, 'no control characters');
export const speakerRole = z.enum(SPEAKER_ROLES as [SpeakerRole, ...SpeakerRole[]]);
export const encounterType = z.enum(ENCOUNTER_TYPES).describe(`what kind of visit: ${ENCOUNTER_TYPES.join(', ')} (quality and analytics are reported per kind)`);
export const language = z.string().regex(/^[a-z]{2,3}$/, 'an ISO 639-1 code such as en, fa, ar');

/** A zod schema as the JSON Schema (draft-07) Fastify's validator and serializer take. */
export function jsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'input'): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { target: 'draft-7', io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

export const errorBody = z.object({ error: z.object({ code: z.string(), message: z.string(), field: z.string().optional() }) }) satisfies z.ZodType<ApiError>;

const word = z.object({ word: z.string(), startMs: z.number(), endMs: z.number(), confidence: z.number().optional(), original: z.string().optional().describe("the recognizer's word, where a near-miss of a clinical term was corrected") });

const track = z.object({
  trackId: z.string(),
  role: speakerRole,
  participant: z.string(),
  format: z.enum(['upload', ...INGEST_FORMATS] as [IngestFormat | 'upload', ...(IngestFormat | 'upload')[]]).describe('ingest format, or `upload`'),
  state: z.enum(['live', 'reconnecting', 'ended']),
  receivedMs: z.number(),
  failure: z.string().optional().describe("why the track's connection failed (ICE/DTLS, a vanished sender, a rejected stream), if it did"),
  maxSpeakers: z.int().optional().describe('set for a diarized track (one microphone hearing several people): the most speakers told apart'),
});

export const sessionStatus = z.object({
  id: z.string(),
  state: z.enum(['active', 'ending', 'completed']),
  encounterRef: z.string().nullable(),
  encounterType: z.enum(ENCOUNTER_TYPES).nullable(),
  language: z.string().nullable(),
  vocabulary: z.array(z.string()),
  createdAt: z.string(),
  endedAt: z.string().nullable(),
  completedAt: z.string().nullable(),
  stt: z.enum(['ok', 'degraded', 'misconfigured']).describe('misconfigured: the recognizer refuses the gateway\'s requests (key, model, deployment, format); windows are kept until it takes them'),
  sttError: z.string().nullable().describe("the recognizer's refusal while stt is misconfigured"),
  sttBacklog: z.object({ windows: z.int(), audioMs: z.number() }).describe('final windows waiting for STT (grows during an outage; their audio is bounded in memory and spilled to disk encrypted)'),
  sttAudio: z
    .object({ receivedMs: z.number(), sentMs: z.object({ partial: z.number(), final: z.number(), speculative: z.number() }), factor: z.number() })
    .nullable()
    .describe('live audio received, and sent to the recognizer by kind (partials, finals, speculative finals discarded), and sent ÷ received: the STT cost factor; null once the session has left memory'),
  lastSeq: z.int().describe('number of final segments so far'),
  tracks: z.array(track),
  progress: z.object({ windows: z.object({ pending: z.int(), done: z.int(), failed: z.int() }) }),
  transcriptVersion: z.int().nullable(),
  upload: z
    .object({
      state: z.enum(['transcribing', 'needs_attention', 'completed']),
      format: z.enum(UPLOAD_FORMATS as [UploadFormat, ...UploadFormat[]]),
      fileName: z.string().nullable(),
      sizeBytes: z.int(),
      durationMs: z.int(),
      sampleRate: z.int(),
      meanDbfs: z.number(),
      warnings: z.array(z.object({ code: z.enum(['low_sample_rate', 'quiet_audio']), message: z.string() })),
      priority: z.enum(['high', 'normal']),
      windows: z.object({ total: z.int(), pending: z.int(), done: z.int(), failed: z.int() }),
      deadLetters: z.array(z.object({ startMs: z.int(), endMs: z.int(), attempts: z.int(), error: z.string().nullable() })).describe('windows whose every attempt failed; POST …/upload/retry queues them again'),
    })
    .nullable()
    .describe('for a session made from an uploaded recording: what validation found and how far transcription has got'),
  webhook: z.object({ state: z.enum(['none', 'pending', 'delivered', 'failed']), attempts: z.int(), lastError: z.string().nullable() }),
  archive: z
    .object({
      enabled: z.boolean(),
      behind: z.boolean(),
      pendingUploads: z.int(),
      lastError: z.string().nullable(),
      recordings: z.array(
        z.object({
          trackId: z.string(), epoch: z.int(), kind: z.enum(['full', 'slices']), state: z.enum(['spooled', 'uploaded']), objectKey: z.string(), sizeBytes: z.int().nullable(),
          plaintextSha256: z.string().nullable(), durationMs: z.int().nullable(), recipientFingerprints: z.array(z.string()), note: z.string().nullable(),
        }),
      ),
    })
    .describe('the encrypted recordings; `behind` while uploads wait for object storage'),
}) satisfies z.ZodType<SessionStatus>;

export const transcriptDocument = z.object({
  sessionId: z.string(),
  version: z.int(),
  encounterRef: z.string().nullable(),
  language: z.string().nullable(),
  completedAt: z.string(),
  durationMs: z.number(),
  speakers: z.array(z.object({ speaker: z.string(), role: speakerRole, trackIds: z.array(z.string()) })),
  segments: z.array(z.object({ id: z.string(), seq: z.int(), trackId: z.string(), role: speakerRole, roleSource: z.enum(ROLE_SOURCES).describe('why the segment has its role: track, or on a diarized track voice, content or order'), speaker: z.string(), startMs: z.number(), endMs: z.number(), text: z.string(), words: z.array(word), originalText: z.string().optional().describe("the recognizer's text of a segment a person corrected") })),
  text: z.string(),
  correction: z.object({ by: z.string(), at: z.string(), basedOn: z.int() }).optional().describe('set on a version a person corrected: who, when, and the version corrected'),
}) satisfies z.ZodType<TranscriptDocument>;

/** `PUT /v1/sessions/{id}/transcript`: new text for some segments, made into the next version. */
export const transcriptCorrection = z.object({
  basedOn: z.int().min(1).describe('the version corrected; refused with 409 when a newer one exists (someone else corrected it meanwhile)'),
  segments: z.array(z.object({ id: z.string().min(1), text: text(10000) })).min(1).max(10000),
}).strict();

export const sessionParams = z.object({ sessionId: id });
export const trackParams = z.object({ sessionId: id, trackId: id });

/** The most speakers a diarized track or upload may ask for. */
export const MAX_SPEAKERS = 6;
const DEFAULT_DIARIZED_SPEAKERS = 2;

/** Whether a track or upload hears several people (one phone on the desk), as query parameters. */
export const speakersQuery = {
  diarize: z.boolean().optional().describe('the microphone hears several people (doctor and patient on one device): each final is labelled with its speaker and role'),
  speakers: z.int().min(1).max(MAX_SPEAKERS).optional().describe(`the most speakers to tell apart (2 when diarize is set without it); 1: everything is the track's role`),
};

/** The most speakers a track's diarizer tells apart; undefined when it is not diarized. */
export function maxSpeakersOf(query: { diarize?: boolean; speakers?: number }): number | undefined {
  const speakers = query.speakers ?? (query.diarize ? DEFAULT_DIARIZED_SPEAKERS : 1);
  return speakers >= 2 ? speakers : undefined;
}

/** What a producer says of the track it opens (WHIP, RTP), as query parameters. */
export const trackQuery = z.object({
  role: speakerRole,
  participant: text(200).optional(),
  language: language.optional(),
  ...speakersQuery,
  access_token: z.string().optional(),
});

/** The `resumeToken` a producer's earlier connection was given, to continue its track. */
export const resumeToken = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'resume must be the resume token of an earlier connection of this track');

export const whipQuery = trackQuery.extend({ resume: resumeToken.optional() });
