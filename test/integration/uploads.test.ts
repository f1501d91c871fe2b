/**
 * Uploaded recordings through a real gateway: every accepted container transcribed (files made from the
 * corpus with ffmpeg), every rejection with its own code and nothing left behind, warnings, progress
 * events, the encrypted original in the archive, and the queue's retry and dead-letter rules on the
 * embedded queue and on BullMQ over the real Redis at 127.0.0.1:6379.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { UploadProgressEvent } from '../../client-sdk/src/protocol.ts';
import { loadReference } from '../../scripts/make-corpus.ts';
import { decryptWithAgeCli } from '../support/age.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { completedTranscript } from '../support/transcripts.ts';
import { encodeFor, ffmpeg, uploadFile } from '../support/upload.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { doubledWords, wordErrorRate } from '../support/wer.ts';

const FORMATS = [
  { format: 'wav', language: 'en' },
  { format: 'mp3', language: 'en' },
  { format: 'm4a', language: 'fa' },
  { format: 'ogg', language: 'fa' },
  { format: 'webm', language: 'ar' },
  { format: 'flac', language: 'ar' },
] as const;

async function waitForState(h: Harness, sessionId: string, done: (status: any) => boolean, timeoutMs = 60000): Promise<any> {
  const token = await h.token('service');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}`, { headers: { authorization: `Bearer ${token}` } })).json();
    if (done(status)) return status;
    if (Date.now() > deadline) throw new Error(`session ${sessionId} did not get there: ${JSON.stringify(status.upload ?? status)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function transcriptText(h: Harness, sessionId: string): Promise<string> {
  const response = await fetch(`${h.baseUrl}/v1/sessions/${sessionId}/transcript?format=text`, { headers: { authorization: `Bearer ${await h.token('service')}` } });
  assert.is(response.status, 200);
  return (await response.text()).split('\n').filter(Boolean).map((line) => line.replace(/^\[[^\]]*\] [^:]*: /, '')).join(' ');
}

async function referenceText(language: string): Promise<string> {
  return (await loadReference(language)).tracks.mix.map((w) => w.word).join(' ');
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

test('every accepted format is transcribed; progress is reported; the original is archived encrypted', async () => {
  // Slow enough STT that the viewer sees windows come in one by one.
  const h = await startHarness({ QUEUE_BACKOFF_MS: '50' }, { latencyMs: 300 });
  try {
    const files = await Promise.all(
      FORMATS.map(async ({ format, language }) => {
        const path = join(h.dataDir, `visit-${language}.${format}`);
        await encodeFor(format, `${h.corpusDir}/${language}/mix.wav`, path);
        return { format, language, path };
      }),
    );
    const viewerSession = `upload-${randomUUID()}`;
    const results = await Promise.all(
      files.map(async ({ format, language, path }, i) => {
        const id = i === 1 ? viewerSession : undefined;
        const response = await uploadFile(h.baseUrl, await h.token('service'), path, { language, fileName: `visit.${format}`, role: 'doctor', participant: 'Dr. Rahimi', ...(id ? { id } : {}) });
        assert.is(response.status, 202, JSON.stringify(response.json));
        assert.is(response.json.upload.format, format);
        assert.equal(response.json.upload.warnings, []);
        assert.ok(response.json.upload.windows.total >= 3, `${format}: ${response.json.upload.windows.total} windows`);
        return { format, language, path, sessionId: response.json.id as string };
      }),
    );
    const viewer = await CaptionCollector.connect(h.baseUrl, viewerSession, await h.token('viewer', viewerSession));
    for (const { format, language, sessionId } of results) {
      const status = await waitForState(h, sessionId, (s) => s.state === 'completed');
      assert.is(status.upload.state, 'completed');
      assert.is(status.upload.windows.done, status.upload.windows.total);
      assert.is(status.tracks[0].format, 'upload');
      const text = await transcriptText(h, sessionId);
      const reference = await referenceText(language);
      const wer = wordErrorRate(reference, text);
      assert.ok(wer.wer <= 0.02, `${format}/${language}: WER ${(wer.wer * 100).toFixed(2)}%`);
      assert.is(doubledWords(reference, text), 0, `${format}: doubled words`);
    }
    // The viewer saw windows come in one by one, and every final of the transcript.
    await viewer.waitFor((e) => e.type === 'session' && e.state === 'ended');
    const progress = viewer.events.filter((e): e is UploadProgressEvent => e.type === 'upload');
    assert.is(progress.at(-1)!.state, 'completed');
    assert.is(progress.at(-1)!.windowsDone, progress.at(-1)!.windowsTotal);
    assert.ok(new Set(progress.map((p) => p.windowsDone)).size >= 2, JSON.stringify(progress));
    assert.is(viewer.transcript(), await transcriptText(h, viewerSession));

    const mp3 = results[1];
    const status = await waitForState(h, mp3.sessionId, (s) => s.archive.recordings[0]?.state === 'uploaded');
    const recording = status.archive.recordings[0];
    assert.match(recording.objectKey, /tracks\/upload\/1\.mp3\.age$/);
    const original = await readFile(mp3.path);
    assert.is(recording.plaintextSha256, createHash('sha256').update(original).digest('hex'));
    const decrypted = join(h.dataDir, 'decrypted.mp3');
    await decryptWithAgeCli(h.identity.file, join(h.dataDir, 'archive', recording.objectKey), decrypted);
    assert.ok((await readFile(decrypted)).equals(original), 'the archive holds the original file byte for byte');
    assert.equal(await filesUnder(join(h.dataDir, 'uploads')), [], 'nothing staged is left');
    assert.equal(await filesUnder(join(h.dataDir, 'queue')), [], 'window audio is released once transcribed');
  } finally {
    await h.close();
  }
});

test('each rejection has its own code and leaves nothing behind; low rate and quiet audio only warn', async () => {
  const h = await startHarness({ UPLOAD_MAX_BYTES: String(4 * 1024 * 1024), UPLOAD_MAX_DURATION_S: '60' });
  try {
    const source = `${h.corpusDir}/en/mix.wav`;
    const path = (name: string) => join(h.dataDir, name);
    await ffmpeg(['-i', source, '-t', '200', '-ar', '48000', path('big.wav')]);
    await encodeFor('mp3', source, path('long.mp3'));
    await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=10', '-t', '3', '-c:v', 'libvpx', path('video-only.webm')]);
    await writeFile(path('notes.mp3'), 'Patient notes: follow up in two weeks.\n'.repeat(50));
    await encodeFor('flac', source, path('cut.flac'), ['-t', '30']);
    await truncate(path('cut.flac'), Math.floor((await stat(path('cut.flac'))).size * 0.6));
    await ffmpeg(['-i', source, '-t', '30', path('cut.wav')]);
    await truncate(path('cut.wav'), Math.floor((await stat(path('cut.wav'))).size * 0.6));
    await writeFile(path('empty.wav'), '');
    await writeFile(path('garbage.ogg'), Buffer.concat([Buffer.from('OggS'), Buffer.alloc(20000, 0x5a)]));
    const cases = [
      ['big.wav', 413, 'file_too_large'],
      ['long.mp3', 422, 'duration_exceeded'],
      ['video-only.webm', 422, 'no_audio_stream'],
      ['notes.mp3', 415, 'unrecognized_format'],
      ['cut.flac', 422, 'truncated'],
      ['cut.wav', 422, 'truncated'],
      ['empty.wav', 400, 'empty_file'],
      ['garbage.ogg', 422, 'undecodable'],
    ] as const;
    const token = await h.token('service');
    for (const [file, status, code] of cases) {
      const response = await uploadFile(h.baseUrl, token, path(file), { id: `rejected-${code}` });
      assert.is(response.status, status, `${file}: ${JSON.stringify(response.json)}`);
      assert.is(response.json.error.code, code, `${file}: ${response.json.error.message}`);
      assert.ok(response.json.error.message.length > 10);
      const session = await fetch(`${h.baseUrl}/v1/sessions/rejected-${code}`, { headers: { authorization: `Bearer ${token}` } });
      assert.is(session.status, 404, `${file}: no session is created`);
    }
    assert.equal(await filesUnder(join(h.dataDir, 'uploads')), []);
    assert.equal(await filesUnder(join(h.dataDir, 'queue')), []);
    assert.equal(await filesUnder(join(h.dataDir, 'spool')), []);
    assert.is(h.stt.calls.filter((c) => c.fileName !== 'probe.wav').length, 0, 'nothing was queued');

    await ffmpeg(['-i', source, '-t', '25', '-ar', '8000', '-filter:a', 'volume=-30dB', path('phone.wav')]);
    const accepted = await uploadFile(h.baseUrl, token, path('phone.wav'), { language: 'en' });
    assert.is(accepted.status, 202, JSON.stringify(accepted.json));
    assert.equal(accepted.json.upload.warnings.map((w: { code: string }) => w.code), ['low_sample_rate', 'quiet_audio']);
    assert.is(accepted.json.upload.sampleRate, 8000);
    assert.ok(accepted.json.upload.meanDbfs < -40, String(accepted.json.upload.meanDbfs));
    await waitForState(h, accepted.json.id, (s) => s.state === 'completed');
  } finally {
    await h.close();
  }
});

for (const queue of ['in-process', 'redis'] as const) {
  test(`${queue} queue: a window that fails twice is retried and completes; one that fails every attempt is dead-lettered, then retried by request`, async () => {
    const env: Record<string, string> = { STT_MAX_RETRIES: '0', QUEUE_BACKOFF_MS: '50', QUEUE_ATTEMPTS: '3' };
    if (queue === 'redis') Object.assign(env, { REDIS_URL: 'redis://127.0.0.1:6379', QUEUE_NAME: `test-${randomUUID()}` });
    const h = await startHarness(env);
    try {
      const file = join(h.dataDir, 'one-turn.wav');
      // The first turn alone: one window, so every STT call belongs to it.
      const words = (await loadReference('en')).tracks.mix;
      const turnEndMs = words.find((w, i) => i + 1 < words.length && words[i + 1].startMs - w.endMs > 1000)!.endMs + 300;
      await ffmpeg(['-i', `${h.corpusDir}/en/mix.wav`, '-t', String(turnEndMs / 1000), file]);
      const token = await h.token('service');
      h.stt.faults.push({ kind: 'status', status: 500, count: 2 });
      const first = await uploadFile(h.baseUrl, token, file, { language: 'en' });
      assert.is(first.status, 202, JSON.stringify(first.json));
      assert.is(first.json.upload.windows.total, 1);
      const retried = await waitForState(h, first.json.id, (s) => s.state === 'completed');
      assert.is(retried.upload.windows.done, 1);
      assert.is(h.stt.calls.filter((c) => c.status === 500).length, 2);
      assert.ok((await transcriptText(h, first.json.id)).split(' ').length > 3);

      h.stt.faults.push({ kind: 'status', status: 500, count: 3 });
      const second = await uploadFile(h.baseUrl, token, file, { language: 'en' });
      const dead = await waitForState(h, second.json.id, (s) => s.upload.state === 'needs_attention');
      assert.is(dead.upload.deadLetters.length, 1);
      assert.is(dead.upload.deadLetters[0].attempts, 3);
      assert.match(dead.upload.deadLetters[0].error, /500/);
      assert.is(dead.state, 'active', 'a dead-lettered window holds the transcript back');
      const retry = await fetch(`${h.baseUrl}/v1/sessions/${second.json.id}/upload/retry`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      assert.equal(await retry.json(), { requeued: 1 });
      const completed = await waitForState(h, second.json.id, (s) => s.state === 'completed');
      assert.equal(completed.upload.deadLetters, []);
      assert.is(await transcriptText(h, second.json.id), await transcriptText(h, first.json.id));
    } finally {
      await h.close();
    }
  });
}

for (const queue of ['in-process', 'redis'] as const) {
  test(`${queue} queue: a gateway restarted mid-upload carries on where it stopped, with no word lost or doubled`, async () => {
    const env: Record<string, string> = { UPLOAD_WORKERS: '1', SHUTDOWN_DRAIN_MS: '0' };
    if (queue === 'redis') Object.assign(env, { REDIS_URL: 'redis://127.0.0.1:6379', QUEUE_NAME: `test-${randomUUID()}` });
    const h = await startHarness(env, { latencyMs: 700 });
    try {
      const file = join(h.dataDir, 'visit.ogg');
      await encodeFor('ogg', `${h.corpusDir}/fa/mix.wav`, file);
      const accepted = await uploadFile(h.baseUrl, await h.token('service'), file, { language: 'fa' });
      assert.is(accepted.status, 202, JSON.stringify(accepted.json));
      const total = accepted.json.upload.windows.total;
      const midway = await waitForState(h, accepted.json.id, (s) => s.lastSeq >= 1);
      assert.ok(midway.lastSeq < total, 'stopped before the last window');
      await h.restart();
      const status = await waitForState(h, accepted.json.id, (s) => s.state === 'completed');
      assert.is(status.upload.windows.done, total);
      const reference = await referenceText('fa');
      const text = await transcriptText(h, accepted.json.id);
      assert.is(wordErrorRate(reference, text).wer, 0, text);
    } finally {
      await h.close();
    }
  });
}

test('an upload whose analysis outlasts the connection idle timeout still gets its answer', async () => {
  // RNNoise over the whole visit (100 s of audio) takes seconds to decode and cut; the connection is quiet
  // meanwhile, and HTTP_IDLE_TIMEOUT_MS (1 s here) used to close it under the client before the 202.
  const h = await startHarness({ HTTP_IDLE_TIMEOUT_MS: '1000', AUDIO_NOISE_SUPPRESSION: 'rnnoise' });
  try {
    const response = await uploadFile(h.baseUrl, await h.token('service'), `${h.corpusDir}/en/doctor.wav`, { language: 'en' });
    assert.is(response.status, 202, JSON.stringify(response.json));
    const reference = (await loadReference('en')).tracks.doctor.map((w) => w.word).join(' ');
    assert.is(wordErrorRate(reference, await completedTranscript(h, response.json.id)).wer, 0);
  } finally {
    await h.close();
  }
});

test.run();
