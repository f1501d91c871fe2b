/**
 * The same visits on one gateway and on two (a fleet on PostgreSQL and Redis): gateway CPU per real-time
 * track, and what the fleet adds to a final's way to a viewer — each final's arrival at a viewer on the
 * instance that does not hold its track, minus its arrival at a viewer on the instance that does. With
 * one gateway both viewers are on it (the baseline: 0 by construction, the measuring noise).
 *
 *   npm run bench:fleet
 *   BENCH_FLEET_VISITS=6 BENCH_FLEET_SECONDS=30   (visits of two tracks each, seconds of audio streamed in real time)
 */
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import type { FinalEvent } from '../client-sdk/src/protocol.ts';
import { ensureCorpus } from '../scripts/make-corpus.ts';
import { createTestIdentity } from '../test/support/age.ts';
import { createTestDatabase } from '../test/support/databases.ts';
import { chunksFor, ingestUrl, streamChunks } from '../test/support/producer.ts';
import { signToken } from '../test/support/tokens.ts';
import { CaptionCollector } from '../test/support/viewer.ts';
import { cpuSeconds, removeBenchData, startGateway, startSttServer, stop } from './processes.ts';

const VISITS = Number(process.env.BENCH_FLEET_VISITS ?? 6);
const SECONDS = Number(process.env.BENCH_FLEET_SECONDS ?? 30);
const TRACKS = ['doctor', 'patient'] as const;

const corpusDir = await ensureCorpus();
const stt = await startSttServer();
const identity = await createTestIdentity();
/** One key-encryption key for the fleet: each gateway reads the track tails another sealed. */
const atRestKey = randomBytes(32).toString('base64');
const chunks = Object.fromEntries(await Promise.all(TRACKS.map(async (t) => [t, (await chunksFor({ format: 'opus', file: `${corpusDir}/en/${t}` })).filter((c) => c.atMs < SECONDS * 1000)] as const)));

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
}

async function run(instances: number): Promise<{ cpuPerTrack: number; added: number[] }> {
  const database = await createTestDatabase('postgres');
  const gateways: { child: ChildProcess; baseUrl: string }[] = [];
  try {
    for (let i = 0; i < instances; i++) {
      gateways.push(await startGateway(stt.url, { ...database.env, REDIS_URL: 'redis://127.0.0.1:6379', AT_REST_KEY: atRestKey, QUEUE_NAME: `bench-fleet-${process.pid}-${instances}`, INSTANCE_ID: `bench-${instances}-${i}`, ARCHIVE_RECIPIENTS: identity.recipient, STT_SPEECH_CHECK: 'off' }));
    }
    const service = await signToken({ role: 'service' });
    const cpuBefore = await Promise.all(gateways.map((g) => cpuSeconds(g.child)));
    const started = performance.now();
    const added: number[] = [];
    await Promise.all(
      Array.from({ length: VISITS }, async (_, v) => {
        const sessionId = `bench-fleet-${instances}-${v}`;
        await fetch(`${gateways[0].baseUrl}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: sessionId, language: 'en' }) });
        const viewerToken = await signToken({ role: 'viewer', session: sessionId });
        const producerToken = await signToken({ role: 'producer', session: sessionId });
        // The doctor on the first gateway, the patient on the last; a viewer on each.
        const homes = { doctor: gateways[0], patient: gateways[gateways.length - 1] };
        const viewers = await Promise.all(gateways.map((g) => CaptionCollector.connect(g.baseUrl, sessionId, viewerToken)));
        const arrivals = viewers.map(() => new Map<number, number>());
        viewers.forEach((viewer, i) => (viewer.onEvent = (e) => e.type === 'final' && arrivals[i].set((e as FinalEvent).seq, performance.now())));
        await Promise.all(TRACKS.map((t) => streamChunks(ingestUrl(homes[t].baseUrl, sessionId, t, { format: 'opus', role: t, access_token: producerToken }), chunks[t], 1)));
        for (const viewer of viewers) await viewer.tracksEnded([...TRACKS], 60000);
        for (const final of viewers[0].finals) {
          const home = gateways.indexOf(homes[final.trackId as (typeof TRACKS)[number]]);
          const other = viewers.length > 1 ? 1 - home : home;
          const [atHome, atOther] = [arrivals[home].get(final.seq), arrivals[other].get(final.seq)];
          if (atHome !== undefined && atOther !== undefined) added.push(atOther - atHome);
        }
        for (const viewer of viewers) viewer.close();
      }),
    );
    const wall = (performance.now() - started) / 1000;
    const cpu = (await Promise.all(gateways.map((g, i) => cpuSeconds(g.child).then((s) => s - cpuBefore[i])))).reduce((a, b) => a + b, 0);
    return { cpuPerTrack: (cpu / wall / (VISITS * TRACKS.length)) * 100, added };
  } finally {
    await Promise.all(gateways.map((g) => stop(g.child)));
    await database.release();
  }
}

try {
  console.log(`${VISITS} visits of two tracks, ${SECONDS} s of audio each, streamed in real time; the test STT server answering at once`);
  console.log('| gateways | gateway CPU per track | ratio to one gateway | final at the other instance\'s viewer, added p50 / p95 / max |');
  console.log('|---|---|---|---|');
  let baseline = 0;
  for (const instances of [1, 2]) {
    const { cpuPerTrack, added } = await run(instances);
    baseline ||= cpuPerTrack;
    console.log(`| ${instances} | ${cpuPerTrack.toFixed(2)} % of a core | ${(cpuPerTrack / baseline).toFixed(2)}× | ${percentile(added, 50).toFixed(1)} / ${percentile(added, 95).toFixed(1)} / ${Math.max(...added).toFixed(1)} ms (${added.length} finals) |`);
  }
} finally {
  await stop(stt.child);
  await removeBenchData();
}
