/**
 * Request rates, per token and per address, on what costs the most to accept: session creation, uploads
 * and ingest connections (WebSocket, WHIP, RTP), on top of the global per-token rate. Counted by
 * @fastify/rate-limit, in Redis when REDIS_URL is set (so a fleet of gateways shares one count), else in
 * this process. Past a limit: 429 `rate_limited` with `Retry-After`.
 */
import type { FastifyInstance, FastifyRequest, onRequestHookHandler, RouteOptions } from 'fastify';
import { createHash } from 'node:crypto';
import { tokenOf } from './http.ts';

export interface RateLimitSettings {
  /** Requests a minute per token (per address without one), every endpoint. */
  perMinute: number;
  /** Requests a minute per address to the limited endpoints, whatever token they carry. */
  perIpPerMinute: number;
  sessionCreatePerMinute: number;
  uploadsPerMinute: number;
  ingestConnectionsPerMinute: number;
}

/** onRequest hooks of the limited endpoints (each also counts against the address's limit). */
export interface RequestLimits {
  sessionCreate: onRequestHookHandler[];
  uploads: onRequestHookHandler[];
  ingest: onRequestHookHandler[];
}

/** The token's identity in the counters (a digest: tokens never reach Redis). */
export function rateKey(request: FastifyRequest): string {
  const token = tokenOf(request);
  return token ? `token:${createHash('sha256').update(token).digest('hex').slice(0, 32)}` : `ip:${request.ip}`;
}

export function requestLimits(app: FastifyInstance, settings: RateLimitSettings): RequestLimits {
  // The plugin's own hook runs once a request (its global limit); these are counters of the same store,
  // checked in one hook of our own so that each request counts against every limit it falls under.
  const counter = (what: string, max: number, key: (request: FastifyRequest) => string) => {
    const check = app.createRateLimit({ max, timeWindow: 60000, keyGenerator: (request: FastifyRequest) => `${what}:${key(request)}` });
    return { what, max, check };
  };
  const perIp = counter('address', settings.perIpPerMinute, (request) => request.ip);
  const hook = (limit: ReturnType<typeof counter>): onRequestHookHandler => async (request, reply) => {
    for (const { what, max, check } of [perIp, limit]) {
      const result = await check(request);
      if (result.isAllowed || !result.isExceeded) continue;
      reply.header('retry-after', String(Math.max(1, result.ttlInSeconds)));
      return reply.code(429).send({ error: { code: 'rate_limited', message: `too many ${what === 'address' ? 'requests from this address to these endpoints' : `${what} requests`}: at most ${max} a minute; retry after ${result.ttlInSeconds} s` } });
    }
  };
  return {
    sessionCreate: [hook(counter('session creation', settings.sessionCreatePerMinute, rateKey))],
    uploads: [hook(counter('upload', settings.uploadsPerMinute, rateKey))],
    ingest: [hook(counter('ingest connection', settings.ingestConnectionsPerMinute, rateKey))],
  };
}

/** Which limits each limited endpoint takes (matched by method and route as registered). */
function limitsOf(route: Pick<RouteOptions, 'method' | 'url'>, limits: RequestLimits): onRequestHookHandler[] | undefined {
  const method = Array.isArray(route.method) ? route.method[0] : route.method;
  if (method === 'POST' && route.url === '/v1/sessions') return limits.sessionCreate;
  if (method === 'POST' && route.url === '/v1/uploads') return limits.uploads;
  if ((method === 'GET' && route.url.endsWith('/ingest')) || (method === 'POST' && /\/(whip|rtp)$/.test(route.url))) return limits.ingest;
  return undefined;
}

/** Adds the endpoint limits to the limited routes as they are registered (an `onRoute` hook). */
export function limitRoutes(app: FastifyInstance, limits: RequestLimits): void {
  app.addHook('onRoute', (route) => {
    const hooks = limitsOf(route, limits);
    if (!hooks) return;
    const own = route.onRequest ? (Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]) : [];
    route.onRequest = [...hooks, ...own];
  });
}
