/**
 * Several STT endpoints (STT_BASE_URLS), two test recognizers speaking OpenAI's wire protocol: the first
 * serves while it answers; when it goes down mid-visit (connections refused) or answers 503 or refuses
 * (401), windows move to the second at once, the first's circuit breaker opens (it is skipped, not
 * waited for), and it serves again once a trial request after STT_BREAKER_RESET_MS passes. Every word of
 * the visit is there once; metrics and /readyz say which endpoint served what.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ensureCorpus, loadReference } from '../../scripts/make-corpus.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { SttServer, type Fault } from '../support/stt-server.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { doubledWords, wordErrorRate } from '../support/wer.ts';

let h: Harness;
let backup: SttServer;

const served = (server: SttServer) => server.calls.filter((c) => !c.fileName.startsWith('probe.') && c.status === 200).length;

async function metric(name: string): Promise<string> {
  return h.gateway.metrics.registry.getSingleMetricAsString(name);
}

async function fault(server: SttServer, f?: Fault): Promise<void> {
  await fetch(`${server.baseUrl.replace(/\/v1$/, '')}/_control/faults`, f ? { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(f) } : { method: 'DELETE' });
}

/** Streams a track at `speed` (0: as fast as taken) and returns the viewer once it has ended. */
async function visit(sessionId: string, speed: number, during?: () => Promise<void>): Promise<CaptionCollector> {
  const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
  const url = ingestUrl(h.baseUrl, sessionId, 'doctor', { format: 'ogg', role: 'doctor', language: 'en', access_token: await h.token('producer', sessionId) });
  const streaming = streamChunks(url, await chunksFor({ format: 'ogg', file: `${h.corpusDir}/en/doctor` }), speed);
  await during?.();
  assert.is((await streaming).closeCode, 1000);
  await viewer.tracksEnded(['doctor'], 60000);
  return viewer;
}

async function assertWhole(viewer: CaptionCollector, label: string): Promise<void> {
  const reference = (await loadReference('en')).tracks.doctor.map((w) => w.word).join(' ');
  const wer = wordErrorRate(reference, viewer.transcript());
  assert.ok(wer.wer <= 0.005, `${label}: WER ${(wer.wer * 100).toFixed(2)} %`);
  assert.is(doubledWords(reference, viewer.transcript()), 0, `${label}: no doubled words`);
}

test.before(async () => {
  backup = await new SttServer({ corpusDir: await ensureCorpus() }).start();
});

test('the first endpoint serves; down mid-visit, the second takes every window at once; back, the first serves again', async () => {
  h = await startHarness({ STT_BASE_URLS: '{stt},' + backup.baseUrl, STT_MAX_RETRIES: '0', STT_BREAKER_RESET_MS: '1500' });
  try {
    const first = await visit('endpoints-up', 0);
    await assertWhole(first, 'both up');
    assert.ok(served(h.stt) > 0 && served(backup) === 0, `the first endpoint served every window (${served(h.stt)} / ${served(backup)})`);

    const backupBefore = served(backup);
    const second = await visit('endpoints-outage', 4, async () => {
      await new Promise((resolve) => setTimeout(resolve, 3000));
      await h.stt.stop();
    });
    await assertWhole(second, 'first endpoint down mid-visit');
    assert.ok(served(backup) > backupBefore, 'the second endpoint took the windows');
    const requests = await metric('helssa_stt_endpoint_requests_total');
    assert.match(requests, new RegExp(`endpoint="${h.stt.baseUrl.replace(/[/.]/g, '\\$&')}",outcome="outage"`));
    assert.match(requests, /outcome="skipped"/, 'the failing endpoint was skipped once its breaker opened');
    const readyz = await (await fetch(`${h.baseUrl}/readyz`)).json();
    const [down, up] = readyz.sttEndpoints as { state: string; served: number }[];
    // Open, or half-open: its reset time (1.5 s) lets a trial request through now and then, which fails.
    assert.ok(down.state !== 'closed' && up.state === 'closed' && up.served > 0, JSON.stringify(readyz.sttEndpoints));
    assert.is(readyz.status, 'ready', 'one failing endpoint does not make the gateway unready');

    await h.stt.start();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const firstBefore = served(h.stt);
    const third = await visit('endpoints-back', 0);
    await assertWhole(third, 'first endpoint back');
    assert.ok(served(h.stt) > firstBefore, 'the first endpoint serves again after its trial request');
    assert.match(await metric('helssa_stt_endpoint_open'), new RegExp(`endpoint="${h.stt.baseUrl.replace(/[/.]/g, '\\$&')}"} 0`));
  } finally {
    await h.close();
  }
});

test('503s and refusals from the first endpoint move windows to the second; both refusing is a refusal (windows wait)', async () => {
  h = await startHarness({ STT_BASE_URLS: '{stt},' + backup.baseUrl, STT_MAX_RETRIES: '0', STT_BREAKER_RESET_MS: '60000', STT_REFUSED_RECHECK_MS: '300' });
  try {
    await fault(h.stt, { kind: 'status', status: 503, count: 1000000 });
    await assertWhole(await visit('endpoints-503', 0), 'first endpoint answering 503');
    await fault(h.stt);
    await fault(h.stt, { kind: 'refuse', status: 401, count: 1000000 });
    await fault(backup, { kind: 'refuse', status: 401, count: 1000000 });
    const viewer = await CaptionCollector.connect(h.baseUrl, 'endpoints-refused', await h.token('viewer', 'endpoints-refused'));
    const url = ingestUrl(h.baseUrl, 'endpoints-refused', 'doctor', { format: 'ogg', role: 'doctor', language: 'en', access_token: await h.token('producer', 'endpoints-refused') });
    assert.is((await streamChunks(url, await chunksFor({ format: 'ogg', file: `${h.corpusDir}/en/doctor` }), 0)).closeCode, 1000);
    await viewer.waitFor((e) => e.type === 'session' && e.stt === 'misconfigured', 30000);
    await fault(backup);
    await viewer.tracksEnded(['doctor'], 60000);
    await assertWhole(viewer, 'both refusing, then the second takes requests');
    viewer.close();
  } finally {
    await fault(h.stt);
    await fault(backup);
    await h.close();
  }
});

test.after(async () => {
  await backup?.stop();
});

test.run();
