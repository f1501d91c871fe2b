/**
 * Pipeline benchmark. The gateway runs in its own process (so its CPU time is its own), the test STT
 * server in another, and this process plays N producers.
 *
 *  1. baseline (this process): Opus decode alone of the same audio, in audio-seconds per CPU-second.
 *  2. throughput: N streams fed as fast as the gateway takes them (decode + VAD + segment + STT client +
 *     captions); audio-seconds per gateway CPU-second, and its ratio to the baseline.
 *  2b. the same with the encrypted recording archive on (Ogg mux + age encryption of the full file and
 *     of the one-second crash slices + local upload): its CPU cost as a share of the pipeline's.
 *  3. latency: N streams at real time; gateway-added latency (last speech audio received → final event
 *     sent, minus the STT call; and the processing part alone) p50/p95/p99 from the gateway's own
 *     metrics, and CPU % per stream.
 *
 *   BENCH_STREAMS=8 (streams in each phase)  BENCH_REALTIME_SECONDS=30 (audio per stream in phase 3)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { createInterface } from 'node:readline';
import opus from '@discordjs/opus';
import prism from 'prism-media';
import { ensureCorpus } from '../scripts/make-corpus.ts';
import { chunksFor, ingestUrl, streamChunks, type StreamedChunk } from '../test/support/producer.ts';
import { freePort } from '../test/support/net.ts';
import { signToken, TEST_JWT_SECRET } from '../test/support/tokens.ts';
import { CaptionCollector } from '../test/support/viewer.ts';

const streams = Number(process.env.BENCH_STREAMS ?? 8);
const realtimeSeconds = Number(process.env.BENCH_REALTIME_SECONDS ?? 30);
const corpusDir = await ensureCorpus();
const CLOCK_TICKS = 100;


/** CPU seconds (user + system) a child process has used, from /proc. */
async function cpuSeconds(child: ChildProcess): Promise<number> {
  const stat = await readFile(`/proc/${child.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

function startProcess(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
}

async function startSttServer(): Promise<{ child: ChildProcess; url: string }> {
  const child = startProcess(['test/support/stt-server-main.ts'], {});
  const [line] = await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next().then((r) => [r.value as string]);
  return { child, url: line.trim() };
}

const dataDir = await mkdtemp(join(tmpdir(), 'helssa-bench-'));
const recipient = await identityToRecipient(await generateX25519Identity());

async function startGateway(sttUrl: string, archive: boolean): Promise<{ child: ChildProcess; baseUrl: string }> {
  const port = await freePort();
  const archiveEnv: Record<string, string> = archive ? { ARCHIVE_RECIPIENTS: recipient } : { ARCHIVE_INSECURE_DISABLE: 'true' };
  const child = startProcess(['src/main.ts'], {
    PORT: String(port), HOST: '127.0.0.1', JWT_SECRET: TEST_JWT_SECRET, STT_BASE_URL: sttUrl, OPENAI_API_KEY: 'bench', LOG_LEVEL: 'error', STT_CONCURRENCY: '8',
    DATA_DIR: join(dataDir, String(port)), ...archiveEnv,
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (await fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false)) return { child, baseUrl };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('gateway did not start');
}

async function stop(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

/** Streams the corpus tracks (doctor/patient of each language in turn) on `count` concurrent sessions. */
async function runStreams(baseUrl: string, count: number, speed: number, limitMs?: number): Promise<number> {
  const sources = ['en', 'fa', 'ar'].flatMap((language) => ['doctor', 'patient'].map((track) => ({ language, track })));
  let audioMs = 0;
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const { language, track } = sources[i % sources.length];
      const sessionId = `bench-${i}`;
      const viewer = await CaptionCollector.connect(baseUrl, sessionId, await signToken({ role: 'viewer', session: sessionId }));
      let chunks: StreamedChunk[] = await chunksFor({ format: 'opus', file: `${corpusDir}/${language}/${track}` });
      if (limitMs) chunks = chunks.filter((c) => c.atMs <= limitMs);
      const url = ingestUrl(baseUrl, sessionId, 'mic', { format: 'opus', role: track, language, access_token: await signToken({ role: 'producer', session: sessionId }) });
      const result = await streamChunks(url, chunks, speed);
      await viewer.tracksEnded(['mic'], 600000);
      viewer.close();
      audioMs += result.sentMs;
    }),
  );
  return audioMs / 1000;
}

async function decodeBaseline(): Promise<number> {
  const packets: Buffer[] = [];
  for (const track of ['doctor', 'patient']) {
    const demuxer = new prism.opus.OggDemuxer();
    demuxer.on('data', (p: Buffer) => packets.push(p));
    demuxer.end(await readFile(`${corpusDir}/en/${track}.ogg`));
    await new Promise((r) => demuxer.on('end', r));
  }
  const decoder = new opus.OpusEncoder(16000, 1);
  const before = process.cpuUsage();
  for (let round = 0; round < 5; round++) for (const p of packets) decoder.decode(p);
  const used = process.cpuUsage(before);
  return (packets.length * 0.02 * 5) / ((used.user + used.system) / 1e6);
}

async function quantiles(baseUrl: string, metric: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${baseUrl}/metrics`, { headers: { authorization: `Bearer ${await signToken({ role: 'service' })}` } })).text();
  const out: Record<string, number> = {};
  for (const match of text.matchAll(new RegExp(`${metric}\\{quantile="([\\d.]+)"\\} ([\\d.eE+-]+|NaN)`, 'g'))) out[match[1]] = Number(match[2]) * 1000;
  out.count = Number(new RegExp(`${metric}_count (\\d+)`).exec(text)?.[1] ?? 0);
  return out;
}

const stt = await startSttServer();
try {
  const baseline = await decodeBaseline();
  console.log(`baseline  Opus decode alone: ${baseline.toFixed(0)} audio-s per CPU-s`);

  const throughputRun = async (archive: boolean) => {
    const gateway = await startGateway(stt.url, archive);
    const cpuBefore = await cpuSeconds(gateway.child);
    const started = performance.now();
    const audioSeconds = await runStreams(gateway.baseUrl, streams, 0);
    const cpu = (await cpuSeconds(gateway.child)) - cpuBefore;
    const wall = (performance.now() - started) / 1000;
    await stop(gateway.child);
    return { audioSeconds, cpu, wall };
  };
  // Alternate the two configurations so drift on the machine hits both alike.
  const plain = { audioSeconds: 0, cpu: 0, wall: 0 };
  const archived = { audioSeconds: 0, cpu: 0, wall: 0 };
  for (let round = 0; round < 3; round++) {
    for (const [total, archive] of [[plain, false], [archived, true]] as const) {
      const r = await throughputRun(archive);
      total.audioSeconds += r.audioSeconds;
      total.cpu += r.cpu;
      total.wall += r.wall;
    }
  }
  const throughput = plain.audioSeconds / plain.cpu;
  console.log(
    `throughput ${streams} streams, fed as fast as taken (3 runs): ${plain.audioSeconds.toFixed(0)} s of audio, ${plain.cpu.toFixed(2)} gateway CPU-s → ` +
      `${throughput.toFixed(0)} audio-s per CPU-s (${(throughput / baseline).toFixed(3)}× the decode-only baseline, ${(plain.audioSeconds / plain.wall).toFixed(0)}× real time)`,
  );
  const archivedThroughput = archived.audioSeconds / archived.cpu;
  console.log(
    `archive   same streams with the encrypted archive on: ${archivedThroughput.toFixed(0)} audio-s per CPU-s; ` +
      `archive cost (encrypt + mux + store) = ${((archived.cpu / plain.cpu - 1) * 100).toFixed(1)}% of the pipeline's CPU ` +
      `(${(((archived.cpu - plain.cpu) / archived.audioSeconds) * 3600).toFixed(2)} CPU-s per stream-hour)`,
  );

  const gateway = await startGateway(stt.url, true);
  const cpuBefore = await cpuSeconds(gateway.child);
  const started = performance.now();
  await runStreams(gateway.baseUrl, streams, 1, realtimeSeconds * 1000);
  const cpu = (await cpuSeconds(gateway.child)) - cpuBefore;
  const elapsed = (performance.now() - started) / 1000;
  const added = await quantiles(gateway.baseUrl, 'helssa_final_added_latency_seconds');
  const processing = await quantiles(gateway.baseUrl, 'helssa_final_processing_seconds');
  const figures = (q: Record<string, number>) => `p50 ${q['0.5'].toFixed(1)} ms, p95 ${q['0.95'].toFixed(1)} ms, p99 ${q['0.99'].toFixed(1)} ms`;
  console.log(
    `latency   ${streams} streams at real time for ${realtimeSeconds} s, ${added.count} finals:\n` +
      `          end of speech → final, minus STT (includes the ${process.env.SEGMENT_SILENCE_MS ?? 500} ms endpointing silence): ${figures(added)}\n` +
      `          window closed → final, minus STT (queue + processing): ${figures(processing)}\n` +
      `          gateway CPU ${((cpu / elapsed) * 100).toFixed(1)}% of a core (${((cpu / elapsed / streams) * 100).toFixed(2)}% per stream)`,
  );
  await stop(gateway.child);
} finally {
  await stop(stt.child);
  await rm(dataDir, { recursive: true, force: true });
}
