/**
 * The encrypted recording archive against a real S3 server (s3rver): objects decrypted with Debian's
 * stock `age` CLI and checked with ffprobe; only ciphertext in the spool; a 10 s storage outage; storage
 * far away and storage that stalls, behind a proxy.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { IngestFormat } from '../../client-sdk/src/protocol.ts';
import { decryptWithAgeCli } from '../support/age.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { FlakyProxy } from '../support/flaky-proxy.ts';
import { S3_BUCKET, S3_CREDENTIALS, S3Server } from '../support/s3-server.ts';

const run = promisify(execFile);
const s3 = await new S3Server().start();
const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: S3_CREDENTIALS });

interface Recording {
  trackId: string;
  state: string;
  objectKey: string;
  plaintextSha256: string;
  durationMs: number;
}

async function status(h: Harness, sessionId: string) {
  return (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}`, { headers: { authorization: `Bearer ${await h.token('service')}` } })).json();
}

async function waitForUploads(h: Harness, sessionId: string, count: number, timeoutMs = 60000): Promise<Recording[]> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { archive } = await status(h, sessionId);
    const uploaded = (archive.recordings as Recording[]).filter((r) => r.state === 'uploaded');
    if (uploaded.length === count && !archive.behind) return uploaded;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('recordings were not uploaded in time');
}

/** Downloads, decrypts with the age CLI, probes: returns duration (ms) and plaintext SHA-256. */
async function fetchAndProbe(h: Harness, key: string): Promise<{ durationMs: number; sha256: string; codec: string; container: string }> {
  const object = await client.send(new GetObjectCommand({ Bucket: S3_BUCKET, Key: key }));
  const encrypted = join(h.dataDir, `${createHash('md5').update(key).digest('hex')}.ogg.age`);
  await writeFile(encrypted, await object.Body!.transformToByteArray());
  const decrypted = encrypted.replace(/\.age$/, '');
  await decryptWithAgeCli(h.identity.file, encrypted, decrypted);
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'format=duration,format_name:stream=codec_name', '-of', 'json', decrypted]);
  const probe = JSON.parse(stdout);
  await run('ffmpeg', ['-v', 'error', '-xerror', '-i', decrypted, '-f', 'null', '-']);
  return {
    durationMs: Number(probe.format.duration) * 1000,
    sha256: createHash('sha256').update(await readFile(decrypted)).digest('hex'),
    codec: probe.streams[0].codec_name,
    container: probe.format.format_name,
  };
}

async function streamTrack(h: Harness, sessionId: string, track: 'doctor' | 'patient', language: string, format: IngestFormat, speed: number, sampleRate?: number) {
  const chunks = await chunksFor({ format, file: `${h.corpusDir}/${language}/${track}`, sampleRate });
  const result = await streamChunks(ingestUrl(h.baseUrl, sessionId, track, { format, sampleRate, role: track, access_token: await h.token('producer', sessionId) }), chunks, speed);
  assert.equal(result.closeCode, 1000);
  return chunks.at(-1)!.atMs;
}

async function spoolFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

test('tracks are archived to S3 as Ogg Opus that the age CLI decrypts; only ciphertext is ever spooled', async () => {
  const h = await startHarness(s3.env);
  try {
    const streaming = Promise.all([streamTrack(h, 'archived', 'doctor', 'en', 'webm', 20), streamTrack(h, 'archived', 'patient', 'en', 'pcm16', 20, 16000)]);
    await new Promise((r) => setTimeout(r, 2000));
    const spooled = await spoolFiles(join(h.dataDir, 'spool'));
    assert.ok(spooled.some((f) => f.includes('/slices/')), 'one-second slices are being written');
    // A file listed may be gone when read: its track ended and the upload emptied the spool.
    let checked = 0;
    for (const file of spooled) {
      const bytes = await readFile(file).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? undefined : Promise.reject(error)));
      if (!bytes) continue;
      const head = bytes.subarray(0, 21).toString('latin1');
      assert.equal(head, 'age-encryption.org/v1', `${file} is age ciphertext`);
      checked++;
    }
    assert.ok(checked > 0, 'spooled files were read');
    const [doctorMs, patientMs] = await streaming;
    await fetch(`${h.baseUrl}/v1/sessions/archived/end`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` } });
    const recordings = await waitForUploads(h, 'archived', 2);
    for (const recording of recordings) {
      const probe = await fetchAndProbe(h, recording.objectKey);
      const streamedMs = recording.trackId === 'doctor' ? doctorMs : patientMs;
      assert.equal(probe.codec, 'opus');
      assert.match(probe.container, /ogg/);
      assert.ok(Math.abs(probe.durationMs - streamedMs) <= 100, `${recording.trackId}: archived ${probe.durationMs} ms vs streamed ${streamedMs} ms`);
      assert.equal(probe.sha256, recording.plaintextSha256, 'the recorded plaintext hash matches');
    }
    assert.equal(await spoolFiles(join(h.dataDir, 'spool')), [], 'the spool is emptied once uploads succeed');
  } finally {
    await h.close();
  }
});

test('S3 down for 10 s mid-stream: audio keeps flowing, status says the archive is behind, it uploads when storage returns', async () => {
  const h = await startHarness(s3.env);
  try {
    const streaming = streamTrack(h, 'outage', 'doctor', 'fa', 'opus', 8);
    await new Promise((r) => setTimeout(r, 1500));
    await s3.stop();
    const stoppedAt = Date.now();
    const streamedMs = await streaming;
    await fetch(`${h.baseUrl}/v1/sessions/outage/end`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` } });
    let behind;
    for (let i = 0; i < 100; i++) {
      behind = (await status(h, 'outage')).archive;
      if (behind.lastError) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(behind.behind, 'status says the archive is behind');
    assert.ok(behind.lastError, `the upload error is visible (${behind.lastError})`);
    await new Promise((r) => setTimeout(r, Math.max(0, 10000 - (Date.now() - stoppedAt))));
    await s3.start();
    const [recording] = await waitForUploads(h, 'outage', 1, 60000);
    const probe = await fetchAndProbe(h, recording.objectKey);
    assert.ok(Math.abs(probe.durationMs - streamedMs) <= 100, `nothing lost: archived ${probe.durationMs} ms vs streamed ${streamedMs} ms`);
  } finally {
    await h.close();
  }
});

test('the gateway shuts down while six tracks stream their slices to storage far away (100 ms each way): every recording is sealed within the drain', async () => {
  const proxy = await FlakyProxy.start(Number(new URL(s3.endpoint).port));
  proxy.delayMs = 100;
  // A slice a second per track, 8 a second at this speed, streamed one track after another: the rounds
  // fall behind. A track's seal used to wait for the whole round in progress, longer than the drain.
  const h = await startHarness({ ...s3.env, S3_ENDPOINT: proxy.url, ARCHIVE_STREAM_MS: '1000', SHUTDOWN_DRAIN_MS: '5000' });
  try {
    const tracks = ['far-1', 'far-2', 'far-3'].flatMap((sessionId) => (['doctor', 'patient'] as const).map((track) => ({ sessionId, track })));
    const producers = Promise.all(
      tracks.map(async ({ sessionId, track }) => {
        const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/ar/${track}` });
        return streamChunks(ingestUrl(h.baseUrl, sessionId, track, { format: 'opus', role: track, access_token: await h.token('producer', sessionId) }), chunks, 8);
      }),
    );
    await new Promise((r) => setTimeout(r, 6000));
    await h.gateway.close();
    await producers;
    // Sealed: its whole file uploaded, or spooled with its seal (complete.json) for the next start.
    const sealed = new Set<string>();
    for (const file of await spoolFiles(join(h.dataDir, 'spool'))) {
      const match = /\/(far-\d)\/(doctor|patient)\/\d+\/complete\.json$/.exec(file);
      if (match) sealed.add(`${match[1]}/${match[2]}`);
    }
    const listed = await client.send(new ListObjectsV2Command({ Bucket: S3_BUCKET, Prefix: 'sessions/far-' }));
    for (const { Key } of listed.Contents ?? []) {
      const match = /^sessions\/(far-\d)\/tracks\/(doctor|patient)\/\d+\.ogg\.age$/.exec(Key!);
      if (match) sealed.add(`${match[1]}/${match[2]}`);
    }
    assert.equal([...sealed].sort(), tracks.map(({ sessionId, track }) => `${sessionId}/${track}`).sort());
  } finally {
    await h.close();
    await proxy.close();
  }
});

test('storage stalls mid-stream (its connections open, nothing answered): the requests time out and go again, and the recording arrives whole', async () => {
  const proxy = await FlakyProxy.start(Number(new URL(s3.endpoint).port));
  const h = await startHarness({ ...s3.env, S3_ENDPOINT: proxy.url, ARCHIVE_STREAM_MS: '1000', S3_TIMEOUT_MS: '2000' });
  try {
    const streaming = streamTrack(h, 'stalled', 'doctor', 'fa', 'opus', 8);
    // The connections the SDK keeps open stop forwarding for good; new ones get through.
    await new Promise((r) => setTimeout(r, 3000));
    proxy.stall();
    const streamedMs = await streaming;
    await fetch(`${h.baseUrl}/v1/sessions/stalled/end`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` } });
    // Without a timeout the request in flight on a stalled connection, and the seal waiting for it, never end.
    const [recording] = await waitForUploads(h, 'stalled', 1, 30000);
    const probe = await fetchAndProbe(h, recording.objectKey);
    assert.ok(Math.abs(probe.durationMs - streamedMs) <= 100, `nothing lost: archived ${probe.durationMs} ms vs streamed ${streamedMs} ms`);
  } finally {
    // First the proxy: it cuts the stalled connections, which nothing else would end without the timeout.
    await proxy.close();
    await h.close();
  }
});

test.after(async () => {
  client.destroy();
  await s3.destroy();
});
test.run();
