/**
 * What the recognizer is sent, per corpus language: audio sent to STT ÷ audio streamed (the session's
 * `sttAudio.factor`), for a conversation (doctor and patient tracks, pauses between turns) and a
 * dictation (the mixed track with a 1.5 s endpointing silence: one long utterance cut every 28 s, the
 * worst case for partials), with partials as configured (budget and tail windows), unbounded (every
 * partial re-sends the whole utterance, as before the budget), and off. The finals of each are
 * compared with those of "partials off": the budget must not change them. Streams at real time
 * (`BENCH_COST_SPEED` to change it): faster, a partial still in flight at the next tick is skipped and
 * the unbounded figures come out too low. About 10 minutes.
 */
import { ensureCorpus } from '../scripts/make-corpus.ts';
import { chunksFor, ingestUrl, streamChunks } from '../test/support/producer.ts';
import { signToken } from '../test/support/tokens.ts';
import { CaptionCollector } from '../test/support/viewer.ts';
import { wordErrorRate } from '../test/support/wer.ts';
import { removeBenchData, startGateway, startSttServer, stop } from './processes.ts';

const speed = Number(process.env.BENCH_COST_SPEED ?? 1);

const CONFIGS: { name: string; env: Record<string, string> }[] = [
  { name: 'partials budgeted', env: {} },
  { name: 'partials unbounded', env: { STT_PARTIAL_BUDGET: '100', PARTIAL_CONTEXT_MS: '30000', SEGMENT_SPECULATIVE_MS: '0' } },
  { name: 'partials off', env: { SEGMENT_PARTIAL_INTERVAL_MS: '0', SEGMENT_SPECULATIVE_MS: '0' } },
];

const SCENARIOS: { name: string; tracks: string[]; env: Record<string, string> }[] = [
  { name: 'conversation', tracks: ['doctor', 'patient'], env: {} },
  { name: 'dictation', tracks: ['mix'], env: { SEGMENT_SILENCE_MS: '1500' } },
];

interface Outcome {
  factor: number;
  sentMs: Record<string, number>;
  transcript: string;
}

async function stream(baseUrl: string, sessionId: string, language: string, tracks: string[], corpusDir: string): Promise<Outcome> {
  const viewer = await CaptionCollector.connect(baseUrl, sessionId, await signToken({ role: 'viewer', session: sessionId }));
  const token = await signToken({ role: 'producer', session: sessionId });
  await Promise.all(tracks.map(async (track) => {
    const chunks = await chunksFor({ format: 'opus', file: `${corpusDir}/${language}/${track}` });
    await streamChunks(ingestUrl(baseUrl, sessionId, track, { format: 'opus', role: track === 'patient' ? 'patient' : 'doctor', language, access_token: token }), chunks, speed);
  }));
  await viewer.tracksEnded(tracks, 600000);
  viewer.close();
  const status = await (await fetch(`${baseUrl}/v1/sessions/${sessionId}`, { headers: { authorization: `Bearer ${await signToken({ role: 'service' })}` } })).json();
  return { factor: status.sttAudio.factor, sentMs: status.sttAudio.sentMs, transcript: viewer.transcript() };
}

export async function sttCost(sttUrl: string): Promise<void> {
  const corpusDir = await ensureCorpus();
  const results = new Map<string, Outcome>();
  for (const scenario of SCENARIOS) {
    for (const config of CONFIGS) {
      const gateway = await startGateway(sttUrl, { ARCHIVE_INSECURE_DISABLE: 'true', ...scenario.env, ...config.env });
      await Promise.all(['en', 'fa', 'ar'].map(async (language) => {
        results.set(`${scenario.name}/${config.name}/${language}`, await stream(gateway.baseUrl, `cost-${scenario.name}-${language}`, language, scenario.tracks, corpusDir));
      }));
      await stop(gateway.child);
    }
  }
  console.log(`stt cost  audio sent to STT ÷ audio streamed (${speed}× real time; finals compared with "partials off"):`);
  for (const scenario of SCENARIOS) {
    for (const config of CONFIGS) {
      const line = ['en', 'fa', 'ar'].map((language) => {
        const r = results.get(`${scenario.name}/${config.name}/${language}`)!;
        const off = results.get(`${scenario.name}/partials off/${language}`)!;
        const differs = wordErrorRate(off.transcript, r.transcript).wer;
        const wasted = r.sentMs.speculative > 0 ? `, ${(r.sentMs.speculative / 1000).toFixed(1)} s speculative discarded` : '';
        return `${language} ${r.factor.toFixed(2)}× (partials ${(r.sentMs.partial / 1000).toFixed(0)} s${wasted}; finals ${differs === 0 ? 'same' : `differ ${(differs * 100).toFixed(1)}%`})`;
      });
      console.log(`          ${scenario.name.padEnd(12)} ${config.name.padEnd(19)} ${line.join('  ')}`);
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const stt = await startSttServer();
  try {
    await sttCost(stt.url);
  } finally {
    await stop(stt.child);
    await removeBenchData();
  }
}
