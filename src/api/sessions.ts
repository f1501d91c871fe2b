/**
 * REST for sessions: create, status and progress, end (finalize), and the finalized transcript as JSON,
 * plain text, WebVTT or SRT. Route schemas give validation, serialization and the OpenAPI document.
 * Every read of a session or transcript is written to the audit table.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { SessionRegistry } from '../session/registry.ts';
import type { SessionStore } from '../store/session-store.ts';
import type { TranscriptDocument } from '../../client-sdk/src/protocol.ts';
import { toPlainText, toSrt, toWebVtt } from '../transcript/transcript-document.ts';
import { Authenticator } from './auth.ts';
import { z } from 'zod';
import { requireRole, sendError } from './http.ts';
import { errorBody, id, jsonSchema, language, sessionParams, sessionStatus, text, transcriptDocument } from './schemas.ts';

export const errorSchema = jsonSchema(errorBody);
export const statusSchema = jsonSchema(sessionStatus, 'output');
const transcriptSchema = jsonSchema(transcriptDocument, 'output');
const params = jsonSchema(sessionParams);
const createBody = jsonSchema(
  z.object({
    id: id.optional().describe('chosen by the caller; a UUID when omitted'),
    encounterRef: text(200).optional().describe("the clinic's reference for the visit"),
    language: language.optional().describe('ISO 639-1 language hint for STT'),
    vocabulary: z.array(text(64)).max(100).optional().describe("the visit's own terms (drugs, conditions, names): prompted to the recognizer and near-misses in finals corrected toward them"),
  }).strict(),
);
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

export async function registerSessionRoutes(app: FastifyInstance, { registry, store, authenticator, endWaitMs, createPerMinute }: SessionRoutesOptions): Promise<void> {
  const audit = (request: FastifyRequest, action: string, sessionId: string, detail?: Record<string, unknown>) =>
    store.audit({ actor: request.principal!.subject, actorRole: request.principal!.role, action, sessionId, detail, ip: request.ip });

  app.post('/v1/sessions', {
    schema: {
      summary: 'Create a session',
      security,
      body: createBody,
      response: { 201: statusSchema, 409: errorSchema, 429: errorSchema, ...errors },
    },
    config: { rateLimit: { max: createPerMinute, timeWindow: 60000 } },
    preValidation: requireRole(authenticator, ['service']),
  }, async (request, reply) => {
    const body = (request.body ?? {}) as { id?: string; encounterRef?: string; language?: string; vocabulary?: string[] };
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
