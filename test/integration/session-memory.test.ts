/**
 * Sessions leave memory: 1 000 sessions are created, streamed briefly (some with speech, so they hold
 * finals), ended and read back over REST; afterwards no completed session is held in memory and the
 * heap is back within a small bound of its baseline. Reading a completed session's status or transcript
 * does not load it again.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function heapMb(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage().heapUsed / 2 ** 20;
}

async function visit(h: Harness, id: string, chunks: { data: Buffer; atMs: number }[], service: string): Promise<void> {
  const created = await fetch(`${h.baseUrl}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json' }, body: JSON.stringify({ id }) });
  assert.is(created.status, 201);
  await streamChunks(ingestUrl(h.baseUrl, id, 'doctor', { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: await h.token('producer', id) }), chunks, 0);
  const ended = await fetch(`${h.baseUrl}/v1/sessions/${id}/end`, { method: 'POST', headers: { authorization: `Bearer ${service}` } });
  assert.is(ended.status, 200);
  assert.is(((await ended.json()) as { state: string }).state, 'completed');
  assert.is((await fetch(`${h.baseUrl}/v1/sessions/${id}`, { headers: { authorization: `Bearer ${service}` } })).status, 200);
  assert.is((await fetch(`${h.baseUrl}/v1/sessions/${id}/transcript?format=text`, { headers: { authorization: `Bearer ${service}` } })).status, 200);
}

test('1 000 sessions streamed, ended and read back leave memory', async () => {
  const h = await startHarness({ ARCHIVE_INSECURE_DISABLE: 'true', ARCHIVE_RECIPIENTS: '' });
  try {
    const service = await h.token('service');
    const all = await chunksFor({ format: 'pcm16', file: `${h.corpusDir}/en/doctor`, sampleRate: 16000 });
    const silence = all.slice(0, 15).map((c) => ({ ...c, data: Buffer.alloc(c.data.length) }));
    const speech = all.filter((c) => c.atMs <= 3000);
    const run = async (from: number, to: number) => {
      for (let i = from; i < to; i += 4) {
        await Promise.all([0, 1, 2, 3].map((k) => visit(h, `mem-${i + k}`, (i + k) % 20 === 0 ? speech : silence, service)));
      }
    };
    await run(0, 40);
    const baseline = await heapMb();
    const started = performance.now();
    await run(40, 1000);
    const seconds = (performance.now() - started) / 1000;
    const after = await heapMb();
    console.log(`  1 000 sessions: heap ${baseline.toFixed(1)} MB → ${after.toFixed(1)} MB (${(after - baseline).toFixed(1)} MB), ${h.gateway.registry.loaded} held in memory, ${seconds.toFixed(1)} s`);
    assert.is(h.gateway.registry.loaded, 0, 'completed sessions nobody watches are not held');
    assert.ok(after - baseline < 10, `heap grew ${(after - baseline).toFixed(1)} MB`);
    // A viewer of a completed session loads it; when it leaves, the session leaves too.
    const socket = new WebSocket(`${h.baseUrl.replace('http', 'ws')}/v1/sessions/mem-0/captions?access_token=${await h.token('viewer', 'mem-0')}`);
    await new Promise((r) => socket.addEventListener('message', r, { once: true }));
    assert.is(h.gateway.registry.loaded, 1);
    socket.close();
    for (const deadline = Date.now() + 5000; h.gateway.registry.loaded > 0; await new Promise((r) => setTimeout(r, 20))) {
      if (Date.now() > deadline) throw new Error('the watched session stayed in memory after its viewer left');
    }
  } finally {
    await h.close();
  }
});

test.run();
