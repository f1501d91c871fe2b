/**
 * REST for enrolled voices: `POST /v1/speakers/{participant}` with a 5–15 s clip of the doctor speaking
 * (any upload format; the body is the file), `GET` what is kept of it, `DELETE` it. Only a voice print is
 * stored, never the clip. A diarized track or upload whose participant has a print finds the doctor by
 * voice; a print is also learned from the participant's own doctor tracks when none was enrolled.
 */
import type { FastifyInstance } from 'fastify';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { enrollSpeaker, type EnrollmentOptions } from '../session/speaker-enrollment.ts';
import type { SessionStore } from '../store/session-store.ts';
import type { Authenticator } from './auth.ts';
import { requireRole, sendError } from './http.ts';
import { errorSchema } from './sessions.ts';
import { id, jsonSchema } from './schemas.ts';

const params = jsonSchema(z.object({ participant: id }));
const profileSchema = {
  type: 'object',
  properties: { participant: { type: 'string' }, source: { type: 'string', enum: ['enrolled', 'learned'] }, speechMs: { type: 'number' }, updatedAt: { type: 'string' } },
};
const security = [{ bearer: [] }];

export interface SpeakerRoutesOptions {
  store: SessionStore;
  authenticator: Authenticator;
  enrollment: Omit<EnrollmentOptions, 'store'>;
}

export async function registerSpeakerRoutes(app: FastifyInstance, { store, authenticator, enrollment }: SpeakerRoutesOptions): Promise<void> {
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    scope.post('/v1/speakers/:participant', {
      schema: {
        summary: "Enroll a doctor's voice from a 5–15 s clip (the body is the audio file)",
        description: 'Only a voice print is kept. 400 empty_file, 413 file_too_large, 422 undecodable, 422 clip_too_short, 422 clip_too_long, 422 not_enough_speech.',
        security,
        params,
        response: { 201: profileSchema, 400: errorSchema, 401: errorSchema, 403: errorSchema, 408: errorSchema, 413: errorSchema, 422: errorSchema },
      },
      preValidation: requireRole(authenticator, ['service']),
    }, async (request, reply) => {
      const { participant } = request.params as { participant: string };
      const profile = await enrollSpeaker(participant, request.raw as Readable, { ...enrollment, store });
      await store.audit({ actor: request.principal!.subject, actorRole: request.principal!.role, action: 'speaker.enroll', detail: { participant, speechMs: profile.speechMs }, ip: request.ip });
      return reply.code(201).send(profile);
    });
  });

  app.get('/v1/speakers/:participant', {
    schema: { summary: "What is kept of a participant's voice", security, params, response: { 200: profileSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema } },
    preValidation: requireRole(authenticator, ['service']),
  }, async (request, reply) => {
    const { participant } = request.params as { participant: string };
    const profile = await store.speakerProfile(participant);
    if (!profile) return sendError(reply, 404, 'speaker_not_found', `no voice print for ${participant}`);
    const { print: _print, ...kept } = profile;
    return kept;
  });

  app.delete('/v1/speakers/:participant', {
    schema: { summary: "Forget a participant's voice print", security, params, response: { 204: { type: 'null' }, 401: errorSchema, 403: errorSchema, 404: errorSchema } },
    preValidation: requireRole(authenticator, ['service']),
  }, async (request, reply) => {
    const { participant } = request.params as { participant: string };
    if (!(await store.deleteSpeakerProfile(participant))) return sendError(reply, 404, 'speaker_not_found', `no voice print for ${participant}`);
    await store.audit({ actor: request.principal!.subject, actorRole: request.principal!.role, action: 'speaker.delete', detail: { participant }, ip: request.ip });
    return reply.code(204).send();
  });
}
