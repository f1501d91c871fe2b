/** Shared pieces of the HTTP/WebSocket edge: token extraction, the auth hook, error bodies. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import { AuthError, GatewayError } from '../errors.ts';
import { Authenticator, type Principal, type Role } from './auth.ts';
import type { Cap, ConnectionLimits } from './limits.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/** Error body of every endpoint: a stable machine code and a human message. */
export interface ApiError {
  error: { code: string; message: string };
}

export function sendError(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.code(status).send({ error: { code, message } } satisfies ApiError);
}

export function tokenOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice(7).trim();
  const query = request.query as Record<string, unknown> | undefined;
  return typeof query?.access_token === 'string' ? query.access_token : undefined;
}

/**
 * A preValidation hook: verifies the token and the role/session it grants. On WebSocket routes it runs
 * before the upgrade, so a bad token is answered with a plain 401/403.
 */
export function requireRole(authenticator: Authenticator, roles: readonly Role[], options: { unscoped?: boolean } = {}) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    try {
      const principal = await authenticator.verify(tokenOf(request));
      const sessionId = (request.params as { sessionId?: string }).sessionId;
      Authenticator.authorize(principal, roles, sessionId);
      // An endpoint about every session (metrics) is not for a token scoped to one.
      if (options.unscoped) Authenticator.authorizeScope(principal, undefined);
      request.principal = principal;
    } catch (error) {
      if (error instanceof AuthError) return sendError(reply, error.status, error.code, error.message);
      throw error;
    }
  };
}

/** Answers a WebSocket with a catalogued error: its close code, its message as the reason. */
export function closeWith(socket: Pick<WebSocket, 'close'>, error: GatewayError): void {
  socket.close(error.closeCode, closeReason(error.message));
}

/** WebSocket close reasons are limited to 123 bytes. */
export function closeReason(message: string): string {
  const bytes = Buffer.from(message, 'utf8');
  return bytes.length <= 123 ? message : `${bytes.subarray(0, 120).toString('utf8').replace(/\uFFFD$/, '')}...`;
}

/**
 * Pings a WebSocket every `intervalMs`; a peer that has not answered the previous ping by then, and sent
 * nothing else either, is gone (network dropped without a close) and is terminated, which runs the
 * socket's close handling. A message counts as an answer: a producer resending a backlog has its pong
 * queued behind audio the gateway works through turn by turn, for longer than a ping interval.
 */
export function keepAlive(socket: WebSocket, intervalMs: number): () => void {
  let answered = true;
  const heard = () => {
    answered = true;
  };
  socket.on('pong', heard);
  socket.on('message', heard);
  const timer = setInterval(() => {
    if (!answered) {
      socket.terminate();
      return;
    }
    answered = false;
    socket.ping();
  }, intervalMs);
  timer.unref();
  socket.on('close', () => clearInterval(timer));
  // The caller's word that the peer was heard (messages it held back, read now).
  return heard;
}

/** Holds `caps` while the socket is open; when one is full the socket is closed with 4429 and false returned. */
export function holdWhileOpen(socket: WebSocket, limits: ConnectionLimits, caps: Cap[]): boolean {
  try {
    socket.on('close', limits.acquire(caps));
    return true;
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    closeWith(socket, error);
    return false;
  }
}
