/**
 * Upload workers as separate processes (`src/worker.ts`, what `npm run worker` runs) sharing the BullMQ
 * queue over the real Redis at 127.0.0.1:6379, with no worker in the gateway: two workers split one
 * recording's windows; a worker killed with SIGKILL mid-job leaves its job to another worker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadReference } from '../../scripts/make-corpus.ts';
import { startHarness, type Harness } from '../support/harness.ts';

/** The gateway and its workers share the key-encryption key of the sealed window audio. */
const AT_REST_KEY = randomBytes(32).toString('base64');
import { encodeFor, ffmpeg, uploadFile } from '../support/upload.ts';
import { wordErrorRate } from '../support/wer.ts';

const REDIS_URL = 'redis://127.0.0.1:6379';

interface WorkerProcess {
  child: ChildProcess;
  /** Ids of the jobs this worker finished. */
  transcribed: string[];
  ready: Promise<void>;
}

function startWorker(h: Harness, queueName: string): WorkerProcess {
  const child = spawn(process.execPath, ['src/worker.ts'], {
    env: { ...process.env, REDIS_URL, AT_REST_KEY, QUEUE_NAME: queueName, QUEUE_LOCK_MS: '1000', STT_BASE_URL: h.stt.baseUrl, OPENAI_API_KEY: 'test-key', STT_MAX_RETRIES: '0', WORKER_CONCURRENCY: '1', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const transcribed: string[] = [];
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const entry = JSON.parse(line) as { msg: string; jobId?: string };
    if (entry.msg === 'upload worker ready') onReady();
    if (entry.msg === 'window transcribed') transcribed.push(entry.jobId!);
  });
  return { child, transcribed, ready };
}

async function stopWorker(worker: WorkerProcess): Promise<void> {
  if (worker.child.exitCode !== null || worker.child.signalCode !== null) return;
  const exited = new Promise((resolve) => worker.child.once('exit', resolve));
  worker.child.kill('SIGTERM');
  await exited;
}

async function completedStatus(h: Harness, sessionId: string): Promise<any> {
  const token = await h.token('service');
  for (const deadline = Date.now() + 60000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
    const status = await (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}`, { headers: { authorization: `Bearer ${token}` } })).json();
    if (status.state === 'completed') return status;
  }
  throw new Error(`session ${sessionId} did not complete`);
}

async function transcript(h: Harness, sessionId: string): Promise<string> {
  const response = await fetch(`${h.baseUrl}/v1/sessions/${sessionId}/transcript`, { headers: { authorization: `Bearer ${await h.token('service')}` } });
  return ((await response.json()) as { segments: { text: string }[] }).segments.map((s) => s.text).join(' ');
}

test('two worker processes share the queue over Redis and split the windows of one recording', async () => {
  const queueName = `test-${randomUUID()}`;
  const h = await startHarness({ REDIS_URL, AT_REST_KEY, QUEUE_NAME: queueName, UPLOAD_WORKERS: '0' }, { latencyMs: 200 });
  const workers = [startWorker(h, queueName), startWorker(h, queueName)];
  try {
    await Promise.all(workers.map((w) => w.ready));
    const file = join(h.dataDir, 'visit.mp3');
    await encodeFor('mp3', `${h.corpusDir}/en/mix.wav`, file);
    const accepted = await uploadFile(h.baseUrl, await h.token('service'), file, { language: 'en' });
    assert.is(accepted.status, 202, JSON.stringify(accepted.json));
    const status = await completedStatus(h, accepted.json.id);
    const total = status.upload.windows.total;
    assert.is(status.upload.windows.done, total);
    assert.is(workers[0].transcribed.length + workers[1].transcribed.length, total);
    assert.ok(workers.every((w) => w.transcribed.length > 0), `jobs per worker: ${workers.map((w) => w.transcribed.length)}`);
    const reference = (await loadReference('en')).tracks.mix.map((w) => w.word).join(' ');
    const wer = wordErrorRate(reference, await transcript(h, accepted.json.id));
    assert.ok(wer.wer <= 0.02, `WER ${(wer.wer * 100).toFixed(2)}%`);
  } finally {
    await Promise.all(workers.map(stopWorker));
    await h.close();
  }
});

test('a worker killed mid-job leaves the job to another worker', async () => {
  const queueName = `test-${randomUUID()}`;
  // Each STT call takes 1.5 s, so the first worker is surely inside the job when it is killed.
  const h = await startHarness({ REDIS_URL, AT_REST_KEY, QUEUE_NAME: queueName, UPLOAD_WORKERS: '0' }, { latencyMs: 1500 });
  const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, { connection });
  const first = startWorker(h, queueName);
  let second: WorkerProcess | undefined;
  try {
    await first.ready;
    const words = (await loadReference('en')).tracks.mix;
    const turnEndMs = words.find((w, i) => i + 1 < words.length && words[i + 1].startMs - w.endMs > 1000)!.endMs + 300;
    const file = join(h.dataDir, 'one-turn.wav');
    await ffmpeg(['-i', `${h.corpusDir}/en/mix.wav`, '-t', String(turnEndMs / 1000), file]);
    const accepted = await uploadFile(h.baseUrl, await h.token('service'), file, { language: 'en' });
    assert.is(accepted.status, 202, JSON.stringify(accepted.json));
    assert.is(accepted.json.upload.windows.total, 1);
    for (const deadline = Date.now() + 10000; (await queue.getActiveCount()) === 0; await new Promise((r) => setTimeout(r, 20))) {
      if (Date.now() > deadline) throw new Error('the first worker never took the job');
    }
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    assert.equal(first.transcribed, []);
    second = startWorker(h, queueName);
    const status = await completedStatus(h, accepted.json.id);
    assert.is(status.upload.windows.done, 1);
    assert.equal(second.transcribed, [`${accepted.json.id}.upload.0`]);
    const expected = words.filter((w) => w.endMs <= turnEndMs).map((w) => w.word).join(' ');
    assert.is(wordErrorRate(expected, await transcript(h, accepted.json.id)).wer, 0);
  } finally {
    if (second) await stopWorker(second);
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    connection.disconnect();
    await h.close();
  }
});

test.run();
