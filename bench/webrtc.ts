/**
 * Concurrent WebRTC tracks per core. The gateway runs in its own process, the test STT server in another,
 * and N werift senders in a third (bench/webrtc-senders.ts), each publishing over WHIP and sending Opus
 * at real time. For growing N, on a fresh gateway each time: packets lost on the way in (gaps the gateway
 * had to conceal), the gateway-added latency p99 (audio that closed a window received → final sent, minus
 * the STT call), and the gateway's CPU per track. The answer is the largest N with no packet lost and p99
 * under 50 ms. Baseline for the ratio: the CPU per track at the smallest N, measured in the same run.
 *
 *   BENCH_WEBRTC_SECONDS=20 (audio per track)  BENCH_WEBRTC_COUNTS=5,10,20,40
 */
import { createInterface } from 'node:readline';
import { counter, cpuSeconds, quantiles, removeBenchData, startGateway, startProcess, startSttServer, stop } from './processes.ts';

const seconds = Number(process.env.BENCH_WEBRTC_SECONDS ?? 20);
const counts = (process.env.BENCH_WEBRTC_COUNTS ?? '5,10,20,40').split(',').map(Number);

const stt = await startSttServer();
console.log(`${seconds} s of Opus per track at real time over WHIP; gateway, STT server and senders in three processes on ${(await import('node:os')).availableParallelism()} cores\n`);
console.log('| tracks | sent packets | lost packets | p99 added latency | gateway CPU | CPU per track | ratio to smallest N |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
let best = 0;
let baselinePerTrack = 0;
try {
  for (const n of counts) {
    const gateway = await startGateway(stt.url, { ARCHIVE_INSECURE_DISABLE: 'true', ARCHIVE_RECIPIENTS: '', STT_CONCURRENCY: '16' });
    const senders = startProcess(['bench/webrtc-senders.ts'], { BASE_URL: gateway.baseUrl, COUNT: String(n), SECONDS: String(seconds), SESSION_PREFIX: `bench-${n}` });
    const lines = createInterface({ input: senders.stdout! })[Symbol.asyncIterator]();
    // CPU is counted while the packets flow, not while the peers connect.
    await lines.next();
    const cpuBefore = await cpuSeconds(gateway.child);
    const started = performance.now();
    const report = JSON.parse((await lines.next()).value as string) as { sent: number; connected: number };
    const wall = (performance.now() - started) / 1000;
    const cpu = (await cpuSeconds(gateway.child)) - cpuBefore;
    // Finals of the last windows come in after the tracks end; give them a moment.
    await new Promise((r) => setTimeout(r, 1500));
    const lost = await counter(gateway.baseUrl, 'helssa_lost_packets_total');
    const p99 = (await quantiles(gateway.baseUrl, 'helssa_final_processing_seconds'))['0.99'];
    await stop(gateway.child);
    const perTrack = (cpu / wall / n) * 100;
    baselinePerTrack ||= perTrack;
    const ok = lost === 0 && p99 < 50;
    if (ok) best = n;
    console.log(`| ${n} | ${report.sent} | ${lost} | ${p99.toFixed(1)} ms | ${((cpu / wall) * 100).toFixed(1)} % | ${perTrack.toFixed(2)} % | ${(perTrack / baselinePerTrack).toFixed(2)}× |`);
    if (!ok) break;
  }
} finally {
  await stop(stt.child);
  await removeBenchData();
}
console.log(`\nlargest N with no lost packet and p99 added latency < 50 ms: ${best}${best === counts.at(-1) ? ' (the largest tried)' : ''}`);
