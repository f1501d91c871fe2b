/** REST for sessions: status, and ending a session once its tracks are done. */
import type { FastifyInstance } from 'fastify';
import type { SessionRegistry } from '../session/registry.ts';
import type { Authenticator } from './auth.ts';
import { ID_PATTERN, requireRole, sendError } from './http.ts';

const params = { type: 'object', properties: { sessionId: { type: 'string', pattern: ID_PATTERN } }, required: ['sessionId'] } as const;

export function registerSessionRoutes(app: FastifyInstance, registry: SessionRegistry, authenticator: Authenticator): void {
  app.get('/v1/sessions/:sessionId', { schema: { params }, preValidation: requireRole(authenticator, ['viewer', 'producer', 'service']) }, async (request, reply) => {
    const session = registry.get((request.params as { sessionId: string }).sessionId);
    if (!session) return sendError(reply, 404, 'session_not_found', 'no such session');
    return session.describe();
  });

  app.post('/v1/sessions/:sessionId/end', { schema: { params }, preValidation: requireRole(authenticator, ['producer', 'service']) }, async (request, reply) => {
    const session = registry.get((request.params as { sessionId: string }).sessionId);
    if (!session) return sendError(reply, 404, 'session_not_found', 'no such session');
    await session.end();
    return session.describe();
  });
}
