/**
 * REST for uploaded recordings: the body is the file itself, streamed (any Content-Type; the gateway
 * judges the bytes), so a browser's `fetch`/XHR upload reports progress as it sends. 202 once the file
 * is validated and its windows are queued; progress then shows in the session status and as `upload`
 * events on the captions WebSocket. Dead-lettered windows can be queued again.
 */
import type { FastifyInstance } from 'fastify';
import type { Readable } from 'node:stream';
import type { UploadService } from '../session/uploads.ts';
import type { SessionStore } from '../store/session-store.ts';
import { Authenticator } from './auth.ts';
import { z } from 'zod';
import { requireRole, sendError } from './http.ts';
import { encounterType, id, jsonSchema, language, maxSpeakersOf, sessionParams, speakerRole, speakersQuery, text } from './schemas.ts';

const uploadQuery = z
  .object({
    id: id.optional().describe('session id; a UUID when omitted'),
    encounterRef: text(200).optional(),
    encounterType: encounterType.optional(),
    language: language.optional(),
    role: speakerRole.default('doctor').describe('who speaks in the recording'),
    participant: text(200).default('recording'),
    fileName: text(500).optional().describe('kept for reference only; the type comes from the bytes'),
    priority: z.enum(['high', 'normal']).default('normal'),
    ...speakersQuery,
    access_token: z.string().optional(),
  })
  .strict();
import { errorSchema, statusSchema } from './sessions.ts';


export interface UploadRoutesOptions {
  uploads: UploadService;
  store: SessionStore;
  authenticator: Authenticator;
}

export async function registerUploadRoutes(app: FastifyInstance, { uploads, store, authenticator }: UploadRoutesOptions): Promise<void> {
  app.register(async (scope) => {
    // The route reads the raw request stream itself: nothing is parsed or buffered by Fastify.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));

    scope.post('/v1/uploads', {
      schema: {
        summary: 'Upload a recorded visit (webm, mp3, wav, m4a, ogg or flac) for transcription',
        description:
          'The request body is the file. Validated before anything is queued: 400 empty_file, 413 file_too_large, 415 unrecognized_format, ' +
          '422 no_audio_stream, 422 undecodable, 422 truncated, 422 duration_exceeded. Warnings (low_sample_rate, quiet_audio) do not reject. ' +
          'The transcript is then fetched like a live session\'s, once `upload.state` is `completed`.',
        security: [{ bearer: [] }],
        querystring: jsonSchema(uploadQuery),
        response: { 202: statusSchema, 400: errorSchema, 401: errorSchema, 403: errorSchema, 408: errorSchema, 409: errorSchema, 413: errorSchema, 415: errorSchema, 422: errorSchema, 429: errorSchema, 500: errorSchema },
      },
      preValidation: requireRole(authenticator, ['service']),
    }, async (request, reply) => {
      const query = request.query as z.output<typeof uploadQuery>;
      Authenticator.authorizeScope(request.principal!, query.id);
      // The connection's idle timeout (HTTP_IDLE_TIMEOUT_MS) is not this request's: a body that stalls is
      // given up by UPLOAD_BODY_IDLE_TIMEOUT_MS, and once it is in, the connection is quiet while the gateway
      // decodes and cuts the whole recording before answering (minutes for an hour with RNNoise on, longer
      // while live tracks share the event loop), which must not cut the client off.
      request.raw.socket.setTimeout(0);
      // Rejections (UploadRejected, SessionExistsError) are answered by the error handler; one given before
      // the body was read closes the connection under what the client still sends.
      const { session, analysis } = await uploads.accept(request.raw as Readable, { ...query, maxSpeakers: maxSpeakersOf(query) });
      await store.audit({ actor: request.principal!.subject, actorRole: request.principal!.role, action: 'upload.create', sessionId: session.id, detail: { format: analysis.format, durationMs: analysis.durationMs }, ip: request.ip });
      return reply.code(202).header('location', `/v1/sessions/${session.id}`).send(await session.status());
    });
  });

  app.post('/v1/sessions/:sessionId/upload/retry', {
    schema: {
      summary: "Queue an upload's dead-lettered windows again",
      security: [{ bearer: [] }],
      params: jsonSchema(sessionParams),
      response: { 200: { type: 'object', properties: { requeued: { type: 'integer' } } }, 404: errorSchema, 401: errorSchema, 403: errorSchema },
    },
    preValidation: requireRole(authenticator, ['service']),
  }, async (request, reply) => {
    const { sessionId } = request.params as { sessionId: string };
    if (!(await store.getSession(sessionId))) return sendError(reply, 404, 'session_not_found', `no session ${sessionId}`);
    const requeued = uploads.retry(sessionId);
    if (!requeued) return sendError(reply, 404, 'upload_not_active', `session ${sessionId} has no upload being transcribed by this gateway`);
    return { requeued: await requeued };
  });
}
