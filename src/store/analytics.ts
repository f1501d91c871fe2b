/**
 * The operators' and clinic managers' figures, aggregated in SQL from what is stored (sessions, tracks,
 * uploads, window jobs, segments, refused uploads) for the sessions created in a period, grouped by day,
 * language, model, encounter type or (for what speech says) role. A handful of grouped queries, each
 * answered from indexes on the period; the same queries with one group give the totals.
 */
import { and, count, eq, gte, lt, sql, type SQL } from 'drizzle-orm';
import type { AnalyticsFigures, AnalyticsGrouping, AnalyticsReport } from '../../client-sdk/src/protocol.ts';
import type { Database } from './database.ts';
import { segments, sessions, sttJobs, tracks, uploadRejections, uploads } from './schema.ts';

export interface AnalyticsQuery {
  from: Date;
  to: Date;
  groupBy: AnalyticsGrouping;
  language?: string;
  role?: 'doctor' | 'patient';
  encounterType?: string;
}

/** STT price per audio minute by model (STT_PRICE_PER_MINUTE); a model without one has no estimate. */
export type SttPrices = Readonly<Record<string, number>>;

const CONFIDENT = 0.9;
const UNSURE = 0.7;

const num = (value: unknown) => Number(value ?? 0);
const orNull = (value: unknown) => (value === null || value === undefined ? null : Number(value));

function emptyFigures(key: string, byRole: boolean): AnalyticsFigures {
  return {
    key,
    sessions: 0,
    minutes: { live: 0, upload: 0 },
    speakers: 0,
    stt: byRole ? null : { calls: 0, audioSeconds: 0, estimatedCost: null },
    latencyMs: { p50: null, p95: null, p99: null },
    windows: byRole ? null : { total: 0, done: 0, failed: 0, successRate: null },
    hallucinationsDropped: byRole ? null : 0,
    quality: { wordsPerMinute: null, confidence: { mean: null, high: 0, medium: 0, low: 0 }, uploadRealTimeFactor: null },
  };
}

export class AnalyticsQueries {
  private readonly db: Database;
  private readonly prices: SttPrices;

  constructor(db: Database, prices: SttPrices) {
    this.db = db;
    this.prices = prices;
  }

  async report(query: AnalyticsQuery): Promise<AnalyticsReport> {
    const [groups, [totals = emptyFigures('all', false)], rejected, failedWindows] = await Promise.all([
      this.figures(query, this.keyOf(query.groupBy), query.groupBy === 'role'),
      this.figures(query, undefined, false),
      this.db.select({ code: uploadRejections.code, count: count() }).from(uploadRejections).where(and(gte(uploadRejections.at, query.from), lt(uploadRejections.at, query.to))).groupBy(uploadRejections.code),
      this.db.select({ count: count() }).from(sttJobs).innerJoin(sessions, eq(sessions.id, sttJobs.sessionId)).where(and(this.period(query), eq(sttJobs.status, 'failed'))),
    ]);
    const uploadsRejected = Object.fromEntries(rejected.map((r) => [r.code, num(r.count)]));
    const errors = [...rejected.map((r) => ({ code: r.code, count: num(r.count) })), { code: 'window_failed', count: num(failedWindows[0]?.count) }];
    return {
      from: query.from.toISOString(),
      to: query.to.toISOString(),
      groupBy: query.groupBy,
      groups,
      totals: { ...totals, key: 'all' },
      uploadsRejected,
      topErrors: errors.filter((e) => e.count > 0).sort((a, b) => b.count - a.count || a.code.localeCompare(b.code)).slice(0, 10),
    };
  }

  private keyOf(groupBy: AnalyticsGrouping): SQL<string> {
    switch (groupBy) {
      case 'day':
        return sql<string>`to_char(${sessions.createdAt} at time zone 'UTC', 'YYYY-MM-DD')`;
      case 'language':
        return sql<string>`coalesce(${sessions.language}, 'unknown')`;
      case 'model':
        return sql<string>`coalesce(${sessions.sttModel}, 'unknown')`;
      case 'encounterType':
        return sql<string>`coalesce(${sessions.encounterType}, 'unspecified')`;
      case 'role':
        return sql<string>`${segments.role}`;
    }
  }

  /** Sessions created in the period, with the filters that apply to sessions. */
  private period(query: AnalyticsQuery): SQL {
    return and(
      gte(sessions.createdAt, query.from),
      lt(sessions.createdAt, query.to),
      query.language ? eq(sessions.language, query.language) : undefined,
      query.encounterType ? eq(sessions.encounterType, query.encounterType) : undefined,
    )!;
  }

  /** `grouping`: undefined for the totals (one group); `byRole`: by the segments' role (only what speech says). */
  private async figures(query: AnalyticsQuery, grouping: SQL<string> | undefined, byRole: boolean): Promise<AnalyticsFigures[]> {
    const key = grouping ?? sql<string>`'all'`;
    const groups = grouping ? [grouping] : [];
    const period = this.period(query);
    const roleFilter = query.role ? eq(segments.role, query.role) : undefined;
    const speech = this.db
      .select({
        key,
        sessions: sql<number>`count(distinct ${segments.sessionId})`,
        speakers: sql<number>`count(distinct ${segments.sessionId} || '/' || ${segments.speaker})`,
        words: sql<number>`sum(${segments.wordCount})`,
        speechMs: sql<number>`sum(${segments.endMs} - ${segments.startMs})`,
        uploadSpeechMs: sql<number>`sum(${segments.endMs} - ${segments.startMs}) filter (where ${segments.trackId} = 'upload')`,
        p50: sql<number | null>`percentile_cont(0.5) within group (order by ${segments.latencyMs})`,
        p95: sql<number | null>`percentile_cont(0.95) within group (order by ${segments.latencyMs})`,
        p99: sql<number | null>`percentile_cont(0.99) within group (order by ${segments.latencyMs})`,
        confidence: sql<number | null>`avg(${segments.confidence})`,
        high: sql<number>`count(*) filter (where ${segments.confidence} > ${CONFIDENT})`,
        low: sql<number>`count(*) filter (where ${segments.confidence} < ${UNSURE})`,
        medium: sql<number>`count(*) filter (where ${segments.confidence} between ${UNSURE} and ${CONFIDENT})`,
      })
      .from(segments)
      .innerJoin(sessions, eq(sessions.id, segments.sessionId))
      .where(and(period, roleFilter))
      .groupBy(...groups);
    if (byRole) {
      const rows = await speech;
      return rows.map((r) => this.fromSpeech(emptyFigures(String(r.key), true), r, true)).sort((a, b) => a.key.localeCompare(b.key));
    }
    const [sessionRows, trackRows, uploadRows, jobRows, speechRows] = await Promise.all([
      this.db
        .select({ key, model: sessions.sttModel, sessions: count(), calls: sql<number>`sum(${sessions.sttCalls})`, audioMs: sql<number>`sum(${sessions.sttAudioMs})`, dropped: sql<number>`sum(${sessions.hallucinationsDropped})` })
        .from(sessions)
        .where(period)
        .groupBy(...groups, sessions.sttModel),
      this.db
        .select({ key, liveMs: sql<number>`sum(${tracks.receivedMs}) filter (where ${tracks.format} <> 'upload')` })
        .from(tracks)
        .innerJoin(sessions, eq(sessions.id, tracks.sessionId))
        .where(period)
        .groupBy(...groups),
      this.db
        .select({
          key,
          uploadMs: sql<number>`sum(${uploads.durationMs})`,
          doneMs: sql<number>`sum(${uploads.durationMs}) filter (where ${sessions.completedAt} is not null)`,
          tookMs: sql<number>`sum(extract(epoch from (${sessions.completedAt} - ${uploads.createdAt})) * 1000) filter (where ${sessions.completedAt} is not null)`,
        })
        .from(uploads)
        .innerJoin(sessions, eq(sessions.id, uploads.sessionId))
        .where(period)
        .groupBy(...groups),
      this.db
        .select({ key, total: count(), done: sql<number>`count(*) filter (where ${sttJobs.status} = 'done')`, failed: sql<number>`count(*) filter (where ${sttJobs.status} = 'failed')` })
        .from(sttJobs)
        .innerJoin(sessions, eq(sessions.id, sttJobs.sessionId))
        .where(period)
        .groupBy(...groups),
      speech,
    ]);
    const figures = new Map<string, AnalyticsFigures>();
    const group = (k: unknown) => {
      const name = String(k);
      if (!figures.has(name)) figures.set(name, emptyFigures(name, false));
      return figures.get(name)!;
    };
    for (const r of sessionRows) {
      const g = group(r.key);
      g.sessions += num(r.sessions);
      const audioSeconds = num(r.audioMs) / 1000;
      g.stt!.calls += num(r.calls);
      g.stt!.audioSeconds += audioSeconds;
      g.hallucinationsDropped! += num(r.dropped);
      const price = r.model ? this.prices[r.model] : undefined;
      if (price !== undefined) g.stt!.estimatedCost = (g.stt!.estimatedCost ?? 0) + (audioSeconds / 60) * price;
    }
    for (const r of trackRows) group(r.key).minutes.live = num(r.liveMs) / 60000;
    for (const r of uploadRows) {
      const g = group(r.key);
      g.minutes.upload = num(r.uploadMs) / 60000;
      g.quality.uploadRealTimeFactor = num(r.tookMs) > 0 ? num(r.doneMs) / num(r.tookMs) : null;
    }
    for (const r of jobRows) {
      const done = num(r.done);
      const failed = num(r.failed);
      group(r.key).windows = { total: num(r.total), done, failed, successRate: done + failed > 0 ? done / (done + failed) : null };
    }
    for (const r of speechRows) this.fromSpeech(group(r.key), r, false);
    for (const g of figures.values()) if (g.stt) g.stt.audioSeconds = Math.round(g.stt.audioSeconds * 10) / 10;
    // An aggregate over no row still gives one (of nulls): a period without sessions has no group.
    return [...figures.values()].filter((g) => g.sessions > 0).sort((a, b) => a.key.localeCompare(b.key));
  }

  /** What the segments say of a group: speakers, words per minute, latency, confidence (by role: minutes too). */
  private fromSpeech(
    g: AnalyticsFigures,
    r: { sessions: unknown; speakers: unknown; words: unknown; speechMs: unknown; uploadSpeechMs: unknown; p50: unknown; p95: unknown; p99: unknown; confidence: unknown; high: unknown; medium: unknown; low: unknown },
    byRole: boolean,
  ): AnalyticsFigures {
    g.speakers = num(r.speakers);
    const speechMinutes = num(r.speechMs) / 60000;
    if (byRole) {
      g.sessions = num(r.sessions);
      g.minutes = { live: speechMinutes - num(r.uploadSpeechMs) / 60000, upload: num(r.uploadSpeechMs) / 60000 };
    }
    g.quality.wordsPerMinute = speechMinutes > 0 ? Math.round((num(r.words) / speechMinutes) * 10) / 10 : null;
    g.latencyMs = { p50: orNull(r.p50), p95: orNull(r.p95), p99: orNull(r.p99) };
    g.quality.confidence = { mean: orNull(r.confidence), high: num(r.high), medium: num(r.medium), low: num(r.low) };
    return g;
  }
}
