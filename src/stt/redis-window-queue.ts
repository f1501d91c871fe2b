/**
 * The window queue on Redis with BullMQ: workers in the gateway and in separate `npm run worker`
 * processes (on other machines too) share it. A worker that dies mid-job loses its lock; BullMQ's stalled
 * check puts the job back for another worker. Window audio travels through Redis as binary keys next to
 * the jobs, so a worker needs nothing but Redis and the STT endpoint.
 */
import { Job, QueueEvents, Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { AudioSealer } from '../archive/data-keys.ts';
import type { Logger } from '../log.ts';
import { pcmBytes, pcmFromBytes, type WindowAudioRef, type ResumedJob, type RetryPolicy, type UploadPriority, type WindowAudioStore, type WindowJob, type WindowJobResult, type WindowProcessor, type WindowQueue, type WindowQueueListener } from './window-queue.ts';

export interface RedisQueueOptions extends RetryPolicy {
  /** Seals window audio; its key-encryption key must be the gateway's and every worker's (`AT_REST_KEY`). */
  sealer: AudioSealer;
  url: string;
  /** Queue name; the gateway and its workers must agree. */
  name: string;
  /** A job whose worker has not renewed its lock for this long is given to another worker. */
  lockMs: number;
  log: Logger;
}

/** BullMQ priorities: lower runs first. */
const BULL_PRIORITY: Record<UploadPriority, number> = { high: 1, normal: 10 };
/** Window audio not collected within this time (a deleted upload, a dead gateway) expires. */
const AUDIO_TTL_S = 7 * 24 * 3600;


/** Window audio in Redis, sealed under the session's data key (Redis never holds plaintext audio). */
export class RedisWindowAudio implements WindowAudioStore {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly sealer: AudioSealer;

  constructor(redis: Redis, queueName: string, sealer: AudioSealer) {
    this.redis = redis;
    this.prefix = `helssa:${queueName}:audio:`;
    this.sealer = sealer;
  }

  async put(ref: WindowAudioRef, audio: Int16Array): Promise<void> {
    await this.redis.set(this.prefix + ref.id, await this.sealer.seal(ref.dataKey, pcmBytes(audio), ref.id), 'EX', AUDIO_TTL_S);
  }

  async get(ref: WindowAudioRef): Promise<Int16Array | undefined> {
    const bytes = await this.redis.getBuffer(this.prefix + ref.id);
    return bytes ? pcmFromBytes(await this.sealer.open(ref.dataKey, bytes, ref.id)) : undefined;
  }

  async delete(id: string): Promise<void> {
    await this.redis.del(this.prefix + id);
  }

  async has(id: string): Promise<boolean> {
    return (await this.redis.exists(this.prefix + id)) === 1;
  }
}

export class RedisWindowQueue implements WindowQueue {
  readonly description: string;
  private readonly options: RedisQueueOptions;
  private readonly connection: Redis;
  private readonly queue: Queue<WindowJob, WindowJobResult>;
  private readonly audio: RedisWindowAudio;
  private events: QueueEvents | undefined;
  private readonly workers: Worker<WindowJob, WindowJobResult>[] = [];
  /** BullMQ leaves connections it was given open: each is closed here. */
  private readonly connections: Redis[] = [];

  constructor(options: RedisQueueOptions) {
    this.options = options;
    this.description = `redis (${new URL(options.url).host}, queue ${options.name})`;
    this.connection = this.connect();
    this.queue = new Queue<WindowJob, WindowJobResult>(options.name, { connection: this.connection });
    this.queue.on('error', (error) => options.log.debug({ err: error }, 'queue: Redis unreachable'));
    this.audio = new RedisWindowAudio(this.connection, options.name, options.sealer);
  }

  async add(jobs: { job: WindowJob; audio: Int16Array }[], priority: UploadPriority): Promise<void> {
    for (const { job, audio } of jobs) await this.audio.put(job, audio);
    await this.enqueue(jobs.map(({ job }) => job), priority);
  }

  async resume(job: WindowJob): Promise<ResumedJob> {
    const held = await Job.fromId<WindowJob, WindowJobResult>(this.queue, job.id);
    if (!held) {
      if (!(await this.audio.has(job.id))) return { state: 'released' };
      await this.enqueue([job], 'normal');
      return { state: 'queued' };
    }
    const state = await held.getState();
    if (state === 'completed') return { state: 'completed', result: held.returnvalue, attempts: held.attemptsMade };
    if (state === 'failed') return { state: 'dead', error: held.failedReason, attempts: held.attemptsMade };
    return { state: 'queued' };
  }

  private async enqueue(jobs: WindowJob[], priority: UploadPriority): Promise<void> {
    await this.queue.addBulk(
      jobs.map((job) => ({
        name: 'window',
        data: job,
        opts: {
          jobId: job.id,
          priority: BULL_PRIORITY[priority],
          attempts: this.options.attempts,
          backoff: { type: 'exponential', delay: this.options.backoffMs },
          // Kept until the gateway has stored the result (release), so a restarted gateway still finds it.
          removeOnComplete: false,
          removeOnFail: false,
        },
      })),
    );
  }

  async retry(jobs: WindowJob[]): Promise<void> {
    for (const { id } of jobs) {
      const job = await Job.fromId<WindowJob, WindowJobResult>(this.queue, id);
      if (job && (await job.isFailed())) await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    }
  }

  async release(job: WindowJob): Promise<void> {
    await this.queue.remove(job.id);
    await this.audio.delete(job.id);
  }

  listen(listener: WindowQueueListener): void {
    this.events = new QueueEvents(this.options.name, { connection: this.connect() });
    this.events.on('error', (error) => this.options.log.debug({ err: error }, 'queue events: Redis unreachable'));
    const withJob = (id: string, use: (job: Job<WindowJob, WindowJobResult>) => void) =>
      Job.fromId<WindowJob, WindowJobResult>(this.queue, id).then(
        (job) => job && use(job),
        (error) => this.options.log.error({ err: error, jobId: id }, 'could not read a finished window job'),
      );
    this.events.on('completed', ({ jobId }) => void withJob(jobId, (job) => listener.completed(job.data, job.returnvalue, job.attemptsMade)));
    this.events.on('failed', ({ jobId, failedReason }) =>
      void withJob(jobId, (job) => {
        if (job.attemptsMade >= (job.opts.attempts ?? 1) || job.finishedOn) listener.dead(job.data, failedReason, job.attemptsMade);
      }),
    );
  }

  /** Resolves once the event stream is subscribed (events before that moment would be missed). */
  async ready(): Promise<void> {
    await this.queue.waitUntilReady();
    await this.events?.waitUntilReady();
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
  }

  startWorker(processor: WindowProcessor, concurrency: number): void {
    const worker = new Worker<WindowJob, WindowJobResult>(
      this.options.name,
      async (job) => {
        const audio = await this.audio.get(job.data);
        if (!audio) throw new UnrecoverableError(`audio of window ${job.data.id} is gone`);
        return processor(job.data, audio);
      },
      { connection: this.connect(), concurrency, lockDuration: this.options.lockMs, stalledInterval: this.options.lockMs, maxStalledCount: 2 },
    );
    worker.on('completed', (job) => this.options.log.info({ jobId: job.id, attempts: job.attemptsMade }, 'window transcribed'));
    worker.on('failed', (job, error) => this.options.log.warn({ jobId: job?.id, attempt: job?.attemptsMade, reason: error.message }, 'window job attempt failed'));
    worker.on('error', (error) => this.options.log.error({ err: error }, 'queue worker error'));
    this.workers.push(worker);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
    await this.events?.close();
    await this.queue.close();
    for (const connection of this.connections) connection.disconnect();
  }

  private connect(): Redis {
    // BullMQ's blocking commands must wait for Redis to come back rather than fail after a few retries.
    const connection = new Redis(this.options.url, { maxRetriesPerRequest: null });
    // Redis restarting is reconnected to; said once per connection attempt at debug level, not thrown.
    connection.on('error', (error) => this.options.log.debug({ err: error }, 'queue: Redis unreachable'));
    this.connections.push(connection);
    return connection;
  }
}
