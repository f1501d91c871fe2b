/**
 * Fuzzing every network input of a real gateway (PostgreSQL, the test STT server, loopback sockets):
 * the four WebSocket ingest formats, uploads of every format, WHIP offers, RTP datagrams, and the JSON
 * bodies and query strings of the REST routes. Inputs are made by fast-check from a fixed seed: random
 * bytes, and real streams and files truncated, bit-flipped or with lying headers.
 *
 * After each kind: the process is up (/healthz), every answer or close code is a documented one (never a
 * 5xx, never 1011), a healthy consultation streaming beside the fuzz comes out whole, the live heap after
 * GC returns near its baseline (RSS is reported: V8 and the allocator keep pages they grew into), and what
 * the gateway holds open returns to its baseline. `scale` multiplies the counts (`npm run fuzz` runs a longer pass);
 * `FUZZ_MEMORY=1` prints the process's memory after each kind of input.
 */
import { createSocket } from 'node:dgram';
import { readFile, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { WebSocket } from 'ws';
import { INGEST_FORMATS } from '../../client-sdk/src/protocol.ts';
import { loadReference } from '../../scripts/make-corpus.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { encodeFor } from '../support/upload.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { wordErrorRate } from '../support/wer.ts';

export interface FuzzReport {
  counts: Record<string, number>;
  total: number;
  /** Inputs answered with something undocumented (a 5xx, a 1011), with a sample of each. */
  failures: string[];
  healthyWer: number;
  rssGrowthMb: number;
  heapGrowthMb: number;
  /** Sessions the fuzz created (or opened tracks in) that stay loaded: active ones are kept by design. */
  loadedSessions: number;
  heldBefore: Record<string, number>;
  heldAfter: Record<string, number>;
}

const MAX_FRAME = 65536;
const WS_CLOSES = new Set([1000, 1005, 1006, 1007, 1008, 1009, 4400, 4409, 4429]);
const UPLOAD_STATUSES = new Set([202, 400, 408, 409, 413, 415, 422]);
const WHIP_STATUSES = new Set([201, 400, 409, 415, 422]);

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** What the gateway holds open: HTTP/WebSocket connections, WebRTC peers, RTP ports, child processes. */
async function held(h: Harness): Promise<Record<string, number>> {
  const connections = await new Promise<number>((resolve) => h.gateway.app.server.getConnections((_e, n) => resolve(n)));
  const resources = process.getActiveResourcesInfo();
  return { connections, ...h.gateway.transports(), udpSockets: resources.filter((r) => r.startsWith('UDP')).length, childProcesses: resources.filter((r) => r === 'ProcessWrap').length };
}

function mutate(bytes: Buffer, seed: number): Buffer {
  return fc.sample<Buffer>(
    fc.oneof(
      fc.integer({ min: 0, max: bytes.length }).map((cut) => bytes.subarray(0, cut)),
      fc.array(fc.tuple(fc.nat({ max: Math.max(0, bytes.length - 1) }), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 20 }).map((flips) => {
        const copy = Buffer.from(bytes);
        for (const [at, bit] of flips) if (copy.length) copy[at] ^= 1 << bit;
        return copy;
      }),
      // A lying header: a length or size field in the first bytes set to something huge.
      fc.tuple(fc.integer({ min: 0, max: Math.min(64, Math.max(0, bytes.length - 4)) }), fc.constantFrom(0xffffffff, 0x7fffffff, 0, 1)).map(([at, value]) => {
        const copy = Buffer.from(bytes);
        if (copy.length >= at + 4) copy.writeUInt32LE(value, at);
        return copy;
      }),
      fc.uint8Array({ maxLength: 4096 }).map((b) => Buffer.from(b)),
    ),
    { seed, numRuns: 1 },
  )[0];
}

export async function runNetworkFuzz(scale: number, seed = 20261127): Promise<FuzzReport> {
  const h = await startHarness({ INGEST_MAX_FRAME_BYTES: String(MAX_FRAME), INGEST_MAX_SPEED: '1.5', INGEST_BURST_MS: '20000', RTP_IDLE_TIMEOUT_MS: '2000', MAX_LIVE_TRACKS_PER_TOKEN: '1000', MAX_CONNECTIONS_PER_IP: '100000', QUEUE_ATTEMPTS: '1' });
  const counts: Record<string, number> = { websocket: 0, upload: 0, whip: 0, rtp: 0, json: 0, query: 0 };
  const failures: string[] = [];
  const fail = (kind: string, what: string) => {
    if (failures.length < 50) failures.push(`${kind}: ${what}`);
  };
  const service = await h.token('service');
  const work = await mkdtemp(join(tmpdir(), 'helssa-fuzz-'));
  try {
    const healthy = streamHealthy(h);
    await new Promise((r) => setTimeout(r, 500));
    gc();
    const rssBefore = process.memoryUsage().rss;
    const heapBefore = process.memoryUsage().heapUsed;
    const heldBefore = await held(h);

    const memory = (stage: string) => {
      if (!process.env.FUZZ_MEMORY) return;
      gc();
      const m = process.memoryUsage();
      console.log(`  after ${stage}: rss ${(m.rss / 2 ** 20).toFixed(0)} MB, heap ${(m.heapUsed / 2 ** 20).toFixed(0)} MB, external ${(m.external / 2 ** 20).toFixed(0)} MB, arrayBuffers ${(m.arrayBuffers / 2 ** 20).toFixed(0)} MB`);
    };
    memory('start');
    await fuzzRest(h, service, scale, seed, counts, fail);
    memory('REST');
    await fuzzRtp(h, scale, seed, counts, fail);
    memory('RTP');
    await fuzzWebSocket(h, scale, seed, counts, fail);
    memory('WebSocket');
    await fuzzWhip(h, scale, seed, counts, fail);
    memory('WHIP');
    await fuzzUploads(h, service, scale, seed, work, counts, fail);
    memory('uploads');

    const healthyWer = await healthy;
    if ((await fetch(`${h.baseUrl}/healthz`)).status !== 200) fail('process', '/healthz does not answer');
    // Keep-alive connections of this process's own fetch client are not the gateway's: close idle ones.
    h.gateway.app.server.closeIdleConnections();
    await new Promise((r) => setTimeout(r, 2500));
    gc();
    const rssGrowthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    const heapGrowthMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    const heldAfter = await held(h);
    return { counts, total: Object.values(counts).reduce((a, b) => a + b, 0), failures, healthyWer, rssGrowthMb, heapGrowthMb, loadedSessions: h.gateway.registry.loaded, heldBefore, heldAfter };
  } finally {
    await h.close();
    await rm(work, { recursive: true, force: true });
  }
}

/** A consultation track at 1.25× real time through the whole fuzz run; resolves with its WER. */
async function streamHealthy(h: Harness): Promise<number> {
  const viewer = await CaptionCollector.connect(h.baseUrl, 'fuzz-healthy', await h.token('viewer', 'fuzz-healthy'));
  const chunks = (await chunksFor({ format: 'ogg', file: `${h.corpusDir}/fa/patient` })).filter((c) => c.atMs <= 40000);
  await streamChunks(ingestUrl(h.baseUrl, 'fuzz-healthy', 'patient', { format: 'ogg', role: 'patient', access_token: await h.token('producer', 'fuzz-healthy') }), chunks, 1.25);
  await viewer.tracksEnded(['patient'], 120000);
  viewer.close();
  const reference = (await loadReference('fa')).tracks.patient.filter((w) => w.endMs <= Math.max(...chunks.map((c) => c.atMs)) - 1000).map((w) => w.word).join(' ');
  return wordErrorRate(reference, viewer.transcript()).wer;
}

type Fail = (kind: string, what: string) => void;

async function fuzzRest(h: Harness, service: string, scale: number, seed: number, counts: Record<string, number>, fail: Fail): Promise<void> {
  const bodies = fc.sample(fc.oneof(fc.json(), fc.jsonValue().map((v) => JSON.stringify(v)), fc.record({ id: fc.string(), encounterRef: fc.string(), language: fc.string() }, { requiredKeys: [] }).map((v) => JSON.stringify(v)), fc.string()), { seed, numRuns: 600 * scale });
  for (const body of bodies) {
    counts.json++;
    const response = await fetch(`${h.baseUrl}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json' }, body });
    const text = await response.text();
    if (response.status >= 500) fail('json', `${response.status} for ${body.slice(0, 80)}`);
    else if (!(response.status === 201 ? JSON.parse(text).id : JSON.parse(text).error?.code)) fail('json', `undocumented body for ${body.slice(0, 80)}`);
  }
  const routes = [
    ['GET', '/v1/sessions/ID'], ['GET', '/v1/sessions/ID/transcript'], ['POST', '/v1/sessions/ID/end'], ['POST', '/v1/uploads'],
    ['POST', '/v1/sessions/ID/tracks/T/rtp'], ['POST', '/v1/sessions/ID/upload/retry'], ['GET', '/metrics'],
  ] as const;
  const queries = fc.sample(
    fc.record({
      route: fc.constantFrom(...routes),
      id: fc.oneof(fc.constantFrom('..', '.', 'fuzz', 'L'.repeat(129), '%00', 'a%2Fb', '%2e%2e'), fc.string({ minLength: 1, maxLength: 20 }).map(encodeURIComponent)),
      params: fc.array(fc.tuple(fc.constantFrom('format', 'role', 'id', 'participant', 'language', 'after', 'startMs', 'priority', 'payloadType', 'ssrc', 'source', 'fileName', 'x'), fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('doctor', 'json', 'vtt', '-1', '1e99', '\u0000', '2147483648'))), { maxLength: 5 }),
    }),
    { seed: seed + 1, numRuns: 600 * scale },
  );
  for (const { route, id, params } of queries) {
    counts.query++;
    const query = params.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
    const path = route[1].replace('ID', id).replace('T', 't');
    const response = await fetch(`${h.baseUrl}${path}?${query}`, { method: route[0], headers: { authorization: `Bearer ${service}`, ...(route[1] === '/v1/uploads' ? { 'content-type': 'application/octet-stream' } : {}) }, body: route[0] === 'POST' && route[1] === '/v1/uploads' ? '' : undefined });
    const text = await response.text();
    if (response.status >= 500) fail('query', `${response.status} ${route[0]} ${path}?${query}: ${text.slice(0, 120)}`);
    if (response.status === 201 && route[1].endsWith('/rtp')) await fetch(`${h.baseUrl}${path}`, { method: 'DELETE', headers: { authorization: `Bearer ${service}` } });
  }
}

async function fuzzRtp(h: Harness, scale: number, seed: number, counts: Record<string, number>, fail: Fail): Promise<void> {
  const token = await h.token('producer', 'fuzz-rtp');
  const opened = await fetch(`${h.baseUrl}/v1/sessions/fuzz-rtp/tracks/t/rtp?role=doctor`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  if (opened.status !== 201) return fail('rtp', `could not open a port: ${opened.status}`);
  const { port } = (await opened.json()) as { port: number };
  const valid = Buffer.from([0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0xfc, 0xff, 0xfe]);
  const socket = createSocket('udp4');
  const datagrams = fc.sample(fc.oneof(fc.uint8Array({ maxLength: 1500 }).map((b) => Buffer.from(b)), fc.nat().map((s) => mutate(valid, s)), fc.tuple(fc.integer({ min: 0, max: 65535 }), fc.uint8Array({ maxLength: 400 })).map(([seq, payload]) => {
    const packet = Buffer.concat([valid.subarray(0, 12), Buffer.from(payload)]);
    packet.writeUInt16BE(seq, 2);
    return packet;
  })), { seed: seed + 2, numRuns: 3000 * scale });
  for (const [i, datagram] of datagrams.entries()) {
    counts.rtp++;
    socket.send(datagram, port, '127.0.0.1');
    if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
  }
  socket.close();
  await new Promise((r) => setTimeout(r, 300));
  await fetch(`${h.baseUrl}/v1/sessions/fuzz-rtp/tracks/t/rtp`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
  if ((await fetch(`${h.baseUrl}/healthz`)).status !== 200) fail('rtp', 'gateway down after RTP fuzz');
}

async function fuzzWebSocket(h: Harness, scale: number, seed: number, counts: Record<string, number>, fail: Fail): Promise<void> {
  const real: Record<string, Buffer> = {};
  for (const format of INGEST_FORMATS) {
    const chunks = await chunksFor({ format, file: `${h.corpusDir}/en/doctor`, sampleRate: 16000 });
    real[format] = Buffer.concat(chunks.slice(0, 40).map((c) => c.data));
  }
  const token = await h.token('producer', 'fuzz-ws');
  const cases = fc.sample(
    fc.record({
      format: fc.constantFrom(...INGEST_FORMATS, 'mp3'),
      frames: fc.array(fc.oneof(fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b)), fc.nat().map((s) => s), fc.integer({ min: 0, max: MAX_FRAME + 1 }).map((size) => Buffer.alloc(size, size & 0xff))), { minLength: 1, maxLength: 12 }),
    }),
    { seed: seed + 3, numRuns: 300 * scale },
  );
  // The security review's crafted streams lead the corpus: a never-ending Ogg page, a WebM block of
  // 2^31 − 1 bytes, and 120 ms Opus packets with sequence gaps of 50 (concealment flooding).
  const oggPage = Buffer.alloc(28);
  oggPage.write('OggS', 0);
  oggPage.writeUInt8(1, 26);
  oggPage.writeUInt8(255, 27);
  const webmBlock = Buffer.from([0x1a, 0x45, 0xdf, 0xa3, 0x80, 0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x43, 0xb6, 0x75, 0xff, 0xa3, 0x01, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
  const flood = Array.from({ length: 400 }, (_, i) => Buffer.concat([Buffer.from([((i * 51) >> 8) & 0xff, (i * 51) & 0xff]), Buffer.from([0xfb, 0x02]), Buffer.alloc(38, 1)]));
  const crafted = [
    { format: 'ogg', frames: [oggPage, ...Array.from({ length: 30 }, () => Buffer.alloc(60000, 7))] },
    { format: 'webm', frames: [webmBlock, ...Array.from({ length: 30 }, () => Buffer.alloc(60000, 7))] },
    { format: 'opus', frames: flood },
  ];
  for (const [i, c] of [...crafted, ...cases].entries()) {
    counts.websocket++;
    const frames = c.frames.map((f) => (typeof f === 'number' ? mutate(real[c.format] ?? real.webm, f) : f));
    const url = ingestUrl(h.baseUrl, 'fuzz-ws', `t${i}`, { format: c.format, sampleRate: 16000, role: 'doctor', access_token: token });
    const code = await new Promise<number>((resolve) => {
      const socket = new WebSocket(url);
      socket.on('error', () => {});
      socket.once('unexpected-response', (request) => {
        request.destroy();
        resolve(1000);
      });
      socket.once('open', () => {
        for (const frame of frames) if (socket.readyState === WebSocket.OPEN) socket.send(frame);
        setTimeout(() => socket.readyState === WebSocket.OPEN && socket.close(1000), 20);
      });
      socket.once('close', (closeCode) => resolve(closeCode));
    });
    if (!WS_CLOSES.has(code)) fail('websocket', `close ${code} for ${c.format} with ${frames.length} frames`);
  }
}

async function fuzzWhip(h: Harness, scale: number, seed: number, counts: Record<string, number>, fail: Fail): Promise<void> {
  const { RTCPeerConnection } = await import('werift');
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', { direction: 'sendonly' });
  await pc.setLocalDescription(await pc.createOffer());
  const lines = pc.localDescription!.sdp.split('\r\n');
  await pc.close();
  const token = await h.token('producer', 'fuzz-whip');
  const offers = fc.sample(fc.oneof(
    fc.array(fc.nat({ max: lines.length - 1 }), { maxLength: 6 }).map((drop) => lines.filter((_, i) => !drop.includes(i)).join('\r\n')),
    fc.tuple(fc.nat({ max: lines.length - 1 }), fc.string({ maxLength: 60 })).map(([at, text]) => lines.map((l, i) => (i === at ? text : l)).join('\r\n')),
    fc.integer({ min: 1, max: 120 }).map((n) => [...lines, ...Array.from({ length: n }, (_, i) => `m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:x${i}`)].join('\r\n')),
    fc.string({ maxLength: 500 }),
  ), { seed: seed + 4, numRuns: 100 * scale });
  for (const offer of offers) {
    counts.whip++;
    const response = await fetch(`${h.baseUrl}/v1/sessions/fuzz-whip/tracks/t/whip?role=doctor`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/sdp' }, body: offer });
    const text = await response.text();
    if (!WHIP_STATUSES.has(response.status)) fail('whip', `${response.status}: ${text.slice(0, 120)}`);
    const location = response.headers.get('location');
    if (response.status === 201 && location) await fetch(`${h.baseUrl}${location}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
  }
}

async function fuzzUploads(h: Harness, service: string, scale: number, seed: number, work: string, counts: Record<string, number>, fail: Fail): Promise<void> {
  const originals: Buffer[] = [];
  for (const format of ['wav', 'mp3', 'ogg', 'webm', 'm4a', 'flac']) {
    const target = join(work, `short.${format}`);
    await encodeFor(format, `${h.corpusDir}/en/patient.wav`, target, ['-t', '3']);
    originals.push(await readFile(target));
  }
  const inputs = fc.sample(fc.tuple(fc.nat({ max: originals.length - 1 }), fc.nat()), { seed: seed + 5, numRuns: 24 * scale });
  for (const [which, mutation] of inputs) {
    counts.upload++;
    const body = new Uint8Array(mutate(originals[which], mutation));
    const response = await fetch(`${h.baseUrl}/v1/uploads`, { method: 'POST', headers: { authorization: `Bearer ${service}`, 'content-type': 'application/octet-stream' }, body });
    const text = await response.text();
    if (!UPLOAD_STATUSES.has(response.status)) fail('upload', `${response.status}: ${text.slice(0, 160)}`);
  }
}
