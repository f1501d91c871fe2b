/**
 * A separate upload worker (`npm run worker`): takes window jobs from the Redis queue and transcribes
 * them. It needs only Redis and the STT endpoint, so it can run on other machines; run as many as the
 * STT service can take. SIGTERM lets the jobs in hand finish; a killed worker's jobs go to another.
 */
import { ConfigError, loadWorkerConfig } from './config.ts';
import { AudioSealer, LocalKeyEncryptionKey } from './archive/data-keys.ts';
import { createLogger } from './log.ts';
import { RedisWindowQueue } from './stt/redis-window-queue.ts';
import { PIPELINE_SAMPLE_RATE } from './audio/opus-decoder.ts';
import { sttComponents } from './components.ts';
import { connectRecognizer } from './stt/recognizer-pool.ts';
import { WindowTranscriber } from './stt/window-transcriber.ts';
import { speechGuard } from './stt/speech-guard.ts';
import { InlineConditioner } from './audio/conditioner-thread.ts';

let started;
try {
  const config = loadWorkerConfig();
  const log = createLogger(config.LOG_LEVEL).child({ component: 'worker' });
  const c = sttComponents(config);
  started = { config, log, c, recognizer: await connectRecognizer(c, log) };
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`helssa-live worker: ${error.message}\n`);
  process.exit(78);
}
const { config, log, c, recognizer } = started;
const transcriber = new WindowTranscriber(recognizer, {
  concurrency: config.WORKER_CONCURRENCY, sampleRate: PIPELINE_SAMPLE_RATE, thresholds: c.thresholds, recheckMs: c.recognizer.recheckMs,
  ...(await speechGuard(c.inventedWords)),
  // The worker's jobs wait on nothing else that this thread carries: conditioned where they run.
  ...(c.conditioning ? { conditioner: new InlineConditioner({ ...c.conditioning, sampleRate: PIPELINE_SAMPLE_RATE }) } : {}),
  onRefusal: (refusal) => (refusal ? log.error({ reason: refusal.message }, 'the recognizer refuses requests: jobs wait') : log.info('the recognizer takes requests again')),
});
const queue = new RedisWindowQueue({
  url: config.REDIS_URL, name: c.queue.name, lockMs: c.queue.lockMs, attempts: c.queue.attempts, backoffMs: c.queue.backoffMs, log,
  sealer: new AudioSealer(new LocalKeyEncryptionKey(Buffer.from(config.AT_REST_KEY, 'base64'))),
});
queue.startWorker(transcriber.processUploadJob, config.WORKER_CONCURRENCY);
await queue.ready();
log.info({ queue: queue.description, concurrency: config.WORKER_CONCURRENCY }, 'upload worker ready');
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log.info({ signal }, 'worker stopping after the jobs in hand (jobs waiting for a refusing recognizer are left to the queue)');
    transcriber.close();
    recognizer.close?.();
    void queue.close().then(() => process.exit(0));
  });
}
