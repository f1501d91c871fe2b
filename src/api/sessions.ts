/**
 * REST for sessions: create, status and progress, end (finalize), and the finalized transcript as JSON,
 * plain text, WebVTT or SRT. Route schemas give validation, serialization and the OpenAPI document.
 * Every read of a session or transcript is written to the audit table.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { SessionRegistry } from '../session/registry.ts';
import type { DataLifecycle } from '../session/data-lifecycle.ts';
import { GatewayError } from '../errors.ts';
import type { SessionStore } from '../store/session-store.ts';
import type { TranscriptDocument } from '../../client-sdk/src/protocol.ts';
import { toPlainText, toSrt, toWebVtt } from '../transcript/transcript-document.ts';
import { correctTranscript, CorrectionRejected } from '../transcript/corrections.ts';
import { Authenticator } from './auth.ts';
import { z } from 'zod';
import { requireRole, sendError } from './http.ts';
import { encounterType, errorBody, id, jsonSchema, language, sessionParams, sessionStatus, text, transcriptCorrection, transcriptDocument } from './schemas.ts';

export const errorSchema = jsonSchema(errorBody);
export const statusSchema = jsonSchema(sessionStatus, 'output');
const transcriptSchema = jsonSchema(transcriptDocument, 'output');
const params = jsonSchema(sessionParams);
const createBody = jsonSchema(
  z.object({
    id: id.optional().describe('chosen by the caller; a UUID when omitted'),
    encounterRef: text(200).optional().describe("the clinic's reference for the visit"),
    encounterType: encounterType.optional(),
    language: language.optional().describe('ISO 639-1 language hint for STT'),
    vocabulary: z.array(text(64)).max(100).optional().describe("the visit's own terms (drugs, conditions, names): prompted to the recognizer and near-misses in finals corrected toward them"),
  }).strict(),
);
const security = [{ bearer: [] }];
const errors = { 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema };

export interface SessionRoutesOptions {
  registry: SessionRegistry;
  store: SessionStore;
  lifecycle: DataLifecycle;
  authenticator: Authenticator;
  /** How long `POST …/end` waits for the transcript before answering 202 with state `ending`. */
  endWaitMs: number;
}

export async function registerSessionRoutes(app: FastifyInstance, { registry, store, lifecycle, authenticator, endWaitMs }: SessionRoutesOptions): Promise<void> {
  const audit = (request: FastifyRequest, action: string, sessionId: string, detail?: Record<string, unknown>) =>
    store.audit({ actor: request.principal!.subject, actorRole: request.principal!.role, action, sessionId, detail, ip: request.ip });

  app.post('/v1/sessions', {
    schema: {
      summary: 'Create a session',
      security,
      body: createBody,
      response: { 201: statusSchema, 409: errorSchema, 429: errorSchema, ...errors },
    },
    preValidation: requireRole(authenticator, ['service']),
  }, async (request, reply) => {
    const body = (request.body ?? {}) as { id?: string; encounterRef?: string; encounterType?: string; language?: string; vocabulary?: string[] };
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

  app.delete('/v1/sessions/:sessionId', {
    schema: {
      summary: "Delete a visit: its recordings, transcript versions, segments and upload; the audit trail stays, without content",
      description: '204 once deleted; 404 session_not_found; 409 session_active while the session is live or ending (end it first); 503 storage_unavailable while object storage cannot be reached (nothing is deleted then; repeat the request).',
      security,
      params,
      response: { 204: { type: 'null' }, 409: errorSchema, 503: errorSchema, ...errors },
    },
    preValidation: requireRole(authenticator, ['service']),
  }, async (request, reply) => {
    const { sessionId } = request.params as { sessionId: string };
    Authenticator.authorizeScope(request.principal!, sessionId);
    let result;
    try {
      result = await lifecycle.deleteSession(sessionId);
    } catch (error) {
      if (error instanceof GatewayError) throw error;
      request.log.error({ err: error, sessionId }, 'deleting a session failed');
      return sendError(reply, 503, 'storage_unavailable', `the session could not be deleted (nothing was): ${(error as Error).message}`);
    }
    if (!result.deleted) return sendError(reply, 404, 'session_not_found', `no session ${sessionId}`);
    await audit(request, 'session.delete', sessionId, { objects: result.objects });
    return reply.code(204).send();
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
      description: 'format=json (default), text, vtt (WebVTT) or srt; version=N for an earlier version (the latest by default: a correction is a new version, every version stays readable). Only a service token or a viewer of the session may read it; every read is audited.',
      security,
      params,
      querystring: { type: 'object', properties: { format: { type: 'string', enum: ['json', 'text', 'vtt', 'srt'], default: 'json' }, version: { type: 'integer', minimum: 1 }, access_token: { type: 'string' } } },
      response: { 200: { content: { 'application/json': { schema: transcriptSchema }, 'text/plain': { schema: { type: 'string' } }, 'text/vtt': { schema: { type: 'string' } }, 'application/x-subrip': { schema: { type: 'string' } } } }, 409: errorSchema, ...errors },
    },
    preValidation: requireRole(authenticator, ['viewer', 'service']),
  }, async (request, reply) => {
    const { sessionId } = request.params as { sessionId: string };
    const { format, version } = request.query as { format: 'json' | 'text' | 'vtt' | 'srt'; version?: number };
    // Read from the store: a completed session is not brought back into memory to serve its transcript.
    const row = await store.getSession(sessionId);
    if (!row) return sendError(reply, 404, 'session_not_found', `no session ${sessionId}`);
    const transcript = version === undefined ? await store.latestTranscript(sessionId) : await store.transcriptVersion(sessionId, version);
    if (!transcript && version !== undefined) return sendError(reply, 404, 'version_not_found', `session ${sessionId} has no transcript version ${version}`);
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

  app.put('/v1/sessions/:sessionId/transcript', {
    schema: {
      summary: 'Correct the transcript: new text for some segments, stored as the next version with who and when',
      description: "The earlier versions stay readable (`GET …/transcript?version=N`). 409 version_conflict when `basedOn` is not the latest version (someone corrected it meanwhile: read the latest and correct that); 409 transcript_not_ready before the session ends; 400 invalid_correction naming an unknown or repeated segment.",
      security,
      params,
      body: jsonSchema(transcriptCorrection),
      response: { 200: transcriptSchema, 409: errorSchema, ...errors },
    },
    preValidation: requireRole(authenticator, ['service']),
  }, async (request, reply) => {
    const { sessionId } = request.params as { sessionId: string };
    Authenticator.authorizeScope(request.principal!, sessionId);
    const { basedOn, segments } = request.body as z.output<typeof transcriptCorrection>;
    if (!(await store.getSession(sessionId))) return sendError(reply, 404, 'session_not_found', `no session ${sessionId}`);
    const base = await store.transcriptVersion(sessionId, basedOn);
    if (!base) {
      const latest = await store.latestTranscript(sessionId);
      return latest
        ? sendError(reply, 409, 'version_conflict', `session ${sessionId} has no transcript version ${basedOn}; the latest is ${latest.version}`)
        : sendError(reply, 409, 'transcript_not_ready', `session ${sessionId} has no transcript yet; end it first`);
    }
    const by = request.principal!.subject;
    let corrected: TranscriptDocument | undefined;
    try {
      const saved = await store.saveTranscriptOver(sessionId, basedOn, (version) => (corrected = correctTranscript(base.content as TranscriptDocument, segments, by, new Date(), version)));
      if (saved === undefined) {
        const latest = await store.latestTranscript(sessionId);
        return sendError(reply, 409, 'version_conflict', `version ${basedOn} is not the latest (${latest?.version}): read the latest and correct that`);
      }
    } catch (error) {
      if (error instanceof CorrectionRejected) return sendError(reply, 400, 'invalid_correction', error.message);
      throw error;
    }
    await audit(request, 'transcript.correct', sessionId, { basedOn, version: corrected!.version, segments: segments.map((c) => c.id) });
    return corrected;
  });

  app.get('/v1/sessions/:sessionId/transcript/versions', {
    schema: {
      summary: 'Every stored version of the transcript: the merged one, then each correction (who, when)',
      security,
      params,
      response: { 200: { type: 'array', items: { type: 'object', properties: { version: { type: 'integer' }, createdAt: { type: 'string' }, correction: { type: 'object', nullable: true, properties: { by: { type: 'string' }, at: { type: 'string' }, basedOn: { type: 'integer' } } } } } }, ...errors },
    },
    preValidation: requireRole(authenticator, ['viewer', 'service']),
  }, async (request, reply) => {
    const { sessionId } = request.params as { sessionId: string };
    if (!(await store.getSession(sessionId))) return sendError(reply, 404, 'session_not_found', `no session ${sessionId}`);
    const versions = await store.transcriptVersions(sessionId);
    await audit(request, 'transcript.versions', sessionId);
    return versions.map((v) => ({ version: v.version, createdAt: v.createdAt.toISOString(), correction: (v.content as TranscriptDocument).correction ?? null }));
  });
}
