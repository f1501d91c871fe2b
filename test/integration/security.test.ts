/**
 * The security review's findings, each against a real gateway (PostgreSQL, the test STT server, real
 * sockets): every test here failed on the code the review read. Limits are set low so that each can be
 * reached quickly; a healthy consultation streams beside the attacks and must come out intact.
 */
import { createSocket } from 'node:dgram';
import { readdir, readFile, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import opus from '@discordjs/opus';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocket } from 'ws';
import { SignJWT } from 'jose';
import { CloseCode } from '../../client-sdk/src/protocol.ts';
import type { VoiceActivityDetector } from '../../src/audio/vad.ts';
import { WebRtcVad } from '../../src/audio/vad.ts';
import { createLogger } from '../../src/log.ts';
import { startHarness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { TEST_JWT_SECRET } from '../support/tokens.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { wordErrorRate } from '../support/wer.ts';
import { loadReference } from '../../scripts/make-corpus.ts';

const logLines: string[] = [];
const logSink = new Writable({ write: (chunk, _encoding, done) => (logLines.push(String(chunk)), done()) });
/** Set to make the next track's (or upload's) VAD throw after a few frames: a defect inside one pipeline. */
let armFaultyStage = false;
const vad = (): VoiceActivityDetector => {
  const real = new WebRtcVad(16000, 2);
  if (!armFaultyStage) return real;
  let frames = 0;
  return { isSpeech: (frame) => (++frames > 25 ? (() => { throw new Error('injected stage failure'); })() : real.isSpeech(frame)) };
};

const h = await startHarness(
  {
    INGEST_MAX_SPEED: '1.5', INGEST_BURST_MS: '20000', MAX_LIVE_TRACKS_PER_TOKEN: '3', MAX_VIEWERS_PER_TOKEN: '2', SESSION_CREATE_PER_MINUTE: '40',
    UPLOAD_BODY_IDLE_TIMEOUT_MS: '1500', END_WAIT_MS: '1500', STT_BACKLOG_MEMORY_S: '1', RTP_IDLE_TIMEOUT_MS: '3000', QUEUE_BACKOFF_MS: '50',
  },
  {},
  'postgres',
  { log: createLogger('debug', logSink), adapters: { vad } },
);
const service = () => h.token('service');

async function api(method: string, path: string, options: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...options.headers };
  if (options.body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
  const response = await fetch(`${h.baseUrl}${path}`, { method, headers, body: typeof options.body === 'string' || options.body === undefined || options.body instanceof Uint8Array ? (options.body as string | undefined) : JSON.stringify(options.body) });
  const text = await response.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

function closeOf(url: string, send: (socket: WebSocket) => void | Promise<void> = () => {}): Promise<{ code: number; reason: string; status?: number }> {
  const socket = new WebSocket(url);
  socket.on('error', () => {});
  return new Promise((resolve) => {
    socket.once('unexpected-response', (_req, res) => resolve({ code: 0, reason: '', status: res.statusCode }));
    socket.once('open', () => void send(socket));
    socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
}

/** `count` RTP packets of SSRC `ssrc` (payload type 111, 20 ms apart in RTP time) from 127.0.0.1. */
async function sendRtp(port: number, ssrc: number, payload: Buffer, count: number): Promise<void> {
  const sender = createSocket('udp4');
  for (let seq = 0; seq < count; seq++) {
    const rtp = Buffer.alloc(12 + payload.length);
    rtp.writeUInt8(0x80, 0);
    rtp.writeUInt8(111, 1);
    rtp.writeUInt16BE(seq, 2);
    rtp.writeUInt32BE(seq * 960, 4);
    rtp.writeUInt32BE(ssrc, 8);
    payload.copy(rtp, 12);
    sender.send(rtp, port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 2));
  }
  sender.close();
}

/** Sends a crafted header, then 60 KB frames of filler (what a demuxer would keep concatenating). */
function sendThenFlood(url: string, header: Buffer): Promise<{ code: number; reason: string }> {
  return closeOf(url, async (socket) => {
    socket.send(header);
    for (let i = 0; i < 40 && socket.readyState === WebSocket.OPEN; i++) {
      socket.send(Buffer.alloc(60000, i));
      await new Promise((r) => setTimeout(r, 5));
    }
  });
}

async function healthzMs(): Promise<number> {
  const started = performance.now();
  await fetch(`${h.baseUrl}/healthz`);
  return performance.now() - started;
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

async function waitFor<T>(probe: () => Promise<T | undefined | false>, timeoutMs = 20000, what = 'condition'): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 50))) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

// A healthy consultation, at 1.4× real time (inside the real-time limit), beside every attack below.
const healthy = (async () => {
  const viewer = await CaptionCollector.connect(h.baseUrl, 'healthy', await h.token('viewer', 'healthy'));
  const token = await h.token('producer', 'healthy');
  const chunks = (await chunksFor({ format: 'webm', file: `${h.corpusDir}/en/doctor` })).filter((c) => c.atMs < 30000);
  const result = await streamChunks(ingestUrl(h.baseUrl, 'healthy', 'doctor', { format: 'webm', role: 'doctor', access_token: token }), chunks, 1.4);
  await viewer.tracksEnded(['doctor'], 120000);
  return { viewer, result };
})();
healthy.catch(() => undefined);

test('#0 a stage that throws ends its own track or upload, never the process: WebSocket, RTP and upload paths', async () => {
  // The healthy track has its own (sound) VAD before any faulty stage is armed: its pipeline, made after the
  // track is stored as live, has taken audio.
  await waitFor(async () => (await api('GET', '/v1/sessions/healthy', { token: await service() })).json?.tracks?.some((t: any) => t.state === 'live' && t.receivedMs > 0), 10000, 'healthy track live');
  const token = await h.token('producer', 'faulty');
  armFaultyStage = true;
  const chunks = await chunksFor({ format: 'pcm16', file: `${h.corpusDir}/en/doctor`, sampleRate: 16000 });
  const ws = await closeOf(ingestUrl(h.baseUrl, 'faulty', 'ws', { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: token }), (socket) => {
    for (const chunk of chunks.slice(0, 200)) socket.send(chunk.data);
  });
  armFaultyStage = false;
  assert.is(ws.code, CloseCode.internalError);
  assert.match(ws.reason, /failed while processing this track/);
  const status = (await api('GET', '/v1/sessions/faulty', { token: await service() })).json;
  assert.match(status.tracks.find((t: any) => t.trackId === 'ws').failure, /injected stage failure/);

  // Plain RTP: the throw happens inside the UDP socket's message handler.
  armFaultyStage = true;
  const opened = await api('POST', '/v1/sessions/faulty/tracks/rtp/rtp?role=patient', { token, body: undefined });
  armFaultyStage = false;
  assert.is(opened.status, 201, opened.text);
  const packet = new opus.OpusEncoder(48000, 1).encode(Buffer.alloc(960 * 2, 1));
  await sendRtp(opened.json.port, 7, packet, 60);
  const failedRtp = await waitFor(async () => (await api('GET', '/v1/sessions/faulty', { token: await service() })).json.tracks.find((t: any) => t.trackId === 'rtp' && t.failure), 10000, 'RTP track failure');
  assert.match(failedRtp.failure, /failed while processing/);

  // WHIP: the throw happens inside werift's RTP subscriber.
  const { RTCPeerConnection, RTCRtpCodecParameters, MediaStreamTrack, RtpHeader, RtpPacket } = await import('werift');
  const pc = new RTCPeerConnection({ codecs: { audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, payloadType: 111 })] }, iceUseIpv6: false });
  const media = new MediaStreamTrack({ kind: 'audio' });
  pc.addTransceiver(media, { direction: 'sendonly' });
  await pc.setLocalDescription(await pc.createOffer());
  armFaultyStage = true;
  const answered = await api('POST', '/v1/sessions/faulty/tracks/whip/whip?role=doctor', { token, body: pc.localDescription!.sdp, headers: { 'content-type': 'application/sdp' } });
  armFaultyStage = false;
  assert.is(answered.status, 201, answered.text);
  await pc.setRemoteDescription({ type: 'answer', sdp: answered.text });
  await waitFor(async () => pc.connectionState === 'connected', 10000, 'WebRTC connected');
  for (let seq = 0; seq < 60; seq++) {
    media.writeRtp(new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: seq, timestamp: seq * 960, marker: false }), packet));
    await new Promise((r) => setTimeout(r, 2));
  }
  const failedWhip = await waitFor(async () => (await api('GET', '/v1/sessions/faulty', { token: await service() })).json.tracks.find((t: any) => t.trackId === 'whip' && t.failure), 10000, 'WHIP track failure');
  assert.match(failedWhip.failure, /failed while processing/);
  await pc.close();

  // Upload: the throw happens inside ffmpeg's stdout handler.
  armFaultyStage = true;
  const upload = await api('POST', '/v1/uploads?id=faulty-upload', { token: await service(), body: await readFile(`${h.corpusDir}/en/doctor.wav`), headers: { 'content-type': 'application/octet-stream' } });
  armFaultyStage = false;
  assert.is(upload.status, 500);
  assert.is(upload.json.error.code, 'processing_failed');
  assert.is((await api('GET', '/v1/sessions/faulty-upload', { token: await service() })).status, 404, 'a failed upload leaves no session');
  assert.is((await fetch(`${h.baseUrl}/healthz`)).status, 200);
});

test('#1 dot-only ids are refused at the API, and no id reaches outside the spool', async () => {
  for (const id of ['..', '.', '...']) {
    const created = await api('POST', '/v1/sessions', { token: await service(), body: { id } });
    assert.is(created.status, 400, `POST id ${id}`);
  }
  const token = await h.token('producer', '..');
  const upgrade = await closeOf(`${h.baseUrl.replace('http', 'ws')}/v1/sessions/%2e%2e/tracks/base/ingest?format=pcm16&sampleRate=16000&role=doctor&access_token=${token}`);
  assert.is.not(upgrade.code, 1000, 'the producer is refused');
  assert.is(await h.gateway.store.getSession('..'), undefined, 'no session `..` was made');
  assert.is((await readdir(h.dataDir)).includes('base'), false, 'nothing was spooled outside the spool');
  assert.is((await api('POST', '/v1/sessions', { token: await service(), body: { id: 'a..b' } })).status, 201, 'dots inside an id are fine');
});

test('#2 concealment flooding (sequence gaps of 50 × 120 ms) is closed with 1008 and does not stall the gateway', async () => {
  const token = await h.token('producer', 'flood');
  const encoder = new opus.OpusEncoder(48000, 1);
  const packet = encoder.encode(Buffer.alloc(2880 * 2, 3)); // 60 ms
  const toc120 = Buffer.concat([Buffer.from([packet[0] | 0x03, 0x02]), packet.subarray(1)]);
  let worstHealthMs = 0;
  const watching = setInterval(() => void healthzMs().then((ms) => (worstHealthMs = Math.max(worstHealthMs, ms))), 50);
  const closed = await closeOf(ingestUrl(h.baseUrl, 'flood', 't', { format: 'opus', role: 'doctor', access_token: token }), async (socket) => {
    for (let i = 0; i < 1000 && socket.readyState === WebSocket.OPEN; i++) {
      const frame = Buffer.alloc(2 + toc120.length);
      frame.writeUInt16BE((i * 51) % 65536, 0);
      toc120.copy(frame, 2);
      socket.send(frame);
    }
  });
  clearInterval(watching);
  assert.is(closed.code, CloseCode.policyViolation);
  assert.match(closed.reason, /faster than real time/);
  assert.ok(worstHealthMs < 1000, `healthz took ${worstHealthMs} ms during the flood`);
});

test('#3 no plaintext audio at rest: the upload while it arrives and its windows while STT is down are sealed, 0600', async () => {
  const wav = await readFile(`${h.corpusDir}/en/patient.wav`);
  const probe = wav.subarray(wav.length >> 1, (wav.length >> 1) + 4096);
  await fetch(`${h.stt.baseUrl.replace(/\/v1$/, '')}/_control/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'status', status: 500, count: 1e9 }) });
  const socket = connect(Number(new URL(h.baseUrl).port), '127.0.0.1');
  const token = await service();
  socket.write(`POST /v1/uploads?id=at-rest HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: application/octet-stream\r\ncontent-length: ${wav.length}\r\n\r\n`);
  socket.write(wav.subarray(0, (wav.length >> 1) + 8192));
  await new Promise((r) => setTimeout(r, 400));
  const whileArriving = await filesUnder(join(h.dataDir, 'uploads'));
  assert.ok(whileArriving.length > 0, 'the upload is being received to disk');
  const answer = new Promise<string>((resolve) => {
    let text = '';
    socket.on('data', (d) => (text += d));
    socket.on('data', () => {
      if (/\r\n\r\n[\s\S]*\}$/.test(text)) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('close', () => resolve(text));
  });
  for (const file of whileArriving) assert.not.ok((await readFile(file)).includes(probe), `${file} holds plaintext audio`);
  socket.write(wav.subarray((wav.length >> 1) + 8192));
  const answered = await answer;
  assert.match(answered, /^HTTP\/1.1 202/, answered.slice(0, 600));
  await waitFor(async () => (await api('GET', '/v1/sessions/at-rest', { token })).json.upload?.deadLetters.length > 0, 20000, 'dead-lettered windows');
  const queued = await filesUnder(join(h.dataDir, 'queue'));
  assert.ok(queued.length > 0, 'dead-lettered windows stay on disk');
  for (const file of [...queued, ...(await filesUnder(join(h.dataDir, 'keys')))]) {
    assert.is((await stat(file)).mode & 0o077, 0, `${file} is readable by others`);
    assert.not.ok((await readFile(file)).includes(probe), `${file} holds plaintext audio`);
  }
  await fetch(`${h.stt.baseUrl.replace(/\/v1$/, '')}/_control/faults`, { method: 'DELETE' });
  assert.is((await api('POST', '/v1/sessions/at-rest/upload/retry', { token })).status, 200);
  await waitFor(async () => (await api('GET', '/v1/sessions/at-rest', { token })).json.upload?.state === 'completed', 30000, 'upload completed');
  assert.is((await filesUnder(join(h.dataDir, 'queue'))).length, 0, 'released window audio is removed');
});

test('#4 a container element that never ends is closed with 1007, not buffered', async () => {
  const token = await h.token('producer', 'crafted');
  // An Ogg page whose lacing table ends in 255: the packet "continues" into every later byte.
  const page = Buffer.alloc(28);
  page.write('OggS', 0);
  page.writeUInt8(1, 26);
  page.writeUInt8(255, 27);
  const closed = await sendThenFlood(ingestUrl(h.baseUrl, 'crafted', 'ogg', { format: 'ogg', role: 'doctor', access_token: token }), page);
  assert.is(closed.code, CloseCode.invalidPayload);
  assert.match(closed.reason, /declares more than/);
  // A WebM SimpleBlock that declares 2^31 − 1 bytes.
  const webm = Buffer.from([0x1a, 0x45, 0xdf, 0xa3, 0x80, 0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x43, 0xb6, 0x75, 0xff, 0xa3, 0x01, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
  const closedWebm = await sendThenFlood(ingestUrl(h.baseUrl, 'crafted', 'webm', { format: 'webm', role: 'doctor', access_token: token }), webm);
  assert.is(closedWebm.code, CloseCode.invalidPayload);
  assert.match(closedWebm.reason, /declares more than/);
});

test('#6 #7 #10 tokens: no exp or a century-long one is refused; caps answer 4429/429; scoped service tokens stay in scope', async () => {
  const key = new TextEncoder().encode(TEST_JWT_SECRET);
  const century = await new SignJWT({ role: 'service' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('100y').sign(key);
  const noExp = await new SignJWT({ role: 'service' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().sign(key);
  assert.is((await api('GET', '/v1/sessions/healthy', { token: century })).status, 401);
  assert.is((await api('GET', '/v1/sessions/healthy', { token: noExp })).status, 401);

  const producer = await h.token('producer', 'caps');
  const sockets: WebSocket[] = [];
  for (let i = 0; i < 3; i++) {
    const socket = new WebSocket(ingestUrl(h.baseUrl, 'caps', `t${i}`, { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: producer }));
    socket.on('error', () => {});
    await new Promise((r) => socket.once('open', r));
    sockets.push(socket);
  }
  const fourth = await closeOf(ingestUrl(h.baseUrl, 'caps', 't3', { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: producer }));
  assert.is(fourth.code, CloseCode.tooMany);
  assert.match(fourth.reason, /retry after/);
  for (const s of sockets) s.close();
  const viewerToken = await h.token('viewer', 'caps');
  const viewers = [await CaptionCollector.connect(h.baseUrl, 'caps', viewerToken), await CaptionCollector.connect(h.baseUrl, 'caps', viewerToken)];
  const third = await closeOf(`${h.baseUrl.replace('http', 'ws')}/v1/sessions/caps/captions?access_token=${viewerToken}`);
  assert.is(third.code, CloseCode.tooMany);
  for (const v of viewers) v.close();

  const creator = await new SignJWT({ role: 'service' }).setProtectedHeader({ alg: 'HS256' }).setSubject('creator').setIssuedAt().setExpirationTime('1h').sign(key);
  let limited;
  for (let i = 0; i < 60 && !limited; i++) {
    const created = await api('POST', '/v1/sessions', { token: creator, body: {} });
    if (created.status === 429) limited = created;
  }
  assert.ok(limited, 'session creation is rate limited');
  assert.ok(Number(limited.headers.get('retry-after')) > 0);
  assert.is(limited.json.error.code, 'rate_limited');

  const scoped = await new SignJWT({ role: 'service', session: 'scope-a' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('1h').sign(key);
  assert.is((await api('POST', '/v1/sessions', { token: scoped, body: { id: 'scope-b', encounterRef: 'x' } })).status, 403);
  assert.is((await api('POST', '/v1/sessions', { token: scoped, body: {} })).status, 403);
  assert.is((await api('GET', '/metrics', { token: scoped })).status, 403);
  assert.is((await api('POST', '/v1/uploads?id=scope-b', { token: scoped, body: 'x', headers: { 'content-type': 'application/octet-stream' } })).status, 403);
  assert.is((await api('POST', '/v1/sessions', { token: scoped, body: { id: 'scope-a' } })).status, 201);
});

test('#8 an early error answer closes the connection; a stalled upload is given up (408) and leaves no file', async () => {
  const port = Number(new URL(h.baseUrl).port);
  const unauthenticated = connect(port, '127.0.0.1');
  unauthenticated.write('POST /v1/uploads HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 10000000\r\n\r\n' + 'x'.repeat(1000));
  let answer401 = '';
  unauthenticated.on('data', (d) => (answer401 += d));
  // The server ends its side (FIN) after answering, instead of waiting for 10 MB that will never come.
  await new Promise<void>((resolve) => unauthenticated.on('end', () => resolve()).on('error', () => resolve()));
  assert.match(answer401, /^HTTP\/1.1 401/);
  unauthenticated.destroy();
  const slow = connect(port, '127.0.0.1');
  slow.write(`POST /v1/uploads?id=stalled HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${await service()}\r\ncontent-type: application/octet-stream\r\ncontent-length: 10000000\r\n\r\n` + 'RIFF');
  const answer = await new Promise<string>((resolve) => {
    let text = '';
    slow.on('data', (d) => (text += d)).on('end', () => resolve(text)).on('error', () => resolve(text));
  });
  slow.destroy();
  assert.match(answer, /^HTTP\/1.1 408/, JSON.stringify(answer));
  assert.match(answer, /body_timeout/);
  assert.is((await filesUnder(join(h.dataDir, 'uploads'))).length, 0);
});

test('#9 STT down: a reconnect is accepted at once, end answers 202 ending, the backlog shows and spills sealed to disk', async () => {
  const control = `${h.stt.baseUrl.replace(/\/v1$/, '')}/_control/faults`;
  await fetch(control, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'status', status: 503, count: 1e9 }) });
  const token = await h.token('producer', 'outage');
  const chunks = await chunksFor({ format: 'pcm16', file: `${h.corpusDir}/en/doctor`, sampleRate: 16000 });
  const first = chunks.filter((c) => c.atMs < 12000);
  await streamChunks(ingestUrl(h.baseUrl, 'outage', 'doctor', { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: token }), first, 0);
  // The closing connection's audio is in within moments; its finals waiting for STT do not hold the track.
  const reconnectStarted = Date.now();
  let again;
  do again = await streamChunks(ingestUrl(h.baseUrl, 'outage', 'doctor', { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: token }), chunks.filter((c) => c.atMs >= 12000 && c.atMs < 20000), 0);
  while (again.closeCode === CloseCode.trackBusy && Date.now() - reconnectStarted < 2000);
  assert.is.not(again.closeCode, CloseCode.trackBusy, 'reconnecting during an STT outage is refused');
  const status = await waitFor(async () => {
    const s = (await api('GET', '/v1/sessions/outage', { token: await service() })).json;
    return s.sttBacklog.windows > 0 && s;
  });
  assert.ok(status.sttBacklog.audioMs > 0);
  const metrics = await waitFor(async () => {
    const text = (await api('GET', '/metrics', { token: await service() })).text;
    return /helssa_stt_backlog_spilled_windows [1-9]/.test(text) && text;
  }, 30000, 'spilled windows');
  assert.match(metrics, /helssa_stt_backlog_windows [1-9]/);
  assert.ok((await filesUnder(join(h.dataDir, 'stt-backlog'))).length > 0);
  for (const file of await filesUnder(join(h.dataDir, 'stt-backlog'))) assert.is((await stat(file)).mode & 0o077, 0);
  const ended = await api('POST', '/v1/sessions/outage/end', { token: await service() });
  assert.is(ended.status, 202);
  assert.is(ended.json.state, 'ending');
  await fetch(control, { method: 'DELETE' });
  await waitFor(async () => (await api('GET', '/v1/sessions/outage', { token: await service() })).json.state === 'completed', 60000, 'completion after STT returns');
  const text = (await api('GET', '/v1/sessions/outage/transcript?format=text', { token: await service() })).text;
  assert.ok(text.split(/\s+/).length > 10, 'the spilled windows were transcribed');
});

test('#5 logs hold no token, participant name, encounter reference or file name', async () => {
  const secretName = 'Zebulon-Quartermain';
  const token = await h.token('producer', 'logged');
  await api('POST', '/v1/sessions', { token: await service(), body: { id: 'logged', encounterRef: 'ENC-998877' } });
  const chunks = (await chunksFor({ format: 'pcm16', file: `${h.corpusDir}/en/doctor`, sampleRate: 16000 })).filter((c) => c.atMs < 4000);
  await streamChunks(ingestUrl(h.baseUrl, 'logged', 'doctor', { format: 'pcm16', sampleRate: 16000, role: 'doctor', participant: secretName, access_token: token }), chunks, 0);
  await api('POST', `/v1/uploads?id=logged-upload&fileName=secret-file-name.wav&encounterRef=ENC-998877&participant=${secretName}`, { token: await service(), body: 'not audio', headers: { 'content-type': 'application/octet-stream' } });
  const log = logLines.join('');
  assert.ok(log.includes('incoming request'), 'requests are logged');
  for (const secret of [token, secretName, 'ENC-998877', 'secret-file-name']) assert.not.ok(log.includes(secret), `the log holds ${secret.slice(0, 20)}`);
});

test('#11 #16 #17 WHIP: many or unbundled sections, no fingerprint: 400 invalid_sdp in our words; DELETE checks the track', async () => {
  const token = await h.token('producer', 'whip');
  const sections = Array.from({ length: 98 }, (_, i) => `m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:${i}\r\na=rtpmap:111 opus/48000/2\r\n`).join('');
  const many = await api('POST', '/v1/sessions/whip/tracks/t1/whip?role=doctor', { token, body: `v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-ufrag:a\r\na=ice-pwd:b\r\na=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\n${sections}`, headers: { 'content-type': 'application/sdp' } });
  assert.is(many.status, 400);
  assert.is(many.json.error.code, 'invalid_sdp');
  const minimal = await api('POST', '/v1/sessions/whip/tracks/t1/whip?role=doctor', { token, body: 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n', headers: { 'content-type': 'application/sdp' } });
  assert.is(minimal.status, 400);
  assert.match(minimal.json.error.message, /fingerprint/);
  const { RTCPeerConnection } = await import('werift');
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', { direction: 'sendonly' });
  await pc.setLocalDescription(await pc.createOffer());
  const answered = await api('POST', '/v1/sessions/whip/tracks/t1/whip?role=doctor', { token, body: pc.localDescription!.sdp, headers: { 'content-type': 'application/sdp' } });
  assert.is(answered.status, 201, answered.text);
  const location = answered.headers.get('location')!;
  assert.is((await api('DELETE', location.replace('/tracks/t1/', '/tracks/t2/'), { token })).status, 404, 'another track cannot end t1');
  assert.is((await api('DELETE', location, { token })).status, 200);
  await pc.close();
});

test('#12 plain RTP binds HOST, answers a reachable host and ignores a foreign SSRC', async () => {
  const token = await h.token('producer', 'rtp-latch');
  const opened = await api('POST', '/v1/sessions/rtp-latch/tracks/t/rtp?role=doctor&ssrc=1234', { token });
  assert.is(opened.status, 201, opened.text);
  assert.is(opened.json.host, '127.0.0.1');
  await sendRtp(opened.json.port, 999, new opus.OpusEncoder(48000, 1).encode(Buffer.alloc(1920, 5)), 50);
  await new Promise((r) => setTimeout(r, 300));
  const track = (await api('GET', '/v1/sessions/rtp-latch', { token: await service() })).json.tracks.find((t: any) => t.trackId === 't');
  assert.is(track.receivedMs, 0, 'a foreign SSRC is not taken');
  assert.is((await api('DELETE', '/v1/sessions/rtp-latch/tracks/t/rtp', { token })).status, 200);
});

test('#13 #14 #15 ranges, control characters and id lengths are refused in the error shape', async () => {
  const token = await h.token('producer', 'ranges');
  const huge = await closeOf(ingestUrl(h.baseUrl, 'ranges', 't', { format: 'pcm16', sampleRate: 16000, role: 'doctor', startMs: 2147483648, access_token: token }));
  assert.is(huge.code, CloseCode.badParameters);
  assert.match(huge.reason, /startMs/);
  const nul = await closeOf(ingestUrl(h.baseUrl, 'ranges', 't', { format: 'pcm16', sampleRate: 16000, role: 'doctor', participant: 'a\u0000b', access_token: token }));
  assert.is(nul.code, CloseCode.badParameters);
  const nulRef = await api('POST', '/v1/sessions', { token: await service(), body: { encounterRef: 'x\u0000y' } });
  assert.is(nulRef.status, 400);
  assert.is(nulRef.json.error.code, 'invalid_request');
  const longest = 'L'.repeat(128);
  assert.is((await api('POST', '/v1/sessions', { token: await service(), body: { id: longest } })).status, 201);
  assert.is((await api('GET', `/v1/sessions/${longest}`, { token: await service() })).status, 200, 'a created session is reachable');
  const tooLong = await api('GET', `/v1/sessions/${'L'.repeat(129)}`, { token: await service() });
  assert.is(tooLong.status, 400);
  const wayTooLong = await api('GET', `/v1/sessions/${'L'.repeat(400)}`, { token: await service() });
  assert.ok(typeof wayTooLong.json?.error?.code === 'string', `${wayTooLong.status} ${wayTooLong.text}`);
  const bigHeader = await api('GET', '/healthz', { headers: { 'x-big': 'y'.repeat(20000) } });
  assert.is(bigHeader.status, 431);
  assert.is(bigHeader.json.error.code, 'headers_too_large');
});

test('#18 ended tracks leave no empty spool directories; the healthy consultation came through whole', async () => {
  const { viewer, result: streamed } = await healthy;
  assert.is(streamed.closeCode, 1000, `the healthy producer was closed: ${streamed.closeCode} ${streamed.closeReason}`);
  const reference = (await loadReference('en')).tracks.doctor.filter((w) => w.endMs < 29000).map((w) => w.word).join(' ');
  const result = wordErrorRate(reference, viewer.transcript());
  assert.ok(result.wer <= 0.05, `healthy WER ${(result.wer * 100).toFixed(2)}%`);
  const token = await h.token('producer', 'spool');
  const chunks = (await chunksFor({ format: 'pcm16', file: `${h.corpusDir}/en/doctor`, sampleRate: 16000 })).filter((c) => c.atMs < 1000);
  for (let i = 0; i < 5; i++) await streamChunks(ingestUrl(h.baseUrl, 'spool', `t${i}`, { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: token }), chunks, 0);
  await waitFor(async () => (await api('GET', '/v1/sessions/spool', { token: await service() })).json.archive.recordings.filter((r: any) => r.state === 'uploaded').length === 5, 20000, 'uploads');
  // The spool is removed just after its recording is marked uploaded.
  await waitFor(async () => !(await readdir(join(h.dataDir, 'spool')).catch((): string[] => [])).includes('spool'), 5000, 'the session spool directory to go');
});

test.after(() => h.close());
test.run();
