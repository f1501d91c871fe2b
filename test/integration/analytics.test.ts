/**
 * `GET /v1/analytics` on both databases, against what was really streamed and uploaded: a live two-track
 * English visit, an uploaded Persian recording (a follow-up), two refused uploads. The figures must match
 * the sessions' own status (minutes received, upload duration, STT audio and calls, the price per minute),
 * the stored segments (speakers, words per minute, latency percentiles present for live finals only), the
 * window jobs, and the refusals by code; grouped by language, role, day and encounter type; totals equal
 * the groups' sums; a bad period is a 400 and a viewer may not read it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AnalyticsReport, SessionStatus } from '../../client-sdk/src/protocol.ts';
import type { TestDriver } from '../support/databases.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { uploadFile } from '../support/upload.ts';
import { CaptionCollector } from '../support/viewer.ts';

const PRICE = 0.006;

async function analytics(h: Harness, query: Record<string, string>): Promise<AnalyticsReport> {
  const response = await fetch(`${h.baseUrl}/v1/analytics?${new URLSearchParams(query)}`, { headers: { authorization: `Bearer ${await h.token('service')}` } });
  assert.is(response.status, 200, await response.clone().text());
  return response.json();
}

async function status(h: Harness, id: string): Promise<SessionStatus> {
  return (await fetch(`${h.baseUrl}/v1/sessions/${id}`, { headers: { authorization: `Bearer ${await h.token('service')}` } })).json();
}

/** Seeds the period: a live visit, an upload, two refusals. */
async function seed(h: Harness): Promise<{ live: SessionStatus; upload: SessionStatus }> {
  const id = 'analytics-live';
  const created = await fetch(`${h.baseUrl}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}`, 'content-type': 'application/json' }, body: JSON.stringify({ id, language: 'en' }) });
  assert.is(created.status, 201);
  const viewer = await CaptionCollector.connect(h.baseUrl, id, await h.token('viewer', id));
  await Promise.all((['doctor', 'patient'] as const).map(async (track) => {
    const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/en/${track}` });
    await streamChunks(ingestUrl(h.baseUrl, id, track, { format: 'opus', role: track, language: 'en', access_token: await h.token('producer', id) }), chunks, 0);
  }));
  await viewer.tracksEnded(['doctor', 'patient'], 60000);
  viewer.close();
  // While it is in memory: the audio sent to the recognizer, as the session counts it.
  const live = await status(h, id);
  assert.is((await fetch(`${h.baseUrl}/v1/sessions/${id}/end`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` } })).status, 200);
  const uploaded = await uploadFile(h.baseUrl, await h.token('service'), `${h.corpusDir}/fa/doctor.wav`, { language: 'fa', encounterType: 'follow_up' });
  assert.is(uploaded.status, 202);
  for (const deadline = Date.now() + 60000; (await status(h, uploaded.json.id)).state !== 'completed'; await new Promise((r) => setTimeout(r, 100))) {
    if (Date.now() > deadline) throw new Error('upload did not complete');
  }
  const token = await h.token('service');
  assert.is((await fetch(`${h.baseUrl}/v1/uploads`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: new Uint8Array(0) })).status, 400);
  assert.is((await fetch(`${h.baseUrl}/v1/uploads`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: new TextEncoder().encode('not audio at all, just text '.repeat(100)) })).status, 415);
  return { live, upload: await status(h, uploaded.json.id) };
}

const close = (a: number, b: number, tolerance: number, what: string) => assert.ok(Math.abs(a - b) <= tolerance, `${what}: ${a} vs ${b}`);

for (const driver of ['postgres', 'pglite'] as TestDriver[]) {
  test(`${driver}: the figures match what was streamed, uploaded and refused`, async () => {
    const h = await startHarness({}, {}, driver);
    try {
      const { live, upload } = await seed(h);
      const byLanguage = await analytics(h, { groupBy: 'language' });
      assert.equal(byLanguage.groups.map((g) => g.key), ['en', 'fa']);
      const [en, fa] = byLanguage.groups;
      assert.is(en.sessions, 1);
      close(en.minutes.live, live.tracks.reduce((sum, t) => sum + t.receivedMs, 0) / 60000, 0.01, 'live minutes');
      assert.is(en.minutes.upload, 0);
      close(fa.minutes.upload, upload.upload!.durationMs / 60000, 0.01, 'upload minutes');
      const sentMs = live.sttAudio!.sentMs.partial + live.sttAudio!.sentMs.final + live.sttAudio!.sentMs.speculative;
      close(en.stt!.audioSeconds, sentMs / 1000, 0.2, 'live STT audio');
      assert.ok(en.stt!.calls > 0 && fa.stt!.calls > 0, 'calls counted, live and upload');
      // The cost is of the seconds sent; the seconds shown are rounded to a tenth.
      close(en.stt!.estimatedCost!, (en.stt!.audioSeconds / 60) * PRICE, (0.05 / 60) * PRICE + 1e-9, 'cost at the price per minute');
      assert.is(en.speakers, 2);
      assert.ok(en.latencyMs.p50 !== null && en.latencyMs.p95! >= en.latencyMs.p50!, 'live latency percentiles');
      assert.is(fa.latencyMs.p50, null, 'no latency for an upload');
      assert.ok(en.quality.wordsPerMinute! > 60 && en.quality.wordsPerMinute! < 400, `${en.quality.wordsPerMinute} words per minute`);
      assert.ok(fa.quality.uploadRealTimeFactor! > 1, `uploads faster than real time (${fa.quality.uploadRealTimeFactor})`);
      assert.is(en.windows!.done, en.windows!.total);
      assert.is(en.windows!.successRate, 1);
      assert.equal(byLanguage.uploadsRejected, { empty_file: 1, unrecognized_format: 1 });
      assert.equal(byLanguage.topErrors.map((e) => e.code).sort(), ['empty_file', 'unrecognized_format']);
      // Totals are the groups' sums.
      assert.is(byLanguage.totals.sessions, 2);
      close(byLanguage.totals.minutes.live + byLanguage.totals.minutes.upload, en.minutes.live + fa.minutes.upload, 1e-6, 'total minutes');
      assert.is(byLanguage.totals.stt!.calls, en.stt!.calls + fa.stt!.calls);

      const byRole = await analytics(h, { groupBy: 'role' });
      assert.equal(byRole.groups.map((g) => g.key), ['doctor', 'patient']);
      assert.is(byRole.groups[0].stt, null, 'by role only what speech says');
      assert.is(byRole.groups[0].sessions, 2, 'the doctor speaks in both sessions');
      const byDay = await analytics(h, { groupBy: 'day' });
      assert.equal(byDay.groups.map((g) => g.key), [new Date().toISOString().slice(0, 10)]);
      const byType = await analytics(h, { groupBy: 'encounterType' });
      assert.equal(byType.groups.map((g) => [g.key, g.sessions]), [['follow_up', 1], ['unspecified', 1]]);
      const filtered = await analytics(h, { groupBy: 'language', language: 'fa' });
      assert.equal(filtered.groups.map((g) => g.key), ['fa']);
      const empty = await analytics(h, { from: '2020-01-01', to: '2020-02-01' });
      assert.equal(empty.groups, []);
      assert.is(empty.totals.sessions, 0);

      const bad = await fetch(`${h.baseUrl}/v1/analytics?from=2026-02-01&to=2026-01-01`, { headers: { authorization: `Bearer ${await h.token('service')}` } });
      assert.is(bad.status, 400);
      const viewer = await fetch(`${h.baseUrl}/v1/analytics`, { headers: { authorization: `Bearer ${await h.token('viewer', 'x')}` } });
      assert.is(viewer.status, 403);
    } finally {
      await h.close();
    }
  });
}

test.run();
