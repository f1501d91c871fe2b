/**
 * One machine's capacity: how many live tracks a gateway takes, per ingest path, with a load that costs
 * almost nothing to make (bench/capacity-senders.ts: pre-encoded Opus from one process on one timer, at
 * real time, as WebSocket `opus` frames or plain RTP) and an STT stub that answers at once. The gateway runs
 * in its own process with PostgreSQL and the recording archived (age-encrypted), as deployed. For growing N, on a fresh
 * gateway each time: packets lost on the way in, the share of the streamed audio the gateway received (a
 * track that never got through loses no packet it could count), the gateway's event-loop delay p99 (how
 * long a packet that arrived waits before it is decoded and segmented: the added latency), its CPU per
 * track and its resident memory per track (over the idle gateway's). The answer per path is the largest N
 * with no packet lost, all the audio received, event-loop delay p99 < 20 ms; the latency goal (< 50 ms)
 * follows from it. Baseline for the ratio: the CPU per track at the smallest N, measured in the same run. WHIP's senders are werift peers, which cost
 * far more than the gateway's side of them: their CPU is printed apart, and on a small machine they take
 * cores the gateway would otherwise have (its event-loop delay then measures the machine, not the gateway).
 *
 *   BENCH_CAPACITY_SECONDS=20  BENCH_CAPACITY_COUNTS=25,50,100,150,200  BENCH_CAPACITY_PATHS=ws,rtp,whip
 *   BENCH_CAPACITY_GATEWAY_ENV='{"STT_PARTIAL_BUDGET":"0"}'  (the gateway's configuration on top: what a setting costs)
 *   BENCH_CAPACITY_GATEWAYS=2  (a gateway process per core behind nginx, deploy/nginx/nginx.conf: a fleet on one machine)
 *   BENCH_CAPACITY_PHASES=together  (every track's packet in the same instant of each period: the worst case)
 *   BENCH_CAPACITY_PACKET_MS=60  (60 ms Opus packets instead of 20 ms: what a producer that can choose saves the gateway)
 *   BENCH_CAPACITY_ARCHIVE=s3  (the recording archived to an S3 server, s3rver in this process, instead of the
 *     local store: each track's slices and file parts then go out as HTTP requests from the gateway)
 *   BENCH_CAPACITY_WARMUP=20  (measure only after the tracks have streamed this long: a visit's steady state,
 *     without the costs of its first seconds, such as the noise suppressor running until it has heard the
 *     track's floor, and JIT warm-up)
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { createTestIdentity } from '../test/support/age.ts';
import { createTestDatabase } from '../test/support/databases.ts';
import { startNginx } from '../test/support/fleet.ts';
import { S3Server } from '../test/support/s3-server.ts';
import { counter, cpuSeconds, gauge, removeBenchData, startGateway, startProcess, stop, treeCpuSeconds } from './processes.ts';
import { startSttStub } from './stt-stub.ts';

const seconds = Number(process.env.BENCH_CAPACITY_SECONDS ?? 20);
const counts = (process.env.BENCH_CAPACITY_COUNTS ?? '25,50,100,150,200').split(',').map(Number);
const paths = (process.env.BENCH_CAPACITY_PATHS ?? 'ws,rtp,whip').split(',') as ('ws' | 'rtp' | 'whip')[];
const PATH_TITLES = { ws: 'WebSocket `opus`', rtp: 'plain RTP', whip: 'WHIP (WebRTC)' };
const gatewayCount = Number(process.env.BENCH_CAPACITY_GATEWAYS ?? 1);
const phases = process.env.BENCH_CAPACITY_PHASES === 'together' ? 'together' : 'spread';
const packetMs = Number(process.env.BENCH_CAPACITY_PACKET_MS ?? 20);
const warmupSeconds = Number(process.env.BENCH_CAPACITY_WARMUP ?? 0);
const gatewayEnv = JSON.parse(process.env.BENCH_CAPACITY_GATEWAY_ENV ?? '{}') as Record<string, string>;
const archiveStore = process.env.BENCH_CAPACITY_ARCHIVE === 's3' ? 's3' : 'local';
const MAX_LOOP_DELAY_MS = 20;
/** Of the audio the tracks stream while measured, the share the gateway must receive (the stretch's edges blur a little). */
const MIN_RECEIVED = 0.98;
/** An event loop this late at p99 no longer keeps up: larger N only says so more. */
const SATURATED_LOOP_DELAY_MS = 500;
/** prom-client's default eventLoopMonitoringPrecision. */
const EVENT_LOOP_RESOLUTION_MS = 10;

async function rssBytes(child: ChildProcess): Promise<number> {
  const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

const stt = await startSttStub();
const s3 = archiveStore === 's3' ? await new S3Server().start() : undefined;
const identity = await createTestIdentity();
/** One key-encryption key for the fleet: each gateway reads the track tails another sealed. */
const atRestKey = randomBytes(32).toString('base64');
console.log(`${seconds} s of continuous Opus speech per track at real time${warmupSeconds > 0 ? ` (measured after ${warmupSeconds} s of it)` : ''} in ${packetMs} ms packets, the tracks' packets ${phases === 'spread' ? `spread over each ${packetMs} ms` : `all at the same instant of each ${packetMs} ms`}; ${gatewayCount > 1 ? `${gatewayCount} gateway processes behind nginx (PostgreSQL, Redis, archive on)` : 'the gateway alone in its process (PostgreSQL, archive on)'}, the archive ${s3 ? 'to an S3 server (s3rver, in this process)' : 'in the local store'}, the senders in another, the STT stub in this one; ${availableParallelism()} cores\n`);
const found: Record<string, number> = {};
try {
  for (const path of paths) {
    console.log(`### ${PATH_TITLES[path]}\n`);
    console.log('| tracks | sent packets | lost packets | audio received | event-loop delay p99 | gateway CPU | CPU per track | ratio to smallest N | RSS per track | sender CPU |');
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    let baselinePerTrack = 0;
    found[path] = 0;
    for (const n of counts) {
      // PostgreSQL, as a deployment of this size runs (PGlite, in the gateway's process, would be measured with it).
      const database = await createTestDatabase('postgres');
      // Several gateways: a fleet on this machine (Redis between them), nginx in front with the shipped configuration.
      const fleetEnv = (i: number): Record<string, string> => (gatewayCount > 1 ? { REDIS_URL: 'redis://127.0.0.1:6379', AT_REST_KEY: atRestKey, QUEUE_NAME: `bench-capacity-${process.pid}-${n}`, INSTANCE_ID: `capacity-${n}-${i}` } : {});
      const gateways = await Promise.all(
        Array.from({ length: gatewayCount }, (_, i) =>
          startGateway(stt.url, { ...database.env, ARCHIVE_RECIPIENTS: identity.recipient, STT_CONCURRENCY: '16', STT_SPEECH_CHECK: 'off', MAX_CONNECTIONS_PER_IP: '100000', INGEST_CONNECTIONS_PER_MINUTE: '1000000', RATE_LIMIT_PER_IP_PER_MINUTE: '10000000', ...s3?.env, ...fleetEnv(i), ...gatewayEnv }),
        ),
      );
      const nginx = gatewayCount > 1 ? await startNginx(gateways.map((g) => Number(new URL(g.baseUrl).port))) : undefined;
      // The idle gateways' memory, settled: what the tracks add is measured against it.
      await new Promise((r) => setTimeout(r, 1000));
      const rss = async () => (await Promise.all(gateways.map((g) => rssBytes(g.child)))).reduce((a, b) => a + b, 0);
      const cpuOf = async () => (await Promise.all(gateways.map((g) => cpuSeconds(g.child)))).reduce((a, b) => a + b, 0);
      const loopP99s = () => Promise.all(gateways.map((g) => gauge(g.baseUrl, 'nodejs_eventloop_lag_p99_seconds')));
      const idleRss = await rss();
      const senders = startProcess(['bench/capacity-senders.ts'], { BASE_URL: nginx?.baseUrl ?? gateways[0].baseUrl, COUNT: String(n), SECONDS: String(seconds + warmupSeconds), PATH_KIND: path, SESSION_PREFIX: `cap-${path}-${n}`, PHASES: phases, PACKET_MS: String(packetMs) });
      const lines = createInterface({ input: senders.stdout! })[Symbol.asyncIterator]();
      await lines.next();
      await new Promise((r) => setTimeout(r, warmupSeconds * 1000));
      // Scraping resets the event-loop delay histogram: what the next scrape reports is the load's.
      await loopP99s();
      const audioOf = async () => (await Promise.all(gateways.map((g) => counter(g.baseUrl, 'helssa_audio_seconds_total')))).reduce((a, b) => a + b, 0);
      const audioBefore = await audioOf();
      const cpuBefore = await cpuOf();
      const nginxBefore = nginx ? await treeCpuSeconds(nginx.pid) : 0;
      const started = performance.now();
      let loadedRss = 0;
      const sampler = setInterval(() => void rss().then((bytes) => (loadedRss = Math.max(loadedRss, bytes)), () => undefined), 1000);
      const loopP99 = new Promise<number>((resolve) => setTimeout(() => resolve(loopP99s().then((p99s) => Math.max(...p99s))), (seconds - 1) * 1000));
      const report = JSON.parse((await lines.next()).value as string) as { sent: number; senderCpuSeconds: number; worstLateMs: number };
      const wall = (performance.now() - started) / 1000;
      const nginxCpu = nginx ? (await treeCpuSeconds(nginx.pid)) - nginxBefore : 0;
      // nginx is part of what a multi-process gateway costs: counted in.
      const cpu = (await cpuOf()) - cpuBefore + nginxCpu;
      // A track that never connected (a WHIP peer whose ICE gave up) loses no packet the gateway could
      // count: the audio it received over what n tracks stream in the stretch tells.
      const received = ((await audioOf()) - audioBefore) / (n * wall);
      await lines.next();
      clearInterval(sampler);
      // prom-client's histogram samples every EVENT_LOOP_RESOLUTION_MS and records the whole interval: an idle
      // loop reads that much. What a packet waits is the rest.
      const delayMs = (await loopP99) * 1000 - EVENT_LOOP_RESOLUTION_MS;
      let lost = 0;
      for (const g of gateways) lost += await counter(g.baseUrl, 'helssa_lost_packets_total');
      await nginx?.stop();
      await Promise.all(gateways.map((g) => stop(g.child)));
      await database.release();
      const perTrack = (cpu / wall / n) * 100;
      baselinePerTrack ||= perTrack;
      const ok = lost === 0 && received >= MIN_RECEIVED && delayMs < MAX_LOOP_DELAY_MS && report.worstLateMs < 100;
      if (ok) found[path] = n;
      const rssPerTrack = (loadedRss - idleRss) / n / 2 ** 20;
      console.log(`| ${n} | ${report.sent} | ${lost} | ${(received * 100).toFixed(1)} % | ${delayMs.toFixed(1)} ms | ${((cpu / wall) * 100).toFixed(1)} %${nginx ? ` (nginx ${((nginxCpu / wall) * 100).toFixed(1)} %)` : ''} | ${perTrack.toFixed(3)} % | ${(perTrack / baselinePerTrack).toFixed(2)}× | ${rssPerTrack.toFixed(2)} MB | ${((report.senderCpuSeconds / (wall + warmupSeconds)) * 100).toFixed(1)} %${report.worstLateMs >= 100 ? ` (sender ${report.worstLateMs} ms late)` : ''} |`);
      // Past the goal the table goes on while the event loop keeps up, to show how the cost grows (the CPU
      // is no measure of that: worker threads, RNNoise's above all, add theirs on the other cores).
      if (lost > 0 || received < MIN_RECEIVED || delayMs > SATURATED_LOOP_DELAY_MS) break;
    }
    console.log(`\nlargest N with no lost packet, all the audio received and event-loop delay p99 < ${MAX_LOOP_DELAY_MS} ms: ${found[path]}${found[path] === counts.at(-1) ? ' (the largest tried)' : ''}\n`);
  }
} finally {
  await stt.close();
  await s3?.destroy();
  await removeBenchData();
}
