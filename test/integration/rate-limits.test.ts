/**
 * Request rates on what costs most to accept, over real HTTP: session creation, uploads and ingest
 * connections are limited per token, and all of them together per address; past a limit the answer is
 * 429 `rate_limited` with `Retry-After`, for WebSocket upgrades too. With REDIS_URL the counts live in
 * Redis: two gateways share one limit.
 */
import { randomUUID } from 'node:crypto';
import { WebSocket } from 'ws';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startHarness, type Harness } from '../support/harness.ts';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function create(h: Harness, token: string): Promise<Response> {
  return fetch(`${h.baseUrl}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: randomUUID() }) });
}

/** The HTTP status of a WebSocket upgrade to the ingest endpoint (101 when it opened). */
function ingest(h: Harness, token: string): Promise<number> {
  const url = `${h.baseUrl.replace(/^http/, 'ws')}/v1/sessions/limited/tracks/t${randomUUID().slice(0, 8)}/ingest?format=opus&role=doctor&access_token=${token}`;
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.once('open', () => (socket.close(), resolve(101)));
    socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
    socket.once('error', reject);
  });
}

test('per token: session creation, uploads and ingest connections; then the address as a whole', async () => {
  const h = await startHarness({ SESSION_CREATE_PER_MINUTE: '2', UPLOADS_PER_MINUTE: '1', INGEST_CONNECTIONS_PER_MINUTE: '2', RATE_LIMIT_PER_IP_PER_MINUTE: '8' });
  try {
    const service = await h.token('service');
    assert.is((await create(h, service)).status, 201);
    assert.is((await create(h, service)).status, 201);
    const refused = await create(h, service);
    assert.is(refused.status, 429);
    assert.is((await refused.json()).error.code, 'rate_limited');
    assert.ok(Number(refused.headers.get('retry-after')) > 0, 'Retry-After says when');
    const upload = () => fetch(`${h.baseUrl}/v1/uploads`, { method: 'POST', headers: { authorization: `Bearer ${service}` }, body: new Uint8Array(0) });
    assert.is((await upload()).status, 400, 'the first upload is judged (an empty file)');
    assert.is((await upload()).status, 429);
    const producer = await h.token('producer', 'limited');
    assert.is(await ingest(h, producer), 101);
    assert.is(await ingest(h, producer), 101);
    assert.is(await ingest(h, producer), 429, 'a WebSocket upgrade past the limit');
    // Eight requests from this address so far: another token gets nothing more from it this minute.
    const other = await h.token('service');
    assert.is((await create(h, other)).status, 429, 'the address is limited whatever the token');
    // Other endpoints are not held by these limits.
    assert.is((await fetch(`${h.baseUrl}/healthz`)).status, 200);
  } finally {
    await h.close();
  }
});

test('with Redis, two gateways share one count', async () => {
  const env = { REDIS_URL, SESSION_CREATE_PER_MINUTE: '3', QUEUE_NAME: `rate-${randomUUID().slice(0, 8)}` };
  const a = await startHarness(env);
  const b = await startHarness(env);
  try {
    // One token (its digest is the key) used on both gateways.
    const token = await a.token('service');
    assert.is((await create(a, token)).status, 201);
    assert.is((await create(b, token)).status, 201);
    assert.is((await create(a, token)).status, 201);
    assert.is((await create(b, token)).status, 429, 'the fourth, on the other gateway, is past the shared limit');
  } finally {
    await a.close();
    await b.close();
  }
});

test.run();
