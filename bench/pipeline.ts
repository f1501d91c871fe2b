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
 *     metrics, time to first partial, and CPU % per stream; once with a recognizer that answers at once
 *     and once with one that takes BENCH_STT_LATENCY_MS (default 300, a hosted Whisper's usual), where
 *     the speculative final's call overlaps the endpointing silence.
 *  4. STT cost: audio sent to STT ÷ audio streamed, per language, partials budgeted / unbounded / off
 *     (bench/stt-cost.ts, about 10 minutes; BENCH_COST=0 leaves it out).
 *
 *   BENCH_STREAMS=8 (streams in each phase)  BENCH_REALTIME_SECONDS=30 (audio per stream in phase 3)
 */
import { readFile } from 'node:fs/promises';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import opus from '@discordjs/opus';
import prism from 'prism-media';
import { ensureCorpus } from '../scripts/make-corpus.ts';
import { chunksFor, ingestUrl, streamChunks, type StreamedChunk } from '../test/support/producer.ts';
import { signToken } from '../test/support/tokens.ts';
import { cpuSeconds, quantiles, removeBenchData, startGateway, startSttServer, stop } from './processes.ts';
import { CaptionCollector } from '../test/support/viewer.ts';
import { sttCost } from './stt-cost.ts';

const streams = Number(process.env.BENCH_STREAMS ?? 8);
const realtimeSeconds = Number(process.env.BENCH_REALTIME_SECONDS ?? 30);
const corpusDir = await ensureCorpus();
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

const recipient = await identityToRecipient(await generateX25519Identity());
const stt = await startSttServer();
try {
  const baseline = await decodeBaseline();
  console.log(`baseline  Opus decode alone: ${baseline.toFixed(0)} audio-s per CPU-s`);

  const throughputRun = async (archive: boolean) => {
    const gateway = await startGateway(stt.url, archive ? { ARCHIVE_RECIPIENTS: recipient } : { ARCHIVE_INSECURE_DISABLE: 'true' });
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

  const latencyRun = async (sttUrl: string, label: string) => {
    const gateway = await startGateway(sttUrl, { ARCHIVE_RECIPIENTS: recipient });
    const cpuBefore = await cpuSeconds(gateway.child);
    const started = performance.now();
    await runStreams(gateway.baseUrl, streams, 1, realtimeSeconds * 1000);
    const cpu = (await cpuSeconds(gateway.child)) - cpuBefore;
    const elapsed = (performance.now() - started) / 1000;
    const added = await quantiles(gateway.baseUrl, 'helssa_final_added_latency_seconds');
    const processing = await quantiles(gateway.baseUrl, 'helssa_final_processing_seconds');
    const firstPartial = await quantiles(gateway.baseUrl, 'helssa_first_partial_seconds');
    const figures = (q: Record<string, number>) => `p50 ${q['0.5'].toFixed(1)} ms, p95 ${q['0.95'].toFixed(1)} ms, p99 ${q['0.99'].toFixed(1)} ms`;
    console.log(
      `latency   ${streams} streams at real time for ${realtimeSeconds} s, ${label}, ${added.count} finals:\n` +
        `          end of speech → final, minus STT (endpointing ${process.env.SEGMENT_SILENCE_MS ?? 500} ms, speculative final after ${process.env.SEGMENT_SPECULATIVE_MS ?? 200} ms): ${figures(added)}\n` +
        `          window closed → final, minus STT (queue + processing): ${figures(processing)}\n` +
        `          speech start → first partial: ${figures(firstPartial)}\n` +
        `          gateway CPU ${((cpu / elapsed) * 100).toFixed(1)}% of a core (${((cpu / elapsed / streams) * 100).toFixed(2)}% per stream)`,
    );
    await stop(gateway.child);
  };
  await latencyRun(stt.url, 'recognizer answering at once');
  const sttLatencyMs = Number(process.env.BENCH_STT_LATENCY_MS ?? 300);
  const slowStt = await startSttServer({ STT_LATENCY_MS: String(sttLatencyMs) });
  try {
    await latencyRun(slowStt.url, `recognizer taking ${sttLatencyMs} ms`);
  } finally {
    await stop(slowStt.child);
  }
  if (process.env.BENCH_COST !== '0') await sttCost(stt.url);
} finally {
  await stop(stt.child);
  await removeBenchData();
}
