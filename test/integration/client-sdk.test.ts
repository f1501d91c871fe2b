/**
 * The built client SDK (client-sdk/dist, what the gateway serves at /sdk/), run in Node, whose WebSocket
 * and fetch are the browser's API: its caption watcher is cut off twice mid-visit by a proxy that drops
 * every connection, reconnects by itself, and ends with every final exactly once, in order.
 */
import { createServer, connect, type Socket } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { CaptionEvent, FinalEvent } from '../../client-sdk/src/protocol.ts';
import { startHarness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';

/** A TCP proxy to the gateway whose connections can all be cut at once (a network drop). */
async function cuttableProxy(targetPort: number) {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    close: () => new Promise<void>((resolve) => (server.close(() => resolve()), [...sockets].forEach((s) => s.destroy()))),
  };
}

test('the SDK caption watcher survives network drops without losing or repeating a final; it serves at /sdk/', async () => {
  const h = await startHarness();
  const proxy = await cuttableProxy(Number(new URL(h.baseUrl).port));
  const { HelssaClient } = await import('../../client-sdk/dist/index.js');
  try {
    const served = await fetch(`${h.baseUrl}/sdk/index.js`);
    assert.is(served.status, 200);
    assert.match(served.headers.get('content-type') ?? '', /javascript/);
    const sessionId = 'sdk-reconnect';
    const client = new HelssaClient({ baseUrl: proxy.url, token: await h.token('viewer', sessionId) });
    const events: CaptionEvent[] = [];
    const states: string[] = [];
    const watcher = client.watchCaptions(sessionId, { onEvent: (e) => events.push(e), onState: (s) => states.push(s) });
    const producerToken = await h.token('producer', sessionId);
    const streaming = streamChunks(
      ingestUrl(h.baseUrl, sessionId, 'doctor', { format: 'ogg', role: 'doctor', access_token: producerToken }),
      await chunksFor({ format: 'ogg', file: `${h.corpusDir}/en/doctor` }),
      8,
    );
    const finals = () => events.filter((e): e is FinalEvent => e.type === 'final');
    for (const after of [2, 5]) {
      for (const deadline = Date.now() + 30000; finals().length < after; await new Promise((r) => setTimeout(r, 20))) {
        if (Date.now() > deadline) throw new Error(`no final ${after}`);
      }
      proxy.cut();
    }
    await streaming;
    const ended = await fetch(`${h.baseUrl}/v1/sessions/${sessionId}/end`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` } });
    assert.is(ended.status, 200);
    for (const deadline = Date.now() + 15000; !events.some((e) => e.type === 'session' && e.state === 'ended'); await new Promise((r) => setTimeout(r, 20))) {
      if (Date.now() > deadline) throw new Error('the watcher never saw the session end');
    }
    watcher.close();
    assert.ok(states.filter((s) => s === 'reconnecting').length >= 2, states.join(','));
    const seqs = finals().map((f) => f.seq);
    assert.equal(seqs, seqs.map((_, i) => i + 1), 'every final once, in order');
    const doc = (await client.transcript(sessionId)) as { segments: { text: string }[] };
    assert.is(doc.segments.length, seqs.length);
    assert.equal(finals().map((f) => f.text), doc.segments.map((s: { text: string }) => s.text));
  } finally {
    await proxy.close();
    await h.close();
  }
});

test.run();
