/**
 * `GET /v1/analytics` (service token): the figures of the sessions created in a period (default: the last
 * 30 days), grouped by day, language, role, model or encounter type, filtered by language, role or
 * encounter type. What the dashboard (`/dashboard.html`) draws.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { ANALYTICS_GROUPINGS, type AnalyticsGrouping } from '../../client-sdk/src/protocol.ts';
import type { AnalyticsQueries } from '../store/analytics.ts';
import type { Authenticator } from './auth.ts';
import { requireRole, sendError } from './http.ts';
import { errorSchema } from './sessions.ts';
import { encounterType, jsonSchema, language, speakerRole } from './schemas.ts';

const DAY_MS = 24 * 3600 * 1000;
/** The longest period one report covers. */
const MAX_PERIOD_DAYS = 400;

const query = z
  .object({
    from: z.iso.datetime({ offset: true }).or(z.iso.date()).optional().describe('start of the period (ISO 8601); default 30 days before `to`'),
    to: z.iso.datetime({ offset: true }).or(z.iso.date()).optional().describe('end of the period, exclusive (ISO 8601); default now'),
    groupBy: z.enum(ANALYTICS_GROUPINGS as [AnalyticsGrouping, ...AnalyticsGrouping[]]).default('day'),
    language: language.optional(),
    role: speakerRole.optional(),
    encounterType: encounterType.optional(),
    access_token: z.string().optional(),
  })
  .strict();

const figures = {
  type: 'object',
  properties: {
    key: { type: 'string' },
    sessions: { type: 'integer' },
    minutes: { type: 'object', properties: { live: { type: 'number' }, upload: { type: 'number' } } },
    speakers: { type: 'integer' },
    stt: { type: 'object', nullable: true, properties: { calls: { type: 'integer' }, audioSeconds: { type: 'number' }, estimatedCost: { type: 'number', nullable: true } } },
    latencyMs: { type: 'object', properties: { p50: { type: 'number', nullable: true }, p95: { type: 'number', nullable: true }, p99: { type: 'number', nullable: true } } },
    windows: { type: 'object', nullable: true, properties: { total: { type: 'integer' }, done: { type: 'integer' }, failed: { type: 'integer' }, successRate: { type: 'number', nullable: true } } },
    hallucinationsDropped: { type: 'integer', nullable: true },
    quality: {
      type: 'object',
      properties: {
        wordsPerMinute: { type: 'number', nullable: true },
        confidence: { type: 'object', properties: { mean: { type: 'number', nullable: true }, high: { type: 'integer' }, medium: { type: 'integer' }, low: { type: 'integer' } } },
        uploadRealTimeFactor: { type: 'number', nullable: true },
      },
    },
  },
};

export interface AnalyticsRoutesOptions {
  analytics: AnalyticsQueries;
  authenticator: Authenticator;
}

export async function registerAnalyticsRoutes(app: FastifyInstance, { analytics, authenticator }: AnalyticsRoutesOptions): Promise<void> {
  app.get('/v1/analytics', {
    schema: {
      summary: 'Minutes transcribed, sessions, speakers, STT calls, audio and estimated cost, latency, windows, invented words dropped, quality; per group',
      description: 'For the sessions created in [from, to). groupBy=day|language|role|model|encounterType; by role only what speech says is figured (the rest is null). Uploads refused before anything was kept are counted by code, and the period\'s 10 most frequent error codes listed.',
      security: [{ bearer: [] }],
      querystring: jsonSchema(query),
      response: {
        200: { type: 'object', properties: { from: { type: 'string' }, to: { type: 'string' }, groupBy: { type: 'string' }, groups: { type: 'array', items: figures }, totals: figures, uploadsRejected: { type: 'object', additionalProperties: { type: 'integer' } }, topErrors: { type: 'array', items: { type: 'object', properties: { code: { type: 'string' }, count: { type: 'integer' } } } } } },
        400: errorSchema,
        401: errorSchema,
        403: errorSchema,
      },
    },
    preValidation: requireRole(authenticator, ['service']),
  }, async (request, reply) => {
    const q = request.query as z.output<typeof query>;
    const to = q.to ? new Date(q.to) : new Date();
    const from = q.from ? new Date(q.from) : new Date(to.getTime() - 30 * DAY_MS);
    if (!(from < to)) return sendError(reply, 400, 'invalid_request', '`from` must be before `to`');
    if (to.getTime() - from.getTime() > MAX_PERIOD_DAYS * DAY_MS) return sendError(reply, 400, 'invalid_request', `a report covers at most ${MAX_PERIOD_DAYS} days`);
    return analytics.report({ from, to, groupBy: q.groupBy, language: q.language, role: q.role, encounterType: q.encounterType });
  });
}
