/**
 * The composition root: the one place that knows every adapter. It builds the STT client and queue,
 * the VAD and segmenter settings, the session registry, and the HTTP/WebSocket server around them.
 */
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import fastifyStatic from '@fastify/static';
import { fileURLToPath } from 'node:url';
import rateLimit from '@fastify/rate-limit';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify';
import { WebRtcVad, type VoiceActivityDetector } from './audio/vad.ts';
import { AudioSealer, localKeyEncryptionKey } from './archive/data-keys.ts';
import { GatewayError } from './errors.ts';
import { ConnectionLimits } from './api/limits.ts';
import { PIPELINE_SAMPLE_RATE } from './audio/opus-decoder.ts';
import { Authenticator } from './api/auth.ts';
import { registerCaptions } from './api/captions.ts';
import { ID_MAX_LENGTH, requireRole, sendError, tokenOf } from './api/http.ts';
import { registerSessionRoutes } from './api/sessions.ts';
import { WebhookNotifier } from './api/webhook.ts';
import { ConfigError, type Config } from './config.ts';
import { registerWebSocketIngest } from './api/websocket-ingest.ts';
import type { Logger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { Segmenter } from './segmenter/segmenter.ts';
import { SessionRegistry } from './session/registry.ts';
import { join } from 'node:path';
import { Encrypter } from 'age-encryption';
import { Archiver } from './archive/archiver.ts';
import { LocalObjectStore, S3ObjectStore, type ObjectStore } from './archive/object-store.ts';
import { openDatabase } from './store/database.ts';
import { SessionStore } from './store/session-store.ts';
import { TrackPipeline } from './session/track-pipeline.ts';
import type { Transcriber } from './stt/transcriber.ts';
import { createWindowTranscriber } from './stt/window-transcriber.ts';
import { DirectoryWindowAudio, InProcessWindowQueue, type WindowQueue } from './stt/window-queue.ts';
import { RedisWindowQueue } from './stt/redis-window-queue.ts';
import { UploadService } from './session/uploads.ts';
import { registerUploadRoutes } from './api/uploads.ts';
import { WhipIngest } from './api/whip-ingest.ts';
import { RtpIngest } from './api/rtp-ingest.ts';

export interface Gateway {
  app: FastifyInstance;
  /** Open WebRTC peer connections and plain RTP ports (for leak checks). */
  transports(): { peers: number; rtpPorts: number };
  registry: SessionRegistry;
  store: SessionStore;
  metrics: Metrics;
  /** Listens on the configured host/port; resolves with the bound port. */
  listen(): Promise<number>;
  close(): Promise<void>;
}

/** Adapters a caller may supply instead of the configured ones (another recognizer, another VAD). */
export interface GatewayAdapters {
  transcriber?: Transcriber;
  /** A new voice-activity detector for one track or upload. */
  vad?: () => VoiceActivityDetector;
}

export async function createGateway(config: Config, log: Logger, adapters: GatewayAdapters = {}): Promise<Gateway> {
  const metrics = createMetrics();
  const newVad = adapters.vad ?? (() => new WebRtcVad(PIPELINE_SAMPLE_RATE, config.VAD_AGGRESSIVENESS));
  const windowTranscriber = createWindowTranscriber(config, config.STT_CONCURRENCY, adapters.transcriber, {
    backlogMemoryS: config.STT_BACKLOG_MEMORY_S,
    spillDir: join(config.DATA_DIR, 'stt-backlog'),
    onBacklog: (backlog) => {
      metrics.sttBacklogWindows.set(backlog.windows);
      metrics.sttBacklogSeconds.set(backlog.audioSeconds);
      metrics.sttBacklogSpilled.set(backlog.spilled);
    },
  });
  const { kek, generated } = await localKeyEncryptionKey(config.AT_REST_KEY, join(config.DATA_DIR, 'keys', 'at-rest.key'));
  if (generated) log.warn('AT_REST_KEY is not set: made a key-encryption key for audio at rest in DATA_DIR/keys; set AT_REST_KEY (from a secret store) to share it with workers');
  const sealer = new AudioSealer(kek);
  const limits = new ConnectionLimits();
  const segmenter = {
    preRollMs: config.SEGMENT_PRE_ROLL_MS,
    silenceMs: config.SEGMENT_SILENCE_MS,
    trailingPadMs: Math.min(300, config.SEGMENT_SILENCE_MS),
    maxWindowMs: config.SEGMENT_MAX_WINDOW_MS,
    cutSearchMs: Math.min(4000, Math.floor(config.SEGMENT_MAX_WINDOW_MS / 4)),
    overlapMs: config.SEGMENT_OVERLAP_MS,
    partialIntervalMs: config.SEGMENT_PARTIAL_INTERVAL_MS,
  };
  try {
    new Segmenter(segmenter);
  } catch (error) {
    throw new ConfigError(`invalid configuration:\n  SEGMENT_*: ${(error as Error).message}`);
  }
  const database = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR });
  log.info({ driver: database.driver }, 'database ready');
  const store = new SessionStore(database.db);
  const webhook = config.WEBHOOK_URL
    ? new WebhookNotifier(
        { url: config.WEBHOOK_URL, secret: config.WEBHOOK_SECRET!, maxAttempts: config.WEBHOOK_MAX_ATTEMPTS, retryBaseMs: config.WEBHOOK_RETRY_BASE_MS, timeoutMs: config.WEBHOOK_TIMEOUT_MS, publicUrl: config.PUBLIC_URL },
        store,
        log,
      )
    : undefined;
  const archiver = createArchiver(config, store, log);
  const registry = new SessionRegistry({
    factory: (request) =>
      new TrackPipeline({
        ...request,
        language: request.language ?? config.STT_LANGUAGE,
        prompt: config.STT_PROMPT,
        segmenter,
        vad: newVad(),
        transcriber: windowTranscriber,
        metrics,
        realTime: { maxSpeed: config.INGEST_MAX_SPEED, burstMs: config.INGEST_BURST_MS },
      }),
    store,
    archiver,
    log,
    metrics,
    onCompleted: (session, version) => webhook?.notify(session, version),
    maxLiveTracks: config.MAX_TRACKS_PER_SESSION,
  });
  const policy = { attempts: config.QUEUE_ATTEMPTS, backoffMs: config.QUEUE_BACKOFF_MS };
  const redisQueue = config.REDIS_URL ? new RedisWindowQueue({ url: config.REDIS_URL, name: config.QUEUE_NAME, lockMs: config.QUEUE_LOCK_MS, log, sealer, ...policy }) : undefined;
  const windowQueue: WindowQueue = redisQueue ?? new InProcessWindowQueue(new DirectoryWindowAudio(join(config.DATA_DIR, 'queue'), sealer), policy);
  const uploads = new UploadService({
    registry,
    store,
    queue: windowQueue,
    archiver,
    log,
    workDir: join(config.DATA_DIR, 'uploads'),
    maxBytes: config.UPLOAD_MAX_BYTES,
    maxDurationMs: config.UPLOAD_MAX_DURATION_S * 1000,
    bodyIdleTimeoutMs: config.UPLOAD_BODY_IDLE_TIMEOUT_MS,
    sealer,
    segmenter: { ...segmenter, silenceMs: config.UPLOAD_SILENCE_MS, maxWindowMs: config.UPLOAD_MAX_WINDOW_MS, cutSearchMs: Math.min(4000, Math.floor(config.UPLOAD_MAX_WINDOW_MS / 4)) },
    vad: newVad,
    prompt: config.STT_PROMPT,
  });
  if (config.UPLOAD_WORKERS > 0) windowQueue.startWorker(windowTranscriber.processUploadJob, config.UPLOAD_WORKERS);
  log.info({ queue: windowQueue.description, workers: config.UPLOAD_WORKERS }, 'upload queue ready');
  const authenticator = new Authenticator({
    secret: config.JWT_SECRET, jwksUrl: config.JWT_JWKS_URL, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE,
    maxTtlS: config.JWT_MAX_TTL_S, clockSkewS: config.JWT_CLOCK_SKEW_S,
  });

  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // Unknown body fields are refused (400), not silently dropped.
    ajv: { customOptions: { removeAdditional: false } },
    // Above the longest id, so a too-long id gets the id's own 400 rather than the router's 414.
    routerOptions: { maxParamLength: ID_MAX_LENGTH * 2 },
    // A connection that sends nothing for this long is closed (slow headers or bodies); a whole request
    // (the largest upload included) must arrive within requestTimeout.
    connectionTimeout: config.HTTP_IDLE_TIMEOUT_MS,
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
    clientErrorHandler: answerClientError,
  });
  // An answer given before the body was read (401, 403, 413, …): the connection closes after it rather
  // than waiting, open, for the rest of a body nobody will read.
  app.addHook('onSend', async (request, reply) => {
    if (reply.statusCode >= 400 && !request.raw.complete) reply.header('connection', 'close');
  });
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof GatewayError) {
      if (error.retryAfterS !== undefined) reply.header('retry-after', String(error.retryAfterS));
      if (error.status >= 500) request.log.error({ err: error }, 'request failed');
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
  await app.register(rateLimit, {
    max: config.RATE_LIMIT_PER_MINUTE,
    timeWindow: 60000,
    keyGenerator: (request: FastifyRequest) => {
      const token = tokenOf(request);
      return token ? `token:${createHash('sha256').update(token).digest('hex').slice(0, 32)}` : `ip:${request.ip}`;
    },
    errorResponseBuilder: (_request, context) => ({ statusCode: 429, code: 'rate_limited', message: `too many requests: at most ${context.max} a minute; retry after ${context.after}` }),
  });
  await app.register(websocket, { options: { maxPayload: config.INGEST_MAX_FRAME_BYTES } });

  // Liveness probes cannot carry tokens, so health says only that the process answers.
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  // The API description holds no data; tools fetch it without a token.
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/metrics', { schema: { hide: true }, preValidation: requireRole(authenticator, ['service'], { unscoped: true }) }, async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  // The producer and captions pages and the browser SDK they use: static files that hold no data.
  await app.register(fastifyStatic, { root: fileURLToPath(new URL('../public', import.meta.url)), prefix: '/', schemaHide: true });
  await app.register(fastifyStatic, { root: fileURLToPath(new URL('../client-sdk/dist', import.meta.url)), prefix: '/sdk/', decorateReply: false, schemaHide: true });
  registerSessionRoutes(app, { registry, store, authenticator, endWaitMs: config.END_WAIT_MS, createPerMinute: config.SESSION_CREATE_PER_MINUTE });
  const connectionCaps = { limits, maxConnectionsPerIp: config.MAX_CONNECTIONS_PER_IP };
  registerWebSocketIngest(app, { registry, authenticator, log, heartbeatMs: config.WS_HEARTBEAT_MS, maxTracksPerToken: config.MAX_LIVE_TRACKS_PER_TOKEN, ...connectionCaps });
  registerCaptions(app, { registry, authenticator, heartbeatMs: config.WS_HEARTBEAT_MS, maxViewersPerToken: config.MAX_VIEWERS_PER_TOKEN, maxBufferedBytes: config.VIEWER_MAX_BUFFER_BYTES, ...connectionCaps });
  registerUploadRoutes(app, { uploads, store, authenticator });
  const whip = new WhipIngest(
    {
      portRange: config.WEBRTC_PORT_MIN !== undefined ? [config.WEBRTC_PORT_MIN, config.WEBRTC_PORT_MAX!] : undefined,
      announcedAddress: config.WEBRTC_ANNOUNCED_ADDRESS,
      iceServers: config.WEBRTC_ICE_SERVERS,
      connectTimeoutMs: config.WEBRTC_CONNECT_TIMEOUT_MS,
      idleTimeoutMs: config.RTP_IDLE_TIMEOUT_MS,
      limits,
      maxTracksPerToken: config.MAX_LIVE_TRACKS_PER_TOKEN,
    },
    log,
  );
  whip.register(app, registry, authenticator);
  const rtp = new RtpIngest(
    {
      bindHost: config.RTP_BIND_HOST ?? config.HOST,
      announcedAddress: config.RTP_ANNOUNCED_ADDRESS,
      portRange: config.RTP_PORT_MIN !== undefined ? [config.RTP_PORT_MIN, config.RTP_PORT_MAX!] : undefined,
      idleTimeoutMs: config.RTP_IDLE_TIMEOUT_MS,
      limits,
      maxTracksPerToken: config.MAX_LIVE_TRACKS_PER_TOKEN,
    },
    log,
  );
  rtp.register(app, registry, authenticator);

  let closing: Promise<void> | undefined;
  return {
    app,
    transports: () => ({ peers: whip.openPeers, rtpPorts: rtp.openPorts }),
    registry,
    store,
    metrics,
    async listen() {
      const recovered = await archiver?.recover();
      if (recovered) log.warn({ recovered }, 'recordings left by a previous process queued for upload');
      await redisQueue?.ready();
      await uploads.recover();
      await app.listen({ host: config.HOST, port: config.PORT });
      void registry.resumeEnding().catch((error) => log.error({ err: error }, 'could not resume ending sessions'));
      void webhook?.resumePending().catch((error) => log.error({ err: error }, 'could not resume webhooks'));
      return (app.server.address() as { port: number }).port;
    },
    close() {
      closing ??= shutdown();
      return closing;
    },
  };

  async function shutdown(): Promise<void> {
    // Producers are asked to reconnect, and what they sent is transcribed and stored first (bounded).
    const drained = await Promise.race([
      registry.drain().then(() => true),
      new Promise<false>((resolve) => setTimeout(resolve, config.SHUTDOWN_DRAIN_MS, false).unref()),
    ]);
    if (!drained) log.warn({ afterMs: config.SHUTDOWN_DRAIN_MS }, 'shutdown drain timed out; windows still at STT are dropped');
    await whip.close();
    await rtp.close();
    await windowQueue.close();
    windowTranscriber.close();
    await app.close();
    await webhook?.close();
    await archiver?.close();
    await database.close();
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

function createArchiver(config: Config, store: SessionStore, log: Logger): Archiver | undefined {
  if (config.ARCHIVE_RECIPIENTS.length === 0) {
    const warning = 'ARCHIVE_INSECURE_DISABLE=true: recordings are NOT archived. Never run a clinic like this.';
    log.warn(warning);
    process.stderr.write(`\n*** WARNING: ${warning} ***\n\n`);
    return undefined;
  }
  try {
    for (const recipient of config.ARCHIVE_RECIPIENTS) new Encrypter().addRecipient(recipient);
  } catch (error) {
    throw new ConfigError(`invalid configuration:\n  ARCHIVE_RECIPIENTS: ${(error as Error).message}`);
  }
  const objects: ObjectStore =
    config.ARCHIVE_STORE === 's3'
      ? new S3ObjectStore({
          endpoint: config.S3_ENDPOINT,
          bucket: config.S3_BUCKET!,
          region: config.S3_REGION,
          accessKeyId: config.S3_ACCESS_KEY_ID,
          secretAccessKey: config.S3_SECRET_ACCESS_KEY,
          forcePathStyle: config.S3_FORCE_PATH_STYLE,
        })
      : new LocalObjectStore(config.ARCHIVE_DIR ?? join(config.DATA_DIR, 'archive'));
  log.info({ store: objects.description, recipients: config.ARCHIVE_RECIPIENTS.length }, 'archiving recordings, encrypted');
  return new Archiver({ spoolDir: config.SPOOL_DIR ?? join(config.DATA_DIR, 'spool'), recipients: config.ARCHIVE_RECIPIENTS, objects, prefix: config.ARCHIVE_PREFIX, store, log });
}
