/**
 * `npm run bench:analytics`: how long `GET /v1/analytics` takes over 100 000 sessions (two tracks, six
 * segments and three window jobs each, a tenth of them uploads; spread over 90 days, three languages,
 * two models, four encounter types) on PostgreSQL, for a 30-day period and for the whole 90 days, per
 * grouping; against a baseline measured in the same run: one count of the period's sessions.
 * BENCH_SESSIONS changes the count; BENCH_DRIVER=pglite runs on the embedded database.
 */
import { sql } from 'drizzle-orm';
import { AnalyticsQueries } from '../src/store/analytics.ts';
import { openDatabase } from '../src/store/database.ts';
import { ANALYTICS_GROUPINGS } from '../client-sdk/src/protocol.ts';
import { createTestDatabase, type TestDriver } from '../test/support/databases.ts';

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 100000);
const driver = (process.env.BENCH_DRIVER ?? 'postgres') as TestDriver;
const DAY_MS = 24 * 3600 * 1000;

const database = await createTestDatabase(driver);
const opened = await openDatabase({ url: database.env.DATABASE_URL, dataDir: database.env.DATA_DIR ?? '' });
const { db } = opened;
try {
  const seeding = performance.now();
  const now = Date.now();
  await db.execute(sql`
    insert into sessions (id, state, language, encounter_type, stt_model, stt_audio_ms, stt_calls, hallucinations_dropped, created_at, completed_at)
    select 's' || i, 'completed', (array['en','fa','ar'])[1 + i % 3], (array['consultation','follow_up','emergency','telehealth'])[1 + i % 4],
           (array['whisper-1','gpt-4o-transcribe'])[1 + i % 2], 400000 + (i % 97) * 1000, 40 + i % 13, i % 5,
           to_timestamp((${now}::double precision - (i % 90) * ${DAY_MS}::double precision - (i % 1000) * 60000) / 1000.0), to_timestamp((${now}::double precision - (i % 90) * ${DAY_MS}::double precision) / 1000.0)
    from generate_series(1, ${SESSIONS}) i`);
  await db.execute(sql`
    insert into tracks (session_id, track_id, role, participant, format, state, received_ms)
    select 's' || i, t, t, t, case when i % 10 = 0 then 'upload' else 'opus' end, 'ended', 300000 + (i % 50) * 1000
    from generate_series(1, ${SESSIONS}) i, unnest(array['doctor','patient']) t`);
  await db.execute(sql`
    insert into uploads (session_id, track_id, format, size_bytes, duration_ms, sample_rate, mean_dbfs, warnings, priority, windows, state, created_at)
    select 's' || i, 'upload', 'wav', 1000000, 600000, 16000, -25, '[]'::jsonb, 'normal', '[]'::jsonb, 'completed', to_timestamp((${now}::double precision - (i % 90) * ${DAY_MS}::double precision - (i % 1000) * 60000 - 120000) / 1000.0)
    from generate_series(10, ${SESSIONS}, 10) i`);
  await db.execute(sql`
    insert into segments (id, session_id, seq, track_id, role, speaker, utterance_id, text, words, word_count, start_ms, end_ms, confidence, latency_ms)
    select 's' || i || '.' || k, 's' || i, k, case when k % 2 = 0 then 'doctor' else 'patient' end, case when k % 2 = 0 then 'doctor' else 'patient' end,
           case when k % 2 = 0 then 'doctor' else 'patient' end, 'u' || k, 'a few words here',
           '[{"word":"a","startMs":0,"endMs":100},{"word":"few","startMs":100,"endMs":300},{"word":"words","startMs":300,"endMs":600},{"word":"here","startMs":600,"endMs":900}]'::jsonb, 4,
           k * 5000, k * 5000 + 3000, 0.6 + (k % 4) * 0.1, 150 + (i * 7 + k * 13) % 400
    from generate_series(1, ${SESSIONS}) i, generate_series(1, 6) k`);
  await db.execute(sql`
    insert into stt_jobs (session_id, track_id, utterance_id, start_ms, end_ms, status, attempts)
    select 's' || i, 'doctor', 'u' || k, k * 5000, k * 5000 + 3000, case when (i + k) % 50 = 0 then 'failed' else 'done' end, 1
    from generate_series(1, ${SESSIONS}) i, generate_series(1, 3) k`);
  await db.execute(sql`analyze`);
  console.log(`${SESSIONS} sessions seeded on ${driver} in ${((performance.now() - seeding) / 1000).toFixed(1)} s`);

  const analytics = new AnalyticsQueries(db, { 'whisper-1': 0.006 });
  const time = async (run: () => Promise<unknown>) => {
    await run();
    const runs = 3;
    const started = performance.now();
    for (let i = 0; i < runs; i++) await run();
    return (performance.now() - started) / runs;
  };
  for (const days of [30, 90]) {
    const to = new Date(now + 1000);
    const from = new Date(now - days * DAY_MS);
    const baseline = await time(() => db.execute(sql`select count(*) from sessions where created_at >= ${from.toISOString()} and created_at < ${to.toISOString()}`));
    const rows: string[] = [];
    for (const groupBy of ANALYTICS_GROUPINGS) {
      const ms = await time(() => analytics.report({ from, to, groupBy }));
      rows.push(`${groupBy} ${ms.toFixed(0)} ms (${(ms / baseline).toFixed(0)}×)`);
    }
    console.log(`${days} days: baseline count ${baseline.toFixed(1)} ms; report by ${rows.join(', ')}`);
  }
} finally {
  await opened.close();
  await database.release();
}
