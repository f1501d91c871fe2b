/**
 * The viewer endpoint: GET /v1/sessions/:sessionId/captions (WebSocket), JSON CaptionEvents out.
 * `?after=N` resumes after final N, so a reconnecting viewer neither misses nor repeats a final.
 * A viewer too slow to read is sent no partials (finals still queue) and dropped past a hard limit.
 */
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { CloseCode, type CaptionEvent } from '../../client-sdk/src/protocol.ts';
import type { SessionRegistry } from '../session/registry.ts';
import type { SessionStore } from '../store/session-store.ts';
import type { Viewer } from '../session/caption-feed.ts';
import type { Authenticator } from './auth.ts';
import { holdWhileOpen, keepAlive, requireRole } from './http.ts';
import { jsonSchema, sessionParams } from './schemas.ts';
import type { ConnectionLimits } from './limits.ts';

/**
 * A viewer's socket as the session sees it. Past `maxBufferedBytes` unsent, the viewer is closed with
 * 4408 (it reconnects with `?after=` and loses nothing); past a sixteenth of that, partials are skipped.
 */
export function socketViewer(socket: Pick<WebSocket, 'readyState' | 'OPEN' | 'bufferedAmount' | 'send' | 'close'>, maxBufferedBytes: number): Viewer {
  return {
    send(event: CaptionEvent) {
      if (socket.readyState !== socket.OPEN) return;
      if (socket.bufferedAmount > maxBufferedBytes) {
        socket.close(CloseCode.viewerTooSlow, 'viewer too slow to keep up; reconnect with ?after=');
        return;
      }
      if (event.type === 'partial' && socket.bufferedAmount > maxBufferedBytes / 16) return;
      socket.send(JSON.stringify(event));
    },
    close(code: number, reason: string) {
      socket.close(code, reason);
    },
  };
}

export interface CaptionRouteOptions {
  registry: SessionRegistry;
  /** Who watched which session, and when, goes to the audit trail like a REST read. */
  store: Pick<SessionStore, 'audit'>;
  authenticator: Authenticator;
  heartbeatMs: number;
  limits: ConnectionLimits;
  maxViewersPerToken: number;
  maxConnectionsPerIp: number;
  /** Unsent bytes after which a viewer is dropped as too slow. */
  maxBufferedBytes: number;
}

export async function registerCaptions(app: FastifyInstance, { registry, store, authenticator, heartbeatMs, limits, maxViewersPerToken, maxConnectionsPerIp, maxBufferedBytes }: CaptionRouteOptions): Promise<void> {
  app.get(
    '/v1/sessions/:sessionId/captions',
    {
      websocket: true,
      schema: {
        hide: true,
        params: jsonSchema(sessionParams),
        querystring: { type: 'object', properties: { after: { type: 'integer', minimum: 0 }, access_token: { type: 'string' } } },
      },
      preValidation: requireRole(authenticator, ['viewer', 'service']),
    },
    (socket, request) => {
      const { sessionId } = request.params as { sessionId: string };
      const { after } = request.query as { after?: number };
      const caps = [
        { key: `viewer:${request.principal!.tokenId}`, max: maxViewersPerToken, what: 'caption connections for this token' },
        { key: `ip:${request.ip}`, max: maxConnectionsPerIp, what: 'connections from this address' },
      ];
      if (!holdWhileOpen(socket, limits, caps)) return;
      const viewer = socketViewer(socket, maxBufferedBytes);
      keepAlive(socket, heartbeatMs);
      let closed = false;
      socket.on('close', () => (closed = true));
      void registry.getOrCreate(sessionId).then(
        (session) => {
          if (closed) return;
          session.addViewer(viewer, after ?? 0);
          socket.on('close', () => session.removeViewer(viewer));
          const { subject, role } = request.principal!;
          void store.audit({ actor: subject, actorRole: role, action: 'captions.watch', sessionId, detail: { after: after ?? 0 }, ip: request.ip }).catch((error) => request.log.warn({ err: error, sessionId }, 'could not audit a caption viewer'));
        },
        (error: Error) => {
          request.log.error({ err: error, sessionId }, 'could not load session for a viewer');
          socket.close(CloseCode.internalError, 'the gateway could not load the session; try again');
        },
      );
    },
  );
}
