/**
 * REST for sessions: create, status and progress, end (finalize), and the finalized transcript as JSON,
 * plain text, WebVTT or SRT. Route schemas give validation, serialization and the OpenAPI document.
 * Every read of a session or transcript is written to the audit table.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { SessionRegistry } from '../session/registry.ts';
import type { SessionStore } from '../store/session-store.ts';
import { toPlainText, toSrt, toWebVtt, type TranscriptDocument } from '../transcript/transcript-document.ts';
import { Authenticator } from './auth.ts';
import { ID_PATTERN, requireRole, sendError, TEXT_PATTERN } from './http.ts';

export const errorSchema = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' }, field: { type: 'string' } }, required: ['code', 'message'] } },
} as const;

const wordSchema = { type: 'object', properties: { word: { type: 'string' }, startMs: { type: 'number' }, endMs: { type: 'number' }, confidence: { type: 'number' } } } as const;

const trackSchema = {
  type: 'object',
  properties: {
    trackId: { type: 'string' },
    role: { type: 'string', enum: ['doctor', 'patient'] },
    participant: { type: 'string' },
    format: { type: 'string', description: 'ingest format, or `upload`' },
    state: { type: 'string', enum: ['live', 'ended'] },
    receivedMs: { type: 'number' },
    failure: { type: 'string', description: "why the track's connection failed (ICE/DTLS, a vanished sender), if it did" },
  },
} as const;

export const statusSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    state: { type: 'string', enum: ['active', 'ending', 'completed'] },
    encounterRef: { type: ['string', 'null'] },
    language: { type: ['string', 'null'] },
    createdAt: { type: 'string', format: 'date-time' },
    endedAt: { type: ['string', 'null'] },
    completedAt: { type: ['string', 'null'] },
    stt: { type: 'string', enum: ['ok', 'degraded'] },
    sttBacklog: {
      type: 'object',
      description: 'final windows of this session waiting for STT (grows during an STT outage; their audio is bounded in memory and spilled to disk encrypted)',
      properties: { windows: { type: 'integer' }, audioMs: { type: 'integer' } },
    },
    lastSeq: { type: 'integer', description: 'number of final segments so far' },
    tracks: { type: 'array', items: trackSchema },
    progress: {
      type: 'object',
      properties: { windows: { type: 'object', properties: { pending: { type: 'integer' }, done: { type: 'integer' }, failed: { type: 'integer' } } } },
    },
    transcriptVersion: { type: ['integer', 'null'] },
    upload: {
      type: ['object', 'null'],
      description: 'for a session made from an uploaded recording: what validation found and how far transcription has got',
      properties: {
        state: { type: 'string', enum: ['transcribing', 'needs_attention', 'completed'] },
        format: { type: 'string', enum: ['webm', 'mp3', 'wav', 'm4a', 'ogg', 'flac'] },
        fileName: { type: ['string', 'null'] },
        sizeBytes: { type: 'integer' },
        durationMs: { type: 'integer' },
        sampleRate: { type: 'integer' },
        meanDbfs: { type: 'number' },
        warnings: { type: 'array', items: { type: 'object', properties: { code: { type: 'string', enum: ['low_sample_rate', 'quiet_audio'] }, message: { type: 'string' } } } },
        priority: { type: 'string', enum: ['high', 'normal'] },
        windows: { type: 'object', properties: { total: { type: 'integer' }, pending: { type: 'integer' }, done: { type: 'integer' }, failed: { type: 'integer' } } },
        deadLetters: {
          type: 'array',
          description: 'windows whose every attempt failed; POST …/upload/retry queues them again',
          items: { type: 'object', properties: { startMs: { type: 'integer' }, endMs: { type: 'integer' }, attempts: { type: 'integer' }, error: { type: ['string', 'null'] } } },
        },
      },
    },
    webhook: {
      type: 'object',
      properties: { state: { type: 'string', enum: ['none', 'pending', 'delivered', 'failed'] }, attempts: { type: 'integer' }, lastError: { type: ['string', 'null'] } },
    },
    archive: {
      type: 'object',
      description: 'the encrypted recordings; `behind` while uploads wait for object storage',
      properties: {
        enabled: { type: 'boolean' },
        behind: { type: 'boolean' },
        pendingUploads: { type: 'integer' },
        lastError: { type: ['string', 'null'] },
        recordings: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              trackId: { type: 'string' }, epoch: { type: 'integer' }, kind: { type: 'string', enum: ['full', 'slices'] }, state: { type: 'string', enum: ['spooled', 'uploaded'] },
              objectKey: { type: 'string' }, sizeBytes: { type: ['integer', 'null'] }, plaintextSha256: { type: ['string', 'null'] }, durationMs: { type: ['integer', 'null'] },
              recipientFingerprints: { type: 'array', items: { type: 'string' } },
            },
          },
        },
      },
    },
  },
} as const;

const transcriptSchema = {
  type: 'object',
  properties: {
    sessionId: { type: 'string' },
    version: { type: 'integer' },
    encounterRef: { type: ['string', 'null'] },
    language: { type: ['string', 'null'] },
    completedAt: { type: 'string' },
    durationMs: { type: 'number' },
    speakers: { type: 'array', items: { type: 'object', properties: { speaker: { type: 'string' }, role: { type: 'string' }, trackIds: { type: 'array', items: { type: 'string' } } } } },
    segments: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' }, seq: { type: 'integer' }, trackId: { type: 'string' }, role: { type: 'string' }, speaker: { type: 'string' },
          startMs: { type: 'number' }, endMs: { type: 'number' }, text: { type: 'string' }, words: { type: 'array', items: wordSchema },
        },
      },
    },
    text: { type: 'string' },
  },
} as const;

const params = { type: 'object', properties: { sessionId: { type: 'string', pattern: ID_PATTERN } }, required: ['sessionId'] } as const;
const security = [{ bearer: [] }];
const errors = { 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema };

export interface SessionRoutesOptions {
  registry: SessionRegistry;
  store: SessionStore;
  authenticator: Authenticator;
  /** How long `POST …/end` waits for the transcript before answering 202 with state `ending`. */
  endWaitMs: number;
  /** Sessions one token may create per minute. */
  createPerMinute: number;
}

export function registerSessionRoutes(app: FastifyInstance, { registry, store, authenticator, endWaitMs, createPerMinute }: SessionRoutesOptions): void {
  const audit = (request: FastifyRequest, action: string, sessionId: string, detail?: Record<string, unknown>) =>
    store.audit({ actor: request.principal!.subject, actorRole: request.principal!.role, action, sessionId, detail, ip: request.ip });

  app.post('/v1/sessions', {
    schema: {
      summary: 'Create a session',
      security,
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          id: { type: 'string', pattern: ID_PATTERN, description: 'chosen by the caller; a UUID when omitted' },
          encounterRef: { type: 'string', minLength: 1, maxLength: 200, pattern: TEXT_PATTERN, description: "the clinic's reference for the visit" },
          language: { type: 'string', pattern: '^[a-z]{2,3}$', description: 'ISO 639-1 language hint for STT' },
        },
      },
      response: { 201: statusSchema, 409: errorSchema, 429: errorSchema, ...errors },
    },
    config: { rateLimit: { max: createPerMinute, timeWindow: 60000 } },
    preValidation: requireRole(authenticator, ['service']),
  }, async (request, reply) => {
    const body = (request.body ?? {}) as { id?: string; encounterRef?: string; language?: string };
    Authenticator.authorizeScope(request.principal!, body.id);
    const session = await registry.create({ ...body, id: body.id ?? randomUUID() });
    return reply.code(201).send(await session.status());
  });

  app.get('/v1/sessions/:sessionId', {
    schema: { summary: 'Session status and progress', security, params, response: { 200: statusSchema, ...errors } },
    preValidation: requireRole(authenticator, ['viewer', 'producer', 'service']),
  }, async (request, reply) => {
    const { sessionId } = request.params as { sessionId: string };
    const status = await registry.status(sessionId);
    if (!status) return sendError(reply, 404, 'session_not_found', `no session ${sessionId}`);
    await audit(request, 'session.read', sessionId);
    return status;
  });

  app.post('/v1/sessions/:sessionId/end', {
    schema: {
      summary: 'End a session: wait for in-flight windows, merge all tracks into the transcript, mark it completed',
      description: `200 with state \`completed\` once the transcript is stored; 202 with state \`ending\` when that takes longer than END_WAIT_MS (STT slow or down): ending goes on, poll the status or wait for the webhook.`,
      security,
      params,
      response: { 200: statusSchema, 202: statusSchema, ...errors },
    },
    preValidation: requireRole(authenticator, ['producer', 'service']),
  }, async (request, reply) => {
    const { sessionId } = request.params as { sessionId: string };
    const session = await registry.get(sessionId);
    if (!session) return sendError(reply, 404, 'session_not_found', `no session ${sessionId}`);
    const ending = session.end();
    ending.catch((error) => request.log.error({ err: error, sessionId }, 'ending the session failed'));
    const done = await Promise.race([ending.then(() => true), new Promise<false>((resolve) => setTimeout(resolve, endWaitMs, false).unref())]);
    return reply.code(done ? 200 : 202).send(await session.status());
  });

  app.get('/v1/sessions/:sessionId/transcript', {
    schema: {
      summary: 'The finalized, merged transcript',
      description: 'format=json (default), text, vtt (WebVTT) or srt. Only a service token or a viewer of the session may read it; every read is audited.',
      security,
      params,
      querystring: { type: 'object', properties: { format: { type: 'string', enum: ['json', 'text', 'vtt', 'srt'], default: 'json' }, access_token: { type: 'string' } } },
      response: { 200: { content: { 'application/json': { schema: transcriptSchema }, 'text/plain': { schema: { type: 'string' } }, 'text/vtt': { schema: { type: 'string' } }, 'application/x-subrip': { schema: { type: 'string' } } } }, 409: errorSchema, ...errors },
    },
    preValidation: requireRole(authenticator, ['viewer', 'service']),
  }, async (request, reply) => {
    const { sessionId } = request.params as { sessionId: string };
    const { format } = request.query as { format: 'json' | 'text' | 'vtt' | 'srt' };
    // Read from the store: a completed session is not brought back into memory to serve its transcript.
    const row = await store.getSession(sessionId);
    if (!row) return sendError(reply, 404, 'session_not_found', `no session ${sessionId}`);
    const transcript = await store.latestTranscript(sessionId);
    if (!transcript) return sendError(reply, 409, 'transcript_not_ready', `session ${sessionId} is ${row.state}; end it to produce the transcript`);
    await audit(request, 'transcript.read', sessionId, { format, version: transcript.version });
    const doc = transcript.content as TranscriptDocument;
    switch (format) {
      case 'text':
        return reply.type('text/plain; charset=utf-8').send(toPlainText(doc));
      case 'vtt':
        return reply.type('text/vtt; charset=utf-8').send(toWebVtt(doc));
      case 'srt':
        return reply.type('application/x-subrip; charset=utf-8').send(toSrt(doc));
      default:
        return doc;
    }
  });
}
