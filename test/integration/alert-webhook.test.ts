/**
 * The gateway's own alerts (ALERT_WEBHOOK_URL), end to end: the recognizer goes down while a track is
 * streamed, final windows wait for it, and "STT degraded" is POSTed to a real HTTP receiver, signed like
 * the transcript webhook; when the recognizer is back and the windows are in, its resolution follows.
 * The rules' durations are scaled down (ALERT_FOR_SCALE) so the test takes seconds, not minutes.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { verifyWebhook } from '../../src/api/webhook.ts';
import { startHarness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { CaptionCollector } from '../support/viewer.ts';

const SECRET = 'alert-secret-of-at-least-thirty-two-characters';

test('STT down: "degraded" is POSTed, signed; back up: resolved', async () => {
  const received: { alert: string; state: string; value: number }[] = [];
  let badSignatures = 0;
  const receiver = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      const ok = verifyWebhook(SECRET, String(request.headers['x-helssa-timestamp']), body, String(request.headers['x-helssa-signature']));
      if (!ok) badSignatures++;
      else received.push(JSON.parse(body));
      response.writeHead(ok ? 204 : 401).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/alerts`;
  const h = await startHarness({ ALERT_WEBHOOK_URL: url, ALERT_WEBHOOK_SECRET: SECRET, ALERT_EVALUATION_MS: '100', ALERT_FOR_SCALE: '0.002' });
  try {
    await h.stt.stop();
    const id = 'alerting';
    const viewer = await CaptionCollector.connect(h.baseUrl, id, await h.token('viewer', id));
    const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/en/doctor` });
    await streamChunks(ingestUrl(h.baseUrl, id, 'doctor', { format: 'opus', role: 'doctor', language: 'en', access_token: await h.token('producer', id) }), chunks, 0);
    for (const deadline = Date.now() + 20000; !received.some((r) => r.alert === 'HelssaSttDegraded' && r.state === 'firing'); await new Promise((r) => setTimeout(r, 100))) {
      if (Date.now() > deadline) throw new Error(`no degraded alert; received ${JSON.stringify(received)}`);
    }
    await h.stt.start();
    await viewer.tracksEnded(['doctor'], 90000);
    viewer.close();
    for (const deadline = Date.now() + 20000; !received.some((r) => r.alert === 'HelssaSttDegraded' && r.state === 'resolved'); await new Promise((r) => setTimeout(r, 100))) {
      if (Date.now() > deadline) throw new Error(`no resolution; received ${JSON.stringify(received)}`);
    }
    assert.is(badSignatures, 0);
    const degraded = received.filter((r) => r.alert === 'HelssaSttDegraded').map((r) => r.state);
    assert.equal(degraded.slice(0, 2), ['firing', 'resolved']);
  } finally {
    await h.close();
    receiver.close();
  }
});

test.run();
