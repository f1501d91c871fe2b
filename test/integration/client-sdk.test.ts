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

test('the watcher reconnects after "too slow" (4408) and stops for good only when the REST API refuses its token', async () => {
  const { HelssaClient, CloseCode } = await import('../../client-sdk/dist/index.js');
  // A gateway stand-in whose first caption connection is closed as too slow.
  const { WebSocketServer } = await import('ws');
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  let connections = 0;
  server.on('connection', (socket) => {
    if (++connections === 1) socket.close(CloseCode.viewerTooSlow, 'viewer too slow to keep up');
  });
  await new Promise((r) => server.once('listening', r));
  const states: string[] = [];
  const slow = new HelssaClient({ baseUrl: `http://127.0.0.1:${(server.address() as { port: number }).port}`, token: 't' }).watchCaptions('s', { onEvent: () => {}, onState: (s: string) => states.push(s) });
  for (const deadline = Date.now() + 5000; connections < 2; await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > deadline) throw new Error(`no reconnection after 4408: ${states}`);
  }
  slow.close();
  server.close();

  const h = await startHarness();
  try {
    const { SignJWT } = await import('jose');
    const { TEST_JWT_SECRET } = await import('../support/tokens.ts');
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ role: 'viewer', session: 'sdk-auth' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now - 7200).setExpirationTime(now - 3600).sign(new TextEncoder().encode(TEST_JWT_SECRET));
    const refusedStates: string[] = [];
    new HelssaClient({ baseUrl: h.baseUrl, token: expired }).watchCaptions('sdk-auth', { onEvent: () => {}, onState: (s: string) => refusedStates.push(s) });
    for (const deadline = Date.now() + 5000; !refusedStates.includes('unauthorized'); await new Promise((r) => setTimeout(r, 20))) {
      if (Date.now() > deadline) throw new Error(`the watcher kept retrying a refused token: ${refusedStates}`);
    }
    await new Promise((r) => setTimeout(r, 1000));
    assert.is(refusedStates.at(-1), 'unauthorized', 'no retry after the token was refused');
    // A gateway out of reach is not a refused token: the watcher keeps trying.
    const unreachable: string[] = [];
    const offline = new HelssaClient({ baseUrl: 'http://127.0.0.1:9', token: expired }).watchCaptions('x', { onEvent: () => {}, onState: (s: string) => unreachable.push(s) });
    await new Promise((r) => setTimeout(r, 1200));
    offline.close();
    assert.ok(unreachable.filter((s) => s === 'reconnecting').length >= 2, unreachable.join(','));
    assert.not.ok(unreachable.includes('unauthorized'));
  } finally {
    await h.close();
  }
});

test.run();
