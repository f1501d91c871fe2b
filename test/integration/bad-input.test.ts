/**
 * Bad input against a real gateway: each is answered with a clear close code or status, while a healthy
 * consultation streams alongside and must come out intact.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocket } from 'ws';
import { CloseCode, type ErrorEvent, type SessionEvent } from '../../client-sdk/src/protocol.ts';
import { loadReference } from '../../scripts/make-corpus.ts';
import { startHarness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { wordErrorRate } from '../support/wer.ts';

const h = await startHarness({ INGEST_MAX_FRAME_BYTES: '65536' });
const producer = (session: string) => h.token('producer', session);

/** Opens an ingest socket, sends the given messages, and reports how the server closed it. */
async function closeOf(url: string, messages: (Buffer | string)[] = []): Promise<{ code: number; reason: string }> {
  const socket = new WebSocket(url);
  socket.on('error', () => {});
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve) => socket.once('open', resolve));
  for (const m of messages) socket.send(m);
  return closed;
}

/** The HTTP status an upgrade was refused with. */
async function refusedWith(url: string, headers: Record<string, string> = {}): Promise<number> {
  const socket = new WebSocket(url, { headers });
  socket.on('error', () => {});
  return new Promise((resolve) => {
    socket.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    socket.once('open', () => resolve(101));
  });
}

// A healthy consultation that runs in parallel with everything below, paced at 4× real time.
const healthy = (async () => {
  const viewer = await CaptionCollector.connect(h.baseUrl, 'healthy', await h.token('viewer', 'healthy'));
  const token = await producer('healthy');
  await Promise.all(
    (['doctor', 'patient'] as const).map(async (track) =>
      streamChunks(ingestUrl(h.baseUrl, 'healthy', track, { format: 'webm', role: track, access_token: token }), await chunksFor({ format: 'webm', file: `${h.corpusDir}/en/${track}` }), 4),
    ),
  );
  await viewer.tracksEnded(['doctor', 'patient']);
  return viewer;
})();

test('unknown format, missing sample rate, bad role: close 4400 with the reason', async () => {
  const token = await producer('bad');
  const unknown = await closeOf(ingestUrl(h.baseUrl, 'bad', 't1', { format: 'mp3', role: 'doctor', access_token: token }));
  assert.equal(unknown.code, CloseCode.badParameters);
  assert.match(unknown.reason, /format must be one of webm, ogg, opus, pcm16/);
  const noRate = await closeOf(ingestUrl(h.baseUrl, 'bad', 't1', { format: 'pcm16', role: 'doctor', access_token: token }));
  assert.equal(noRate.code, CloseCode.badParameters);
  assert.match(noRate.reason, /sampleRate 16000 or 48000/);
  const badRole = await closeOf(ingestUrl(h.baseUrl, 'bad', 't1', { format: 'ogg', role: 'nurse', access_token: token }));
  assert.equal(badRole.code, CloseCode.badParameters);
  assert.match(badRole.reason, /role must be doctor or patient/);
});

test('garbage frames: 1007 invalid payload, naming the container', async () => {
  const token = await producer('bad');
  const garbage = Buffer.from('this is not a media container at all, just text bytes'.repeat(20));
  const webm = await closeOf(ingestUrl(h.baseUrl, 'bad', 'g1', { format: 'webm', role: 'doctor', access_token: token }), [garbage]);
  assert.equal(webm.code, CloseCode.invalidPayload);
  assert.match(webm.reason, /not a valid WebM\/Opus stream/);
  const ogg = await closeOf(ingestUrl(h.baseUrl, 'bad', 'g2', { format: 'ogg', role: 'doctor', access_token: token }), [garbage]);
  assert.equal(ogg.code, CloseCode.invalidPayload);
  assert.match(ogg.reason, /not a valid Ogg\/Opus stream/);
  const short = await closeOf(ingestUrl(h.baseUrl, 'bad', 'g3', { format: 'opus', role: 'doctor', access_token: token }), [Buffer.from([1])]);
  assert.equal(short.code, CloseCode.invalidPayload);
  const notOpus = Array.from({ length: 60 }, (_, seq) => Buffer.from([seq >> 8, seq & 0xff, 0xff, 0xff, 0xff]));
  const opus = await closeOf(ingestUrl(h.baseUrl, 'bad', 'g4', { format: 'opus', role: 'doctor', access_token: token }), notOpus);
  assert.equal(opus.code, CloseCode.invalidPayload);
  assert.match(opus.reason, /not Opus/);
  // Packets the codec rejected are not written into the recording (their TOC bytes would claim minutes).
  let recording: { trackId: string; durationMs: number | null } | undefined;
  for (let i = 0; i < 50 && recording?.durationMs == null; i++) {
    const status = await (await fetch(`${h.baseUrl}/v1/sessions/bad`, { headers: { authorization: `Bearer ${await h.token('service')}` } })).json();
    recording = status.archive.recordings.find((r: { trackId: string }) => r.trackId === 'g4');
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(recording!.durationMs, 0);
});

test('oversized frame: 1009; text frame: 4400', async () => {
  const token = await producer('bad');
  const big = await closeOf(ingestUrl(h.baseUrl, 'bad', 'o1', { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: token }), [Buffer.alloc(65537)]);
  assert.equal(big.code, CloseCode.messageTooBig);
  const text = await closeOf(ingestUrl(h.baseUrl, 'bad', 'o2', { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: token }), ['hello']);
  assert.equal(text.code, CloseCode.badParameters);
  assert.match(text.reason, /binary/);
});

test('tokens: missing or forged → 401, wrong role or session → 403, on WebSocket and REST', async () => {
  const url = (token?: string) => ingestUrl(h.baseUrl, 'auth', 't', { format: 'ogg', role: 'doctor', access_token: token });
  assert.equal(await refusedWith(url()), 401);
  assert.equal(await refusedWith(url('forged.token.value')), 401);
  assert.equal(await refusedWith(url(await h.token('producer', 'another-session'))), 403);
  assert.equal(await refusedWith(url(await h.token('viewer', 'auth'))), 403);
  assert.equal(await refusedWith(url(), { authorization: `Bearer ${await producer('auth')}` }), 101, 'Authorization header works too');
  const captions = `${h.baseUrl.replace('http', 'ws')}/v1/sessions/auth/captions`;
  assert.equal(await refusedWith(captions), 401);
  assert.equal(await refusedWith(`${captions}?access_token=${await h.token('producer', 'auth')}`), 403);
  const rest = await fetch(`${h.baseUrl}/v1/sessions/healthy`);
  assert.equal(rest.status, 401);
  assert.equal((await rest.json()).error.code, 'unauthenticated');
  const otherSession = await fetch(`${h.baseUrl}/v1/sessions/healthy`, { headers: { authorization: `Bearer ${await h.token('viewer', 'auth')}` } });
  assert.equal(otherSession.status, 403);
  const unknown = await fetch(`${h.baseUrl}/v1/sessions/nope`, { headers: { authorization: `Bearer ${await h.token('service')}` } });
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).error.code, 'session_not_found');
  const metrics = await fetch(`${h.baseUrl}/metrics`, { headers: { authorization: `Bearer ${await h.token('viewer', 'auth')}` } });
  assert.equal(metrics.status, 403);
});

test('a second producer on a live track: 4409', async () => {
  const token = await producer('busy');
  const first = new WebSocket(ingestUrl(h.baseUrl, 'busy', 'mic', { format: 'ogg', role: 'doctor', access_token: token }));
  await new Promise((resolve) => first.once('open', resolve));
  const second = await closeOf(ingestUrl(h.baseUrl, 'busy', 'mic', { format: 'ogg', role: 'doctor', access_token: token }));
  assert.equal(second.code, CloseCode.trackBusy);
  first.close();
});

test('STT down: viewers told, windows kept; STT back: every word arrives', async () => {
  await h.stt.stop();
  const viewer = await CaptionCollector.connect(h.baseUrl, 'outage', await h.token('viewer', 'outage'));
  const streamed = streamChunks(
    ingestUrl(h.baseUrl, 'outage', 'doctor', { format: 'ogg', role: 'doctor', access_token: await producer('outage') }),
    await chunksFor({ format: 'ogg', file: `${h.corpusDir}/fa/doctor` }),
    0,
  );
  const error = (await viewer.waitFor((e) => e.type === 'error', 30000)) as ErrorEvent;
  assert.equal(error.code, 'stt_unavailable');
  await viewer.waitFor((e) => e.type === 'session' && e.stt === 'degraded');
  assert.equal((await streamed).closeCode, 1000, 'the producer is not disconnected by an STT outage');
  await h.stt.start();
  await viewer.tracksEnded(['doctor'], 90000);
  const reference = await loadReference('fa');
  const result = wordErrorRate(reference.tracks.doctor.map((w) => w.word).join(' '), viewer.transcript());
  assert.ok(result.wer <= 0.02, `nothing lost across the outage (WER ${(result.wer * 100).toFixed(2)}%)`);
  assert.equal((viewer.events.filter((e) => e.type === 'session').at(-1) as SessionEvent).stt, 'ok');
  viewer.close();
});

test('noise that fools the VAD draws a hallucination from STT; it never reaches captions', async () => {
  const hallucinating = await startHarness({}, { hallucinateOnSilence: true });
  try {
    const viewer = await CaptionCollector.connect(hallucinating.baseUrl, 'noise', await hallucinating.token('viewer', 'noise'));
    let seed = 1;
    const chunks = Array.from({ length: 300 }, (_, i) => {
      const samples = new Int16Array(320);
      const burst = i % 75 >= 25 && i % 75 < 55; // 600 ms bursts of loud noise, 900 ms of silence
      for (let k = 0; k < samples.length; k++) {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        samples[k] = burst ? Math.round((seed / 2 ** 31 - 0.5) * 12000) : 0;
      }
      return { data: Buffer.from(samples.buffer), atMs: (i + 1) * 20 };
    });
    const url = ingestUrl(hallucinating.baseUrl, 'noise', 'mic', { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: await hallucinating.token('producer', 'noise') });
    await streamChunks(url, chunks, 0);
    await viewer.tracksEnded(['mic']);
    const answered = hallucinating.stt.calls.filter((c) => c.status === 200 && c.text.length > 0);
    assert.ok(answered.length > 0, 'the recognizer was asked and hallucinated');
    assert.equal(viewer.finals.length, 0, 'no hallucinated final');
    assert.ok(viewer.events.every((e) => e.type !== 'partial' || (e.stable === '' && e.unstable === '')), 'no hallucinated partial');
    viewer.close();
  } finally {
    await hallucinating.close();
  }
});

test('the server stayed up and the healthy session came through intact', async () => {
  const viewer = await healthy;
  const reference = await loadReference('en');
  const result = wordErrorRate(reference.tracks.mix.map((w) => w.word).join(' '), viewer.transcript());
  assert.equal(result.wer, 0, `healthy session WER ${(result.wer * 100).toFixed(2)}%`);
  assert.equal((await fetch(`${h.baseUrl}/healthz`)).status, 200);
  viewer.close();
});

test.after(() => h.close());
test.run();
