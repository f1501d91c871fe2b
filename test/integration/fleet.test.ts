/**
 * Many gateways, one service: three gateway processes sharing PostgreSQL and Redis behind nginx (the
 * repository's configuration), a fresh fleet per test.
 *  - A two-track visit with its producers on different instances and viewers on every instance; the
 *    instance holding no track is killed mid-visit and its viewers come back through nginx with `?after=`;
 *    then Redis is killed and restarted (empty) mid-visit.
 *  - Failover: the instance holding the doctor's producer (the SDK's ResumableIngest, through nginx) is
 *    killed mid-visit; the producer comes back through nginx to another instance, which takes the track
 *    over from where its finals were stored.
 *  - Drain: the instance holding the doctor gets SIGTERM; it refuses new producers (503, nginx moves on).
 *  - Producers that cannot resend (raw WebSocket `opus`, as WHIP or RTP would be): two gateways killed in
 *    the middle of the doctor's turn; the audio they held past the stored finals (the track tails in
 *    Redis) is transcribed by the gateway a producer reaches next, or at the session's end for a producer
 *    that never comes back.
 * gw-2's wall clock runs 2 s ahead (libfaketime) in every test.
 * Every viewer sees every final once, gap-free and in seq order; the session is ended through nginx
 * (whichever instance nginx picks merges both tracks, once); the stored transcript is the visit's.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FinalEvent } from '../../client-sdk/src/protocol.ts';
import type { TranscriptDocument } from '../../client-sdk/src/protocol.ts';
import { ensureCorpus, loadReference } from '../../scripts/make-corpus.ts';
import { createTestIdentity } from '../support/age.ts';
import { createTestDatabase, type TestDatabase } from '../support/databases.ts';
import { startGatewayProcess, startNginx, startPostgres, startRedis, type FleetGateway, type Nginx, type PostgresServer, type RedisServer } from '../support/fleet.ts';
import { WebSocket } from 'ws';
import { ResumableIngest, type IngestState } from '../../client-sdk/src/resumable-ingest.ts';
import { FlakyProxy } from '../support/flaky-proxy.ts';
import { chunksFor, ingestUrl, resumableFrames, streamChunks } from '../support/producer.ts';
import { SttServer } from '../support/stt-server.ts';
import { signToken, TEST_JWT_SECRET } from '../support/tokens.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { doubledWords, wordErrorRate } from '../support/wer.ts';

const TRACKS = ['doctor', 'patient'] as const;
/** Streamed this many times faster than real time. */
const SPEED = 4;
/** One instance's wall clock is this far off. */
const CLOCK_OFF_S = 2;
/** What two processes' reads of the same clock may differ by (libfaketime's shift is exact). */
const CLOCK_SLACK_MS = 50;

let stt: SttServer;
let database: TestDatabase;
let dataDir: string;
let gateways: FleetGateway[] = [];
let nginx: Nginx;
let redis: RedisServer;
let corpusDir: string;

async function api(baseUrl: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${await signToken({ role: 'service' })}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : undefined };
}

/** The instance holding a track live, as the store says. */
async function ownerOf(sessionId: string, trackId: string): Promise<string | undefined> {
  const sql = postgres(database.env.DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<{ owner: string | null }[]>`select owner from tracks where session_id = ${sessionId} and track_id = ${trackId}`;
    return rows[0]?.owner ?? undefined;
  } finally {
    await sql.end();
  }
}

/** The gateway that holds a track live, once the store names one (within 5 s). */
async function holderOf(sessionId: string, trackId: string): Promise<FleetGateway> {
  let owner: string | undefined;
  for (let i = 0; i < 100 && !owner; i++) {
    owner = await ownerOf(sessionId, trackId);
    if (!owner) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const holder = gateways.find((g) => g.id === owner);
  assert.ok(holder, `${sessionId}'s ${trackId} is held by an instance (${owner})`);
  return holder!;
}

/** The finals' seqs, checked gap-free from `from` and each once. */
function assertGapFree(label: string, finals: FinalEvent[], from: number, to: number): void {
  const seqs = finals.map((f) => f.seq);
  assert.equal(seqs, Array.from({ length: to - from + 1 }, (_, i) => from + i), `${label}: every final from ${from} to ${to} once, in order`);
}

test.before(async () => {
  corpusDir = await ensureCorpus();
  stt = await new SttServer({ corpusDir }).start();
});

test.after(async () => {
  await stt?.stop();
});

/** Three gateways on a fresh database (or `own`, a private PostgreSQL) behind nginx; `stopFleet` ends them. */
async function startFleet(own?: PostgresServer): Promise<void> {
  database = own ? { driver: 'postgres', env: { DATABASE_URL: own.url }, release: () => own.remove() } : await createTestDatabase('postgres');
  redis = await startRedis();
  dataDir = await mkdtemp(join(tmpdir(), 'helssa-fleet-'));
  const identity = await createTestIdentity();
  const env = {
    ...database.env,
    REDIS_URL: redis.url,
    // One key-encryption key for the fleet: each gateway reads the audio another sealed (track tails).
    AT_REST_KEY: randomBytes(32).toString('base64'),
    ARCHIVE_RECIPIENTS: identity.recipient,
    JWT_SECRET: TEST_JWT_SECRET,
    STT_BASE_URL: stt.baseUrl,
    OPENAI_API_KEY: 'test-key',
    LOG_LEVEL: process.env.FLEET_LOG_LEVEL ?? 'error',
    STT_SPEECH_CHECK: 'off',
    INGEST_MAX_SPEED: '100',
    RATE_LIMIT_PER_MINUTE: '1000000',
    RATE_LIMIT_PER_IP_PER_MINUTE: '10000000',
    INGEST_CONNECTIONS_PER_MINUTE: '1000000',
    FLEET_LEASE_MS: '3000',
    // A connection gone silent is noticed within 3 s, and waits 3 s for its producer to resume.
    WS_HEARTBEAT_MS: '3000',
    PRODUCER_RESUME_MS: '3000',
    // One archive for the fleet (the local object store standing for S3), live slices streamed every second.
    ARCHIVE_DIR: join(dataDir, 'archive'),
    ARCHIVE_STREAM_MS: '1000',
    // Each live track's audio past its stored finals in Redis every 250 ms (1 s of this test's audio).
    TRACK_TAIL_MS: '250',
  };
  // gw-2's wall clock runs 2 s ahead (a machine whose clock drifted): leases and seqs come from PostgreSQL's clock, so nothing may change.
  gateways = await Promise.all(['gw-1', 'gw-2', 'gw-3'].map((id) => startGatewayProcess(id, { ...env, DATA_DIR: join(dataDir, id) }, id === 'gw-2' ? CLOCK_OFF_S : 0)));
  nginx = await startNginx(gateways.map((g) => g.port));
}

async function stopFleet(): Promise<void> {
  await nginx?.stop();
  await Promise.all(gateways.map((g) => g.stop()));
  await redis?.kill();
  await database?.release();
  await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

/** Runs a test on a fresh fleet, stopped whatever happens. */
async function withFleet(run: () => Promise<void>, own?: PostgresServer): Promise<void> {
  await startFleet(own);
  try {
    await run();
  } finally {
    await stopFleet();
  }
}

/**
 * A caption viewer that, when its instance dies, comes back through nginx with `?after=` its last
 * final (as the captions page does): its finals are those of every connection in turn.
 */
class ReturningViewer {
  readonly connections: CaptionCollector[];
  private readonly sessionId: string;
  private readonly token: string;

  constructor(first: CaptionCollector, sessionId: string, token: string) {
    this.connections = [first];
    this.sessionId = sessionId;
    this.token = token;
  }

  get finals(): FinalEvent[] {
    return this.connections.flatMap((c) => c.finals);
  }

  get current(): CaptionCollector {
    return this.connections.at(-1)!;
  }

  /** Reconnects through nginx if the connection died; returns whether it did. */
  async returnIfCut(): Promise<boolean> {
    const cut = await Promise.race([this.current.closed().then(() => true), new Promise<false>((resolve) => setTimeout(resolve, 300, false))]);
    if (!cut) return false;
    this.connections.push(await CaptionCollector.connect(nginx.baseUrl, this.sessionId, this.token, this.finals.at(-1)?.seq ?? 0));
    return true;
  }

  close(): void {
    for (const c of this.connections) c.close();
  }
}

/**
 * Waits for every viewer to see both tracks ended, ends the session through nginx, and checks what every
 * visit here must give: merged once, stored finals 1..N, each viewer's finals 1..N once and in order,
 * WER ≤ 2 % and no word doubled. Returns the transcript, its final count and the WER.
 */
async function endAndCheck(sessionId: string, viewers: Record<string, ReturningViewer>): Promise<{ doc: TranscriptDocument; stored: number; wer: number }> {
  for (const viewer of Object.values(viewers)) await viewer.current.tracksEnded([...TRACKS], 60000);
  const ended = await api(nginx.baseUrl, 'POST', `/v1/sessions/${sessionId}/end`);
  assert.is(ended.status, 200, JSON.stringify(ended.json));
  assert.is(ended.json.state, 'completed');
  const doc = (await api(nginx.baseUrl, 'GET', `/v1/sessions/${sessionId}/transcript`)).json as TranscriptDocument;
  assert.is(doc.version, 1, 'merged once');
  const stored = doc.segments.length;
  assert.equal([...doc.segments.map((s) => s.seq)].sort((a, b) => a - b), Array.from({ length: stored }, (_, i) => i + 1), 'stored finals numbered 1..N across instances');
  assert.is(new Set(doc.segments.map((s) => s.trackId)).size, 2, 'both tracks in the transcript');
  for (const [name, viewer] of Object.entries(viewers)) {
    await viewer.current.waitFor((e) => e.type === 'final' && e.seq === stored, 10000);
    assertGapFree(`viewer ${name} (${viewer.connections.length} connections)`, viewer.finals, 1, stored);
  }
  const reference = (await loadReference('en')).tracks.mix.map((w) => w.word).join(' ');
  const merged = doc.segments.flatMap((s) => s.words).sort((a, b) => a.startMs - b.startMs).map((w) => w.word).join(' ');
  const wer = wordErrorRate(reference, merged);
  assert.is(doubledWords(reference, merged), 0, 'no doubled words');
  assert.ok(wer.wer <= 0.02, `WER ${(wer.wer * 100).toFixed(2)} %\n  ref: ${reference}\n  hyp: ${merged}`);
  return { doc, stored, wer: wer.wer };
}

/** Each gateway's viewer, named by its gateway. */
const byGateway = (viewers: ReturningViewer[]): Record<string, ReturningViewer> => Object.fromEntries(viewers.map((v, i) => [`on ${gateways[i].id}`, v]));

/** Every instance is ready while PostgreSQL and Redis answer (gw-2 too, its clock off). */
async function assertReady(): Promise<void> {
  for (const gateway of gateways) {
    const before = Date.now();
    const response = await fetch(`${gateway.baseUrl}/readyz`);
    const after = Date.now();
    assert.is(response.status, 200);
    // The Date header has whole seconds: the gateway read its clock within [second, second + 1 s), at a moment
    // between `before` and `after` here. (Compared as one number it was 1001 ms off now and then, and failed.)
    const second = Date.parse(response.headers.get('date')!);
    const offMs = gateway.id === 'gw-2' ? CLOCK_OFF_S * 1000 : 0;
    assert.ok(second - after - CLOCK_SLACK_MS <= offMs && offMs < second + 1000 - before + CLOCK_SLACK_MS, `${gateway.id}'s clock read ${second} (whole seconds) between ${before} and ${after} here: not ${offMs} ms off`);
    const body = await response.json();
    assert.equal([body.instance, body.database, body.redis, body.draining], [gateway.id, true, true, false]);
  }
}

test('a visit across three instances behind nginx: producers on two, viewers on all, one killed mid-visit; every final once, merged once', () => withFleet(async () => {
  await assertReady();
  const sessionId = 'fleet-visit';
  assert.is((await api(nginx.baseUrl, 'POST', '/v1/sessions', { id: sessionId, language: 'en' })).status, 201);
  const viewerToken = await signToken({ role: 'viewer', session: sessionId });
  const producerToken = await signToken({ role: 'producer', session: sessionId });
  const chunks = Object.fromEntries(await Promise.all(TRACKS.map(async (t) => [t, await chunksFor({ format: 'opus', file: `${corpusDir}/en/${t}` })] as const)));

  // The doctor streams through nginx (its hash picks the instance); the patient straight to another one.
  const doctor = streamChunks(ingestUrl(nginx.baseUrl, sessionId, 'doctor', { format: 'opus', role: 'doctor', access_token: producerToken }), chunks.doctor, SPEED);
  const doctorHome = await holderOf(sessionId, 'doctor');
  const [patientHome, bystander] = gateways.filter((g) => g !== doctorHome);
  const patient = streamChunks(ingestUrl(patientHome.baseUrl, sessionId, 'patient', { format: 'opus', role: 'patient', access_token: producerToken }), chunks.patient, SPEED);

  const watch = async (baseUrl: string) => new ReturningViewer(await CaptionCollector.connect(baseUrl, sessionId, viewerToken), sessionId, viewerToken);
  const viewers: Record<string, ReturningViewer> = {
    [`on ${doctorHome.id} (doctor)`]: await watch(doctorHome.baseUrl),
    [`on ${patientHome.id} (patient)`]: await watch(patientHome.baseUrl),
    [`on ${bystander.id} (killed)`]: await watch(bystander.baseUrl),
    'through nginx': await watch(nginx.baseUrl),
  };
  try {
    await viewers[`on ${bystander.id} (killed)`].current.waitFor((e) => e.type === 'final' && e.seq >= 4, 60000);
    await bystander.kill();
    const returned = await Promise.all(Object.values(viewers).map((v) => v.returnIfCut()));
    assert.ok(returned[2], "the killed instance's viewer lost its connection and came back");
    // Redis dies and comes back (empty) mid-visit: finals published meanwhile reach the other instances
    // from the store; readiness says what is missing while it is down.
    await redis.kill();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const down = await (await fetch(`${doctorHome.baseUrl}/readyz`)).json();
    assert.equal([down.status, down.redis, down.database], ['unavailable', false, true], 'not ready without Redis');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await redis.start();

    const streamed = await Promise.all([doctor, patient]);
    assert.ok(streamed.every((s) => s.closeCode === 1000), `producers closed normally (${streamed.map((s) => s.closeCode)})`);
    const { stored, wer } = await endAndCheck(sessionId, viewers);
    console.log(`fleet: doctor on ${doctorHome.id}, patient on ${patientHome.id}, ${bystander.id} killed; ${stored} finals, WER ${(wer * 100).toFixed(2)} %; viewers' connections: ${Object.values(viewers).map((v) => v.connections.length).join(', ')}`);
  } finally {
    for (const viewer of Object.values(viewers)) viewer.close();
  }
}));

/** Every stored final of the session, in seq order (late ones included, also after the merge). */
async function storedFinals(sessionId: string): Promise<{ seq: number; words: { word: string; startMs: number }[] }[]> {
  const sql = postgres(database.env.DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    return await sql`select seq, words from segments where session_id = ${sessionId} order by seq`;
  } finally {
    await sql.end();
  }
}

/** Streams a corpus track through the SDK's ResumableIngest at SPEED, through `baseUrl` (its buffer a minute of real time offline, at SPEED). */
async function resumableProducer(baseUrl: string, sessionId: string, track: string, token: string) {
  const { frames, format } = await resumableFrames('opus', `${corpusDir}/en/${track}`);
  const states: IngestState[] = [];
  const ingest = new ResumableIngest({ url: ingestUrl(baseUrl, sessionId, track, { role: track, access_token: token }), format, WebSocket: WebSocket as unknown as typeof globalThis.WebSocket, ackTimeoutMs: 1500, maxBufferMs: 60000 * SPEED, onState: (state) => states.push(state) });
  const started = performance.now();
  let atMs = 0;
  const done = (async () => {
    for (const [i, frame] of frames.entries()) {
      ingest.push(frame.payload, frame.durationMs);
      atMs += frame.durationMs;
      if (i % 5 === 4) {
        const due = started + atMs / SPEED - performance.now();
        if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
      }
    }
    await ingest.end();
  })();
  return { done, states, droppedMs: () => ingest.droppedMs, progressMs: () => atMs, totalMs: frames.reduce((n, f) => n + f.durationMs, 0) };
}

test('failover: the instance holding the doctor is killed mid-visit; the producer comes back through nginx to another, nothing is lost or doubled', () => withFleet(async () => {
  const sessionId = 'fleet-failover';
  assert.is((await api(nginx.baseUrl, 'POST', '/v1/sessions', { id: sessionId, language: 'en' })).status, 201);
  const viewerToken = await signToken({ role: 'viewer', session: sessionId });
  const producerToken = await signToken({ role: 'producer', session: sessionId });
  const producers = Object.fromEntries(await Promise.all(TRACKS.map(async (t) => [t, await resumableProducer(nginx.baseUrl, sessionId, t, producerToken)] as const)));
  const victim = await holderOf(sessionId, 'doctor');
  const viewers = await Promise.all(gateways.map(async (g) => new ReturningViewer(await CaptionCollector.connect(g.baseUrl, sessionId, viewerToken), sessionId, viewerToken)));
  try {
    while (producers.doctor.progressMs() < producers.doctor.totalMs * 0.4) await new Promise((resolve) => setTimeout(resolve, 50));
    const killedAtMs = producers.doctor.progressMs();
    await victim.kill();
    await Promise.all(viewers.map((v) => v.returnIfCut()));
    let newOwner: string | undefined;
    for (let i = 0; i < 200 && (!newOwner || newOwner === victim.id); i++) {
      newOwner = await ownerOf(sessionId, 'doctor');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(newOwner && newOwner !== victim.id, `another instance took the doctor's track over (${newOwner})`);
    await Promise.all(TRACKS.map((t) => producers[t].done));
    assert.ok(producers.doctor.states.includes('reconnecting'), `the doctor's producer reconnected (${producers.doctor.states.join(',')})`);
    assert.is(producers.doctor.droppedMs(), 0, "the doctor's producer kept all its audio while it reconnected");
    const { doc, stored, wer } = await endAndCheck(sessionId, byGateway(viewers));
    // The killed instance's recording of the doctor is what it streamed before it died.
    const status = (await api(nginx.baseUrl, 'GET', `/v1/sessions/${sessionId}`)).json;
    const cut = status.archive.recordings.find((r: { trackId: string; epoch: number }) => r.trackId === 'doctor' && r.epoch === 1);
    assert.equal([cut.kind, cut.state], ['slices', 'uploaded'], JSON.stringify(cut));
    assert.match(cut.note, /stopped; its recording ends with the last slice streamed/);
    const manifest = JSON.parse(await readFile(join(dataDir, 'archive', cut.objectKey), 'utf8')) as { slices: string[] };
    assert.is(manifest.slices.length * 1000, cut.durationMs, 'the manifest lists the slices streamed');
    // Streamed every second of wall time, which is SPEED seconds of this test's audio; plus the slice being
    // written (1 s of audio) and the archive worker's lag (up to half a second of wall time, as in the
    // persistence test).
    const recordingLostMs = killedAtMs - cut.durationMs;
    assert.ok(recordingLostMs <= 1000 * SPEED + 1000 + 500 * SPEED, `the killed connection's recording lost ${recordingLostMs} ms of audio`);
    const resumed = status.archive.recordings.find((r: { trackId: string; epoch: number }) => r.trackId === 'doctor' && r.epoch === 2);
    assert.is(resumed?.kind, 'full', 'the connection that took over is archived whole');
    // A connection that ended normally is one whole file; the slices streamed while it was live are gone.
    let whole;
    for (let i = 0; i < 100 && whole?.state !== 'uploaded'; i++) {
      whole = (await api(nginx.baseUrl, 'GET', `/v1/sessions/${sessionId}`)).json.archive.recordings.find((r: { trackId: string; epoch: number }) => r.trackId === 'doctor' && r.epoch === 2);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.is(whole.state, 'uploaded');
    assert.ok(existsSync(join(dataDir, 'archive', whole.objectKey)), 'the whole recording is stored');
    assert.not.ok(existsSync(join(dataDir, 'archive', whole.objectKey.replace(/ogg\.age$/, 'recovered'))), 'its streamed slices are deleted');
    const doctorWer = wordErrorRate((await loadReference('en')).tracks.doctor.map((w) => w.word).join(' '), doc.segments.filter((s) => s.trackId === 'doctor').flatMap((s) => s.words).sort((a, b) => a.startMs - b.startMs).map((w) => w.word).join(' '));
    console.log(`failover: ${victim.id} killed at ${(killedAtMs / 1000).toFixed(1)} s of the doctor's audio; the doctor went on at ${newOwner}; ${stored} finals, WER ${(wer * 100).toFixed(2)} % (doctor's track ${(doctorWer.wer * 100).toFixed(2)} %, ${doctorWer.deletions} words lost); its recording kept ${cut.durationMs / 1000} s (${recordingLostMs} ms lost)`);
  } catch (error) {
    for (const [i, viewer] of viewers.entries()) console.error(`viewer on ${gateways[i].id}: finals ${viewer.finals.map((f) => f.seq).join(',')}; last state ${JSON.stringify(viewer.current.events.filter((e) => e.type === 'session').at(-1))}`);
    for (const t of TRACKS) console.error(`${t} producer: ${producers[t].states.join(',')}`);
    const sql = postgres(database.env.DATABASE_URL, { max: 1, onnotice: () => {} });
    console.error(JSON.stringify(await sql`select track_id, state, owner, epoch, received_ms from tracks`), victim.id);
    await sql.end();
    throw error;
  } finally {
    for (const viewer of viewers) viewer.close();
  }
}));

test("drain: the instance holding the doctor gets SIGTERM mid-visit; it finishes what it had, refuses the producer's reconnection (503), nginx sends it to another; nothing lost or doubled", () => withFleet(async () => {
  const sessionId = 'fleet-drain';
  assert.is((await api(nginx.baseUrl, 'POST', '/v1/sessions', { id: sessionId, language: 'en' })).status, 201);
  const viewerToken = await signToken({ role: 'viewer', session: sessionId });
  const producerToken = await signToken({ role: 'producer', session: sessionId });
  const producers = Object.fromEntries(await Promise.all(TRACKS.map(async (t) => [t, await resumableProducer(nginx.baseUrl, sessionId, t, producerToken)] as const)));
  const draining = await holderOf(sessionId, 'doctor');
  const viewers = await Promise.all(gateways.map(async (g) => new ReturningViewer(await CaptionCollector.connect(g.baseUrl, sessionId, viewerToken), sessionId, viewerToken)));
  try {
    while (producers.doctor.progressMs() < producers.doctor.totalMs * 0.4) await new Promise((resolve) => setTimeout(resolve, 50));
    const stopped = draining.stop();
    // From the signal until it stops listening (0: refused), it is not ready and takes no new producer.
    const answers = new Set<string>();
    for (let exited = false; !exited; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      exited = draining.process.exitCode !== null;
      const readiness = await fetch(`${draining.baseUrl}/readyz`).then((r) => r.status, () => 0);
      const producer = await fetch(`${draining.baseUrl}/v1/sessions/${sessionId}/tracks/doctor/ingest`, { headers: { authorization: `Bearer ${producerToken}` } }).then((r) => r.status, () => 0);
      // The signal may not have arrived for the first probe.
      if (answers.size > 0 || readiness !== 200) answers.add(`readyz ${readiness}, producer ${producer}`);
    }
    await stopped;
    assert.is(draining.process.exitCode, 0, 'the instance stopped cleanly');
    const refused = [...answers];
    assert.ok(refused.every((a) => /^readyz (503|0), producer (503|0)$/.test(a)), `while draining: ${refused.join('; ')}`);
    await Promise.all(viewers.map((v) => v.returnIfCut()));
    await Promise.all(TRACKS.map((t) => producers[t].done));
    assert.ok(producers.doctor.states.includes('reconnecting'), `the doctor's producer reconnected (${producers.doctor.states.join(',')})`);
    const { stored, wer } = await endAndCheck(sessionId, byGateway(viewers));
    console.log(`drain: ${draining.id} drained at 40 % of the doctor's audio (while draining: ${refused.join('; ')}); ${stored} finals, WER ${(wer * 100).toFixed(2)} %`);
  } finally {
    for (const viewer of viewers) viewer.close();
  }
}));

test("a partition: the doctor's producer loses its gateway (which lives on) and reaches another; the first drops the track, no word is published twice", () => withFleet(async () => {
  const sessionId = 'fleet-partition';
  assert.is((await api(nginx.baseUrl, 'POST', '/v1/sessions', { id: sessionId, language: 'en' })).status, 201);
  const viewerToken = await signToken({ role: 'viewer', session: sessionId });
  const producerToken = await signToken({ role: 'producer', session: sessionId });
  const [first, second] = gateways;
  const network = await FlakyProxy.start(first.port);
  const viewers = await Promise.all(gateways.map(async (g) => new ReturningViewer(await CaptionCollector.connect(g.baseUrl, sessionId, viewerToken), sessionId, viewerToken)));
  try {
    const doctor = await resumableProducer(network.url, sessionId, 'doctor', producerToken);
    const patient = await resumableProducer(nginx.baseUrl, sessionId, 'patient', producerToken);
    while (doctor.progressMs() < doctor.totalMs * 0.4) await new Promise((resolve) => setTimeout(resolve, 50));
    // The doctor's network now leads to the second gateway; the connection to the first hangs, open.
    network.retarget(second.port);
    network.stall();
    await Promise.all([doctor.done, patient.done]);
    assert.ok(doctor.states.includes('reconnecting'), doctor.states.join(','));
    for (const viewer of viewers) await viewer.current.tracksEnded([...TRACKS], 60000);
    const ended = await api(nginx.baseUrl, 'POST', `/v1/sessions/${sessionId}/end`);
    assert.is(ended.status, 200, JSON.stringify(ended.json));
    // The first gateway's heartbeat (3 s) and resume window (3 s) have long passed (the stall was ~15 s
    // before the end): without the release it would have published its last utterance of the doctor again.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const stored = await storedFinals(sessionId);
    const reference = (await loadReference('en')).tracks.mix.map((w) => w.word).join(' ');
    const all = stored.flatMap((f) => f.words).sort((a, b) => a.startMs - b.startMs).map((w) => w.word).join(' ');
    assert.is(doubledWords(reference, all), 0, 'no word stored twice');
    const wer = wordErrorRate(reference, all);
    assert.ok(wer.wer <= 0.02, `WER ${(wer.wer * 100).toFixed(2)} %`);
    for (const [i, viewer] of viewers.entries()) assertGapFree(`viewer on ${gateways[i].id}`, viewer.finals, 1, stored.length);
    console.log(`partition: the doctor moved from ${first.id} to ${second.id} mid-visit; ${stored.length} finals stored, WER ${(wer.wer * 100).toFixed(2)} %, none twice`);
  } finally {
    for (const viewer of viewers) viewer.close();
    await network.close();
  }
}));

/**
 * A producer that cannot resend (as a WHIP or plain RTP source; here raw WebSocket `opus` frames, no SDK):
 * it paces its frames at SPEED, and when its connection dies it either opens a new one through `baseUrl`
 * (no `startMs`, no resume token) and goes on with the frames it had not sent, or stops there.
 */
function plainProducer(baseUrl: string, sessionId: string, track: string, token: string, reconnect: boolean) {
  const url = ingestUrl(baseUrl, sessionId, track, { format: 'opus', role: track, language: 'en', access_token: token });
  let sentMs = 0;
  let connections = 0;
  /** Where the audio stood (sentMs) each time a connection died under the producer. */
  const cuts: number[] = [];
  const done = (async () => {
    const chunks = await chunksFor({ format: 'opus', file: `${corpusDir}/en/${track}` });
    const started = performance.now();
    let next = 0;
    while (next < chunks.length) {
      connections++;
      const socket = new WebSocket(url);
      socket.on('error', () => {});
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      const opened = await new Promise<boolean>((resolve) => {
        socket.once('open', () => resolve(true));
        socket.once('close', () => resolve(false));
      });
      if (opened) {
        while (next < chunks.length && socket.readyState === WebSocket.OPEN) {
          socket.send(chunks[next].data);
          sentMs = chunks[next].atMs;
          next++;
          if (next % 5 === 0) {
            const due = started + sentMs / SPEED - performance.now();
            if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
          }
        }
        if (next >= chunks.length) socket.close(1000);
      }
      await closed;
      if (opened && next < chunks.length) cuts.push(sentMs);
      if (next < chunks.length && !reconnect) return;
      if (!opened) await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  return { done, sentMs: () => sentMs, connections: () => connections, cuts };
}

/** A track's stored words, in time order, as text. */
async function storedText(sessionId: string, trackId: string): Promise<string> {
  const sql = postgres(database.env.DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<{ words: { word: string; startMs: number }[] }[]>`select words from segments where session_id = ${sessionId} and track_id = ${trackId}`;
    return rows.flatMap((r) => r.words).sort((a, b) => a.startMs - b.startMs).map((w) => w.word).join(' ');
  } finally {
    await sql.end();
  }
}

/** When to kill a gateway: 6 s into the doctor's longest turn after 40 % of the visit. */
function midUtterance(words: { startMs: number; endMs: number }[]): { atMs: number; intoTurnMs: number } {
  const turns: { startMs: number; endMs: number }[] = [];
  for (const w of words) {
    const last = turns.at(-1);
    if (last && w.startMs - last.endMs < 600) last.endMs = w.endMs;
    else turns.push({ startMs: w.startMs, endMs: w.endMs });
  }
  const total = words.at(-1)!.endMs;
  const turn = turns.filter((t) => t.startMs >= total * 0.4).sort((a, b) => b.endMs - b.startMs - (a.endMs - a.startMs))[0];
  assert.ok(turn.endMs - turn.startMs >= 9000, 'the corpus has a long turn to cut');
  return { atMs: turn.startMs + 6000, intoTurnMs: 6000 };
}

test("producers that cannot resend: their gateways killed in the middle of the doctor's turn; the audio they held past the stored finals is taken from Redis, by the gateway a producer reaches next, or when the session ends for a producer that never comes back", () => withFleet(async () => {
  const producerToken = async (sessionId: string) => signToken({ role: 'producer', session: sessionId });
  for (const sessionId of ['fleet-tails', 'fleet-tails-gone']) assert.is((await api(nginx.baseUrl, 'POST', '/v1/sessions', { id: sessionId, language: 'en' })).status, 201);
  // The first visit's producers come back through nginx; the second's doctor streams to another gateway and never comes back.
  const back = { doctor: plainProducer(nginx.baseUrl, 'fleet-tails', 'doctor', await producerToken('fleet-tails'), true), patient: plainProducer(nginx.baseUrl, 'fleet-tails', 'patient', await producerToken('fleet-tails'), true) };
  const first = await holderOf('fleet-tails', 'doctor');
  const second = gateways.find((g) => g !== first)!;
  const gone = { doctor: plainProducer(second.baseUrl, 'fleet-tails-gone', 'doctor', await producerToken('fleet-tails-gone'), false), patient: plainProducer(nginx.baseUrl, 'fleet-tails-gone', 'patient', await producerToken('fleet-tails-gone'), true) };
  const reference = await loadReference('en');
  const { atMs: killAtMs, intoTurnMs } = midUtterance(reference.tracks.doctor);
  while (back.doctor.sentMs() < killAtMs || gone.doctor.sentMs() < killAtMs) await new Promise((resolve) => setTimeout(resolve, 10));
  const goneAtMs = gone.doctor.sentMs();
  await Promise.all([first.kill(), second.kill()]);
  await Promise.all([back.doctor.done, back.patient.done, gone.doctor.done, gone.patient.done]);
  assert.ok(back.doctor.connections() >= 2, 'the doctor reconnected');
  const survivor = gateways.find((g) => g !== first && g !== second)!;
  const figures: string[] = [];
  for (const sessionId of ['fleet-tails', 'fleet-tails-gone']) {
    for (let i = 0; i < 200 && ((await ownerOf(sessionId, 'doctor')) || (await ownerOf(sessionId, 'patient'))); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    const ended = await api(nginx.baseUrl, 'POST', `/v1/sessions/${sessionId}/end`);
    assert.is(ended.status, 200, JSON.stringify(ended.json));
    for (const track of TRACKS) {
      const text = await storedText(sessionId, track);
      // The doctor who never came back said this much before their gateway died, less the last tail write's
      // interval (TRACK_TAIL_MS, 250 ms of wall time = 1 s of this test's audio) and what was on its way.
      const heard = reference.tracks[track].filter((w) => sessionId === 'fleet-tails' || track === 'patient' || w.endMs <= goneAtMs - 1500).map((w) => w.word).join(' ');
      const wer = wordErrorRate(heard, text);
      assert.is(doubledWords(heard, text), 0, `${sessionId} ${track}: no word stored twice`);
      // Lost at most the words at the cut, never the turn it was in: those of the tail's last interval (1 s of
      // audio) and those sent on the dead connection before the producer saw it close (how long nginx took to
      // close it depends on the machine's load: 3 or 4 words here); at least three are allowed.
      const cut = sessionId === 'fleet-tails' ? back[track as keyof typeof back].cuts[0] : undefined;
      const atCut = cut === undefined ? 0 : reference.tracks[track].filter((w) => w.endMs > killAtMs - 1250 && w.startMs < cut + 250).length;
      assert.ok(wer.deletions + wer.substitutions <= Math.max(3, atCut), `${sessionId} ${track}: ${wer.deletions} words lost, ${wer.substitutions} changed (${atCut} at the cut)\n  ref: ${heard}\n  hyp: ${text}`);
      figures.push(`${sessionId} ${track}: ${wer.deletions} of ${heard.split(" ").length} words lost, ${wer.substitutions} changed (${atCut} at the cut)`);
    }
  }
  const metrics = await fetch(`${survivor.baseUrl}/metrics`, { headers: { authorization: `Bearer ${await signToken({ role: 'service' })}` } }).then((r) => r.text());
  const recovered = Number(/^helssa_track_tails_recovered_total (\d+)/m.exec(metrics)?.[1] ?? 0);
  assert.ok(recovered >= 2, `both doctors' tails were taken and transcribed (${recovered} tails in all)`);
  console.log(`tails: ${first.id} and ${second.id} killed ${(intoTurnMs / 1000).toFixed(1)} s into the doctor's turn (${(killAtMs / 1000).toFixed(1)} s of the visit); ${figures.join('; ')}; ${recovered} tails transcribed by ${survivor.id}`);
}));

test('PostgreSQL crashes and restarts mid-visit: finals wait and are stored in order, nothing lost; readiness says the database is down meanwhile', async () => {
  const pg = await startPostgres();
  await withFleet(async () => {
    const sessionId = 'fleet-pg-restart';
    assert.is((await api(nginx.baseUrl, 'POST', '/v1/sessions', { id: sessionId, language: 'en' })).status, 201);
    const viewerToken = await signToken({ role: 'viewer', session: sessionId });
    const producerToken = await signToken({ role: 'producer', session: sessionId });
    const viewers = await Promise.all(gateways.map(async (g) => new ReturningViewer(await CaptionCollector.connect(g.baseUrl, sessionId, viewerToken), sessionId, viewerToken)));
    try {
      const producers = await Promise.all(TRACKS.map((t) => resumableProducer(nginx.baseUrl, sessionId, t, producerToken)));
      while (producers[0].progressMs() < producers[0].totalMs * 0.3) await new Promise((resolve) => setTimeout(resolve, 50));
      await pg.kill();
      await new Promise((resolve) => setTimeout(resolve, 500));
      const down = await (await fetch(`${gateways[0].baseUrl}/readyz`)).json();
      assert.equal([down.status, down.database], ['unavailable', false], 'not ready without the database');
      await new Promise((resolve) => setTimeout(resolve, 2500));
      await pg.start();
      await Promise.all(producers.map((p) => p.done));
      const { stored, wer } = await endAndCheck(sessionId, byGateway(viewers));
      console.log(`PostgreSQL down 3 s mid-visit: ${stored} finals, WER ${(wer * 100).toFixed(2)} %`);
    } finally {
      for (const viewer of viewers) viewer.close();
    }
  }, pg);
});

test.run();
