/**
 * The composition root: the one place that knows every adapter. It turns the configuration into
 * component options (components.ts, pure), builds the STT client and queues, the store, the archive
 * and the session registry, and mounts each endpoint on one Fastify instance. Every endpoint and every
 * component closes through `app.close()`, after the live tracks are drained.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import rateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import { Authenticator } from './api/auth.ts';
import { registerCaptions } from './api/captions.ts';
import { requireRole, sendError } from './api/http.ts';
import { ID_MAX_LENGTH } from './api/schemas.ts';
import { ConnectionLimits } from './api/limits.ts';
import { RtpIngest } from './api/rtp-ingest.ts';
import { registerSessionRoutes } from './api/sessions.ts';
import { registerUploadRoutes } from './api/uploads.ts';
import { registerSpeakerRoutes } from './api/speakers.ts';
import { limitRoutes, rateKey, requestLimits } from './api/rate-limits.ts';
import { Redis } from 'ioredis';
import { registerAnalyticsRoutes } from './api/analytics.ts';
import { AnalyticsQueries } from './store/analytics.ts';
import { knownDoctor } from './session/speaker-enrollment.ts';
import { DataLifecycle } from './session/data-lifecycle.ts';
import { AlertWebhook, sampleMetrics } from './api/alert-webhook.ts';

/** The advisory lock the retention sweep holds while it runs (one gateway of a fleet at a time). */
const RETENTION_LOCK = 727_002;
/** A producer's connection (WebSocket ingest, WHIP, RTP set-up). */
const PRODUCER_PATH = /^\/v1\/sessions\/[^/]+\/tracks\/[^/]+\/(ingest|whip|rtp)(\/|\?|$)/;
import { WebhookNotifier } from './api/webhook.ts';
import { registerWebSocketIngest } from './api/websocket-ingest.ts';
import { WhipIngest } from './api/whip-ingest.ts';
import { ArchiveThread } from './archive/archive-thread.ts';
import { Archiver } from './archive/archiver.ts';
import { AudioSealer, localKeyEncryptionKey } from './archive/data-keys.ts';
import { LocalObjectStore, S3ObjectStore } from './archive/object-store.ts';
import { PIPELINE_SAMPLE_RATE } from './audio/opus-decoder.ts';
import { trackVad, type VoiceActivityDetector } from './audio/vad.ts';
import { DspThreads } from './audio/dsp-thread.ts';
import { EVERY_SPEECH_FRAME, SpeechSampler } from './audio/voice-features.ts';
import { gatewayComponents, type GatewayComponents } from './components.ts';
import type { Config } from './config.ts';
import { Draining, GatewayError } from './errors.ts';
import type { Logger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { InProcessCaptionBus, type CaptionBus } from './session/caption-bus.ts';
import { RedisCaptionBus } from './session/redis-caption-bus.ts';
import { RedisTailStore } from './session/redis-tail-store.ts';
import { TrackTails } from './session/track-tail.ts';
import { SessionRegistry } from './session/registry.ts';
import { TrackPipeline } from './session/track-pipeline.ts';
import { UploadService } from './session/uploads.ts';
import { openDatabase } from './store/database.ts';
import { SessionStore } from './store/session-store.ts';
import { RedisWindowQueue } from './stt/redis-window-queue.ts';
import type { Recognizer } from './stt/recognizer.ts';
import { connectRecognizer } from './stt/recognizer-pool.ts';
import type { Transcriber } from './stt/transcriber.ts';
import { DirectoryWindowAudio, InProcessWindowQueue, type WindowQueue } from './stt/window-queue.ts';
import { WindowTranscriber } from './stt/window-transcriber.ts';
import { speechGuard } from './stt/speech-guard.ts';
import { ConditionerThread } from './audio/conditioner-thread.ts';
import { DenoiserThreads } from './audio/denoiser-thread.ts';
import { streamOn } from './audio/noise-suppressor.ts';
import { SpectralDenoiser } from './audio/spectral-denoiser.ts';
import { ClinicalPrompts, CLINICAL_PROMPTS_DIR } from './stt/clinical-vocabulary.ts';
import { isClinicalTerm } from './stt/clinical-prompt.ts';
import type { WindowSpeechDetector } from './audio/silero-vad.ts';

export interface Gateway {
  app: FastifyInstance;
  /** Open WebRTC peer connections and plain RTP ports (for leak checks). */
  transports(): { peers: number; rtpPorts: number };
  registry: SessionRegistry;
  store: SessionStore;
  metrics: Metrics;
  /** Deletion and retention of stored visits (its sweep runs on RETENTION_SWEEP_MS once listening). */
  lifecycle: DataLifecycle;
  /** Listens on the configured host/port; resolves with the bound port. */
  listen(): Promise<number>;
  close(): Promise<void>;
}

/** Adapters a caller may supply instead of the configured ones (another recognizer, another VAD). */
export interface GatewayAdapters {
  transcriber?: Transcriber;
  /** The speech check's detector in place of Silero VAD. */
  speechDetector?: WindowSpeechDetector;
  /** A new voice-activity detector for one track or upload. */
  vad?: () => VoiceActivityDetector;
}

export async function createGateway(config: Config, log: Logger, adapters: GatewayAdapters = {}): Promise<Gateway> {
  const c = gatewayComponents(config);
  const metrics = createMetrics();
  const conditioning = c.conditioning;
  // The VAD hears the track with mains hum notched out (it cuts the same windows as on clean audio under
  // hum); the windows keep the audio as received.
  const hearing = conditioning?.humNotch ? { ...conditioning, sampleRate: PIPELINE_SAMPLE_RATE } : undefined;
  const vadSettings = { sampleRate: PIPELINE_SAMPLE_RATE, aggressiveness: c.vadAggressiveness, hearing };
  const newVad = adapters.vad ?? (() => trackVad(vadSettings));
  // Told of the recognizer's refusals, which can begin before the registry exists.
  const sessions: { registry?: SessionRegistry } = {};
  const connected = adapters.transcriber ? undefined : await connectRecognizer(c, log, {
    onOutcome: (endpoint, outcome) => metrics.sttEndpointRequests.inc({ endpoint, outcome }),
    onState: (endpoint, state) => metrics.sttEndpointOpen.set({ endpoint }, state === 'open' ? 1 : state === 'half-open' ? 0.5 : 0),
  });
  const recognizer = adapters.transcriber ?? connected!;
  const inventedWords = await speechGuard(c.inventedWords, adapters.speechDetector);
  // Noise suppression runs on each track as it streams, before the VAD: RNNoise in worker threads of its
  // own; the spectral suppressor (cheap) with the track's decoding, in a DSP worker or on this thread.
  const denoisedTracks = (on: boolean) => metrics.denoisedTracks.inc(on ? 1 : -1);
  const rnnoise = c.noiseSuppression !== 'rnnoise' && c.noiseSuppression !== 'auto' ? undefined : await DenoiserThreads.start(c.noiseSuppressionThreads, {
    onDied: (error) => log.error({ err: error }, 'a noise suppression worker died: its tracks go on without noise suppression'),
    onShed: (streams, lagMs) => {
      metrics.denoiserShed.inc(streams);
      log.warn({ streams, lagMs: Math.round(lagMs) }, 'a noise suppression worker fell behind: some of its tracks go on without noise suppression (more noisy tracks than AUDIO_NOISE_SUPPRESSION_THREADS keep up with)');
    },
  });
  const spectral = c.noiseSuppression === 'spectral';
  const newDenoiser = rnnoise
    ? () => rnnoise.stream({ auto: c.noiseSuppression === 'auto', onEngaged: denoisedTracks })
    : spectral ? () => streamOn(new SpectralDenoiser({ auto: true, onEngaged: denoisedTracks })) : undefined;
  // Live tracks are decoded and heard by the VAD in worker threads, unless their VAD hears denoised audio or is the caller's.
  const dsp = c.dspThreads > 0 && !rnnoise && !adapters.vad
    ? await DspThreads.start(c.dspThreads, vadSettings, PIPELINE_SAMPLE_RATE / 50, { onDied: (error) => log.error({ err: error }, 'a DSP worker died: its tracks are decoded on the event loop from now on') })
    : undefined;
  const conditioner = conditioning ? await ConditionerThread.start({ ...conditioning, sampleRate: PIPELINE_SAMPLE_RATE }) : undefined;
  const windowTranscriber = new WindowTranscriber(recognizer, {
    concurrency: c.stt.concurrency,
    recheckMs: c.recognizer.recheckMs,
    onRefusal: (refusal) => {
      metrics.sttRefusing.set(refusal ? 1 : 0);
      if (refusal) {
        metrics.sttRefusals.inc();
        log.error({ reason: refusal.message }, 'the recognizer refuses requests: windows are kept, nothing is sent until it takes them (checked every STT_REFUSED_RECHECK_MS)');
      } else {
        log.info('the recognizer takes requests again');
      }
      sessions.registry?.sttStateChanged();
    },
    sampleRate: PIPELINE_SAMPLE_RATE,
    thresholds: c.thresholds,
    ...inventedWords,
    onSkipped: (kind) => metrics.windowsSkipped.inc({ kind }),
    onSent: (kind, seconds) => {
      metrics.sttAudioSeconds.inc({ kind }, seconds);
      metrics.sttCalls.inc({ kind });
    },
    onDropped: (reason, words) => metrics.hallucinationsDropped.inc({ reason }, words),
    conditioner,
    onConditioned: (conditioning) => {
      metrics.conditioningGain.observe(conditioning.gainDb);
      if (conditioning.humHz) metrics.humNotched.inc({ hz: String(conditioning.humHz) });
    },
    backlogMemoryS: c.stt.backlogMemoryS,
    spillDir: c.stt.spillDir,
    onBacklog: (backlog) => {
      metrics.sttBacklogWindows.set(backlog.windows);
      metrics.sttBacklogSeconds.set(backlog.audioSeconds);
      metrics.sttBacklogSpilled.set(backlog.spilled);
    },
  });
  const clinicalPrompts = await ClinicalPrompts.load(CLINICAL_PROMPTS_DIR, c.stt.prompt);
  const { kek, generated } = await localKeyEncryptionKey(c.atRestKey, c.keyFile);
  if (generated) log.warn('AT_REST_KEY is not set: made a key-encryption key for audio at rest in DATA_DIR/keys; set AT_REST_KEY (from a secret store) to share it with workers');
  // Gateways of a fleet read each other's sealed audio (upload windows, track tails): one key for all.
  if (c.queue.redisUrl && !c.atRestKey) log.error('REDIS_URL is set but AT_REST_KEY is not: this gateway cannot read the audio other gateways and workers seal (upload windows, the tails of tracks whose gateway stopped); give every instance the same AT_REST_KEY');
  const sealer = new AudioSealer(kek);
  const limits = new ConnectionLimits();
  const database = await openDatabase(c.database);
  log.info({ driver: database.driver }, 'database ready');
  const instanceId = c.fleet.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const store = new SessionStore(database.db, instanceId);
  await store.renewLease(c.fleet.leaseMs);
  let draining = false;
  // Renewed at a third of the lease: two renewals may fail (a database restart) before others take over.
  const leaseTimer = setInterval(() => void store.renewLease(c.fleet.leaseMs, draining).catch((error) => log.warn({ err: error }, 'could not renew this gateway\'s lease')), c.fleet.leaseMs / 3).unref();
  const redisBus = c.queue.redisUrl ? new RedisCaptionBus(c.queue.redisUrl, instanceId, log) : undefined;
  const bus: CaptionBus = redisBus ?? new InProcessCaptionBus().connect(instanceId);
  log.info({ instanceId, bus: redisBus ? 'redis' : 'in-process' }, 'gateway instance');
  const webhook = c.webhook ? new WebhookNotifier(c.webhook, store, log) : undefined;
  const archiver = createArchiver(c, store, log);
  // A fleet keeps each live track's audio past its stored finals in Redis, for the gateway a producer that cannot resend reaches next.
  const tailStore = c.queue.redisUrl && c.fleet.tailEveryMs > 0 ? new RedisTailStore(c.queue.redisUrl, log) : undefined;
  const tails = tailStore
    ? new TrackTails({ store: tailStore, sealer, dataKey: async (sessionId) => (await store.dataKey(sessionId, () => sealer.newDataKey()))!, flushEveryMs: c.fleet.tailEveryMs, ttlMs: c.fleet.tailTtlMs, log })
    : undefined;
  const clinicalTerms = (language: string | undefined, vocabulary: readonly string[]) => {
    const { lexicon } = clinicalPrompts.forTrack(language ?? c.stt.language, vocabulary);
    return (word: string) => isClinicalTerm(lexicon, word);
  };
  // A diarizing recognizer (diarized_json) is told the doctor's enrolled voice with each diarized window.
  const diarizingRecognizer = () => 'capabilities' in recognizer && (recognizer as Recognizer).capabilities.responseFormat === 'diarized_json';
  const knownSpeakers = (participant: string) => (diarizingRecognizer() ? knownDoctor(store, sealer, participant) : Promise.resolve([]));
  const registry = new SessionRegistry({
    bus,
    clinicalTerms,
    knownSpeakers,
    sttModel: c.recognizer.model,
    sttPricePerMinute: c.sttPrices[c.recognizer.model],
    factory: (request) =>
      new TrackPipeline({
        ...request,
        language: request.language ?? c.stt.language,
        prompts: clinicalPrompts.forTrack(request.language ?? c.stt.language, request.vocabulary),
        segmenter: c.segmenter,
        partialBudget: c.stt.partialBudget,
        partialContextMs: c.stt.partialContextMs,
        ...(dsp
          ? { frontEnd: dsp.stream(request.diarizer ? new SpeechSampler(EVERY_SPEECH_FRAME) : request.voice?.sampler, spectral ? { onEngaged: denoisedTracks } : undefined) }
          : { vad: newVad(), denoiser: newDenoiser?.() }),
        transcriber: windowTranscriber,
        metrics,
        realTime: c.realTime,
      }),
    store,
    archiver,
    tails,
    log,
    metrics,
    onCompleted: (session, version) => webhook?.notify(session, version),
    maxLiveTracks: c.caps.tracksPerSession,
    resumeWindowMs: c.resumeWindowMs,
    sttRefusal: () => windowTranscriber.refused?.message,
    languages: c.stt.languages,
  });
  sessions.registry = registry;
  const policy = { attempts: c.queue.attempts, backoffMs: c.queue.backoffMs };
  const redisQueue = c.queue.redisUrl ? new RedisWindowQueue({ url: c.queue.redisUrl, name: c.queue.name, lockMs: c.queue.lockMs, log, sealer, ...policy }) : undefined;
  const windowQueue: WindowQueue = redisQueue ?? new InProcessWindowQueue(new DirectoryWindowAudio(c.uploads.queueDir, sealer), policy);
  const uploads = new UploadService({
    registry, store, queue: windowQueue, archiver, log, sealer, vad: newVad, denoiser: () => newDenoiser?.(), clinicalTerms, metrics, prompts: (language, vocabulary) => clinicalPrompts.forTrack(language ?? c.stt.language, vocabulary), languages: c.stt.languages,
    workDir: c.uploads.workDir, maxBytes: c.uploads.maxBytes, maxDurationMs: c.uploads.maxDurationMs, bodyIdleTimeoutMs: c.uploads.bodyIdleTimeoutMs, segmenter: c.uploads.segmenter,
  });
  metrics.probes.uploadWindowsPending = () => uploads.pendingWindows();
  metrics.probes.archivePendingUploads = () => archiver?.pendingUploads ?? 0;
  const alerts = c.alertWebhook ? new AlertWebhook(c.alertWebhook, () => sampleMetrics(metrics), log) : undefined;
  const lifecycle = new DataLifecycle({ store, registry, archiver, log, retention: c.retention, exclusive: (work) => database.exclusive(RETENTION_LOCK, work) });
  if (c.uploads.workers > 0) windowQueue.startWorker(windowTranscriber.processUploadJob, c.uploads.workers);
  log.info({ queue: windowQueue.description, workers: c.uploads.workers }, 'upload queue ready');
  const authenticator = new Authenticator(c.auth);

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // Unknown body fields are refused (400), not silently dropped.
    ajv: { customOptions: { removeAdditional: false } },
    // Above the longest id, so a too-long id gets the id's own 400 rather than the router's 414.
    routerOptions: { maxParamLength: ID_MAX_LENGTH * 2 },
    // A connection that sends nothing for this long is closed (slow headers or bodies); a whole request
    // (the largest upload included) must arrive within requestTimeout.
    connectionTimeout: c.http.idleTimeoutMs,
    requestTimeout: c.http.requestTimeoutMs,
    clientErrorHandler: answerClientError,
  });
  // Components outside HTTP close with the app, after its endpoints, the database last.
  app.addHook('onClose', async () => {
    // First: what waits for a refusing recognizer stops waiting, so the upload jobs in hand can end.
    windowTranscriber.close();
    connected?.close?.();
    await windowQueue.close();
    await inventedWords.speechCheck?.detector.close?.();
    await conditioner?.close();
    await rnnoise?.close();
    await dsp?.close();
    await webhook?.close();
    await lifecycle.close();
    await alerts?.close();
    await archiver?.close();
    rateRedis?.disconnect();
    await bus.close();
    await tailStore?.close();
    clearInterval(leaseTimer);
    await store.endLease().catch((error) => log.warn({ err: error }, 'could not end this gateway\'s lease; it runs out by itself'));
    await database.close();
  });
  // An answer given before the body was read (401, 403, 413, …): the connection closes after it rather
  // than waiting, open, for the rest of a body nobody will read.
  app.addHook('onSend', async (request, reply) => {
    if (reply.statusCode >= 400 && !request.raw.complete) reply.header('connection', 'close');
  });
  // One handler for every endpoint: catalogued errors (errors.ts) carry their status and code.
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof GatewayError) {
      if (error.retryAfterS !== undefined) reply.header('retry-after', String(error.retryAfterS));
      // A draining gateway turning producers away is the plan, not a failure.
      if (error.status >= 500 && !(error instanceof Draining)) request.log.error({ err: error }, 'request failed');
      return sendError(reply, error.status, error.code, error.message);
    }
    if (error.validation) {
      const [issue] = error.validation;
      const field = (issue?.params as { missingProperty?: string })?.missingProperty ?? issue?.instancePath.replace(/^\//, '').replace(/\//g, '.');
      return reply.code(400).send({ error: { code: 'invalid_request', message: error.message, ...(field ? { field } : {}) } });
    }
    if (error.statusCode && error.statusCode < 500) return sendError(reply, error.statusCode, error.code ?? 'bad_request', error.message);
    request.log.error({ err: error }, 'request failed');
    return sendError(reply, error.statusCode ?? 500, 'internal_error', 'internal error');
  });
  app.setNotFoundHandler((_request, reply) => sendError(reply, 404, 'not_found', 'no such endpoint'));
  await app.register(swagger, {
    openapi: {
      info: { title: 'HELSSA Live gateway', version: '0.1.0', description: 'Real-time transcription of medical consultations. WebSocket endpoints are described in the README.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
  });
  // Requests per minute for each token (or address, without one); session creation has its own limit.
  // Counted in Redis when there is one (every gateway of a fleet shares the counts); a Redis that is
  // down does not stop requests (skipOnError): the caps on open connections still hold.
  const rateRedis = c.queue.redisUrl ? new Redis(c.queue.redisUrl, { connectTimeout: 2000, maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false }) : undefined;
  rateRedis?.on('error', (error) => log.debug({ err: error }, 'rate-limit store unreachable'));
  await app.register(rateLimit, {
    max: c.http.rateLimits.perMinute,
    timeWindow: 60000,
    keyGenerator: rateKey,
    ...(rateRedis ? { redis: rateRedis, nameSpace: 'helssa-rate:', skipOnError: true } : {}),
    errorResponseBuilder: (_request, context) => ({ statusCode: 429, code: 'rate_limited', message: `too many requests: at most ${context.max} a minute; retry after ${context.after}` }),
  });
  limitRoutes(app, requestLimits(app, c.http.rateLimits));
  await app.register(websocket, { options: { maxPayload: c.http.maxFrameBytes } });

  // Liveness probes cannot carry tokens, so health says only that the process answers.
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  // A draining gateway takes no new producer (a producer it told to reconnect goes to another instance).
  app.addHook('onRequest', async (request) => {
    if (draining && request.method !== 'DELETE' && PRODUCER_PATH.test(request.url)) throw new Draining();
  });
  // Readiness, for load balancers: no new work while draining or while the database or Redis is
  // unreachable (what is degraded is named, nothing more).
  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    const checks = { draining, database: await withTimeout(store.ping()), redis: redisBus ? await withTimeout(redisBus.ping()) : true };
    const ready = !checks.draining && checks.database && checks.redis;
    // Which STT endpoints are in use and which are skipped (with STT_BASE_URLS); not a readiness condition.
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unavailable', instance: instanceId, ...checks, ...(connected?.status ? { sttEndpoints: connected.status } : {}) });
  });
  // The API description holds no data; tools fetch it without a token.
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/metrics', { schema: { hide: true }, preValidation: requireRole(authenticator, ['service'], { unscoped: true }) }, async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  // The producer and captions pages and the browser SDK they use: static files that hold no data.
  await app.register(fastifyStatic, { root: fileURLToPath(new URL('../public', import.meta.url)), prefix: '/', schemaHide: true });
  await app.register(fastifyStatic, { root: fileURLToPath(new URL('../client-sdk/dist', import.meta.url)), prefix: '/sdk/', decorateReply: false, schemaHide: true });
  // The dashboard's charting library, served by the gateway itself (no CDN: clinics' networks are closed).
  await app.register(fastifyStatic, { root: dirname(createRequire(import.meta.url).resolve('chart.js')), prefix: '/vendor/chart/', decorateReply: false, schemaHide: true, allowedPath: (path) => path === '/chart.umd.min.js' });
  const caps = { limits, maxConnectionsPerIp: c.caps.connectionsPerIp };
  await app.register(registerSessionRoutes, { registry, store, lifecycle, authenticator, endWaitMs: c.http.endWaitMs });
  await app.register(registerWebSocketIngest, { registry, authenticator, log, heartbeatMs: c.http.heartbeatMs, maxTracksPerToken: c.caps.liveTracksPerToken, resumeWindowMs: c.resumeWindowMs, ...caps });
  await app.register(registerCaptions, { registry, store, authenticator, heartbeatMs: c.http.heartbeatMs, maxViewersPerToken: c.caps.viewersPerToken, maxBufferedBytes: c.http.viewerMaxBufferedBytes, ...caps });
  await app.register(registerUploadRoutes, { uploads, store, authenticator });
  await app.register(registerAnalyticsRoutes, { analytics: new AnalyticsQueries(database.db, c.sttPrices), authenticator });
  await app.register(registerSpeakerRoutes, { store, authenticator, enrollment: { workDir: c.uploads.workDir, vad: newVad, bodyIdleTimeoutMs: c.uploads.bodyIdleTimeoutMs, sealer } });
  const whip = new WhipIngest({ ...c.webrtc, limits, maxTracksPerToken: c.caps.liveTracksPerToken }, log);
  await app.register(whip.plugin, { registry, authenticator });
  const rtp = new RtpIngest({ ...c.rtp, limits, maxTracksPerToken: c.caps.liveTracksPerToken }, log);
  await app.register(rtp.plugin, { registry, authenticator });

  let closing: Promise<void> | undefined;
  return {
    app,
    transports: () => ({ peers: whip.openPeers, rtpPorts: rtp.openPorts }),
    registry,
    store,
    metrics,
    lifecycle,
    async listen() {
      const recovered = await archiver?.recover();
      if (recovered) log.warn({ recovered }, 'recordings left by a previous process queued for upload');
      await redisQueue?.ready();
      await uploads.recover();
      await app.listen(c.listen);
      void registry.resumeEnding().catch((error) => log.error({ err: error }, 'could not resume ending sessions'));
      void webhook?.resumePending().catch((error) => log.error({ err: error }, 'could not resume webhooks'));
      lifecycle.start();
      alerts?.start();
      return (app.server.address() as { port: number }).port;
    },
    close() {
      closing ??= shutdown();
      return closing;
    },
  };

  async function shutdown(): Promise<void> {
    draining = true;
    await store.renewLease(c.fleet.leaseMs, true).catch(() => undefined);
    // Producers are asked to reconnect, and what they sent is transcribed and stored first (bounded).
    const drained = await Promise.race([
      registry.drain().then(() => true),
      new Promise<false>((resolve) => setTimeout(resolve, c.shutdownDrainMs, false).unref()),
    ]);
    if (!drained) log.warn({ afterMs: c.shutdownDrainMs }, 'shutdown drain timed out; windows still at STT are dropped');
    await app.close();
  }
}

/** Whether a check answers within a second. */
async function withTimeout(check: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(resolve, 1000, false)));
  try {
    return await Promise.race([check.then(() => true, () => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Errors Node's HTTP parser meets before Fastify sees a request, answered in the API's error shape. */
function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const [status, code, message] =
    error.code === 'HPE_HEADER_OVERFLOW' ? [431, 'headers_too_large', 'request headers too large']
    : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'request_timeout', 'the request did not arrive in time']
    : [400, 'bad_request', 'malformed HTTP request'];
  const body = JSON.stringify({ error: { code, message } });
  socket.end(`HTTP/1.1 ${status} ${code}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

function createArchiver(c: GatewayComponents, store: SessionStore, log: Logger): Archiver | undefined {
  if (!c.archive) {
    const warning = 'ARCHIVE_INSECURE_DISABLE=true: recordings are NOT archived. Never run a clinic like this.';
    log.warn(warning);
    process.stderr.write(`\n*** WARNING: ${warning} ***\n\n`);
    return undefined;
  }
  const { store: where, ...archive } = c.archive;
  const objects = where.kind === 's3' ? new S3ObjectStore(where) : new LocalObjectStore(where.dir);
  log.info({ store: objects.description, recipients: archive.recipients.length }, 'archiving recordings, encrypted');
  return new Archiver({ ...archive, objects, store, log, spools: new ArchiveThread() });
}
