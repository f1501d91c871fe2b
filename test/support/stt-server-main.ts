/** Runs the test STT server on its own (demo, benchmarks, trying the gateway by hand). */
import { ensureCorpus } from '../../scripts/make-corpus.ts';
import { SttServer } from './stt-server.ts';

const server = await new SttServer({
  corpusDir: await ensureCorpus(),
  latencyMs: Number(process.env.STT_LATENCY_MS ?? 0),
  hallucinateOnSilence: process.env.STT_HALLUCINATE === '1',
  confidentHallucinations: process.env.STT_HALLUCINATE === 'confident',
  noisyCorpus: process.env.STT_HALLUCINATE === 'confident',
}).start(Number(process.env.PORT ?? 0));
process.stdout.write(`${server.baseUrl}\n`);
