/**
 * The composition root: the one place that knows every adapter. It builds the STT client and queue,
 * the VAD and segmenter settings, the session registry, and the HTTP/WebSocket server around them.
 */
import websocket from '@fastify/websocket';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { WebRtcVad } from './audio/vad.ts';
import { PIPELINE_SAMPLE_RATE } from './audio/opus-decoder.ts';
import { Authenticator } from './api/auth.ts';
import { registerCaptions } from './api/captions.ts';
import { requireRole, sendError } from './api/http.ts';
import { registerSessionRoutes } from './api/sessions.ts';
import { ConfigError, type Config } from './config.ts';
import { registerWebSocketIngest } from './ingest/websocket-ingest.ts';
import type { Logger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { Segmenter } from './segmenter/segmenter.ts';
import { SessionRegistry } from './session/registry.ts';
import { TrackPipeline } from './session/track-pipeline.ts';
import { OpenAiTranscriber, type Transcriber } from './stt/transcriber.ts';
import { WindowTranscriber } from './stt/window-transcriber.ts';

export interface Gateway {
  app: FastifyInstance;
  registry: SessionRegistry;
  metrics: Metrics;
  /** Listens on the configured host/port; resolves with the bound port. */
  listen(): Promise<number>;
  close(): Promise<void>;
}

export async function createGateway(config: Config, log: Logger, transcriber?: Transcriber): Promise<Gateway> {
  const metrics = createMetrics();
  const windowTranscriber = new WindowTranscriber(
    transcriber ??
      new OpenAiTranscriber({
        baseURL: config.STT_BASE_URL,
        apiKey: config.OPENAI_API_KEY,
        model: config.STT_MODEL,
        timeoutMs: config.STT_TIMEOUT_MS,
        maxRetries: config.STT_MAX_RETRIES,
        wordTimestamps: config.STT_WORD_TIMESTAMPS,
      }),
    {
      concurrency: config.STT_CONCURRENCY,
      sampleRate: PIPELINE_SAMPLE_RATE,
      thresholds: { noSpeechProb: config.STT_NO_SPEECH_PROB, logprob: config.STT_LOGPROB_THRESHOLD, compressionRatio: config.STT_COMPRESSION_RATIO },
    },
  );
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
  const registry = new SessionRegistry(
    (request) =>
      new TrackPipeline({
        ...request,
        language: request.language ?? config.STT_LANGUAGE,
        prompt: config.STT_PROMPT,
        segmenter,
        vad: new WebRtcVad(PIPELINE_SAMPLE_RATE, config.VAD_AGGRESSIVENESS),
        transcriber: windowTranscriber,
        metrics,
      }),
    log,
    metrics,
  );
  const authenticator = new Authenticator({ secret: config.JWT_SECRET, jwksUrl: config.JWT_JWKS_URL, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE });

  const app = Fastify({ loggerInstance: log as FastifyBaseLogger });
  app.setErrorHandler((error: { statusCode?: number; validation?: unknown; message: string }, request, reply) => {
    if (error.validation) return sendError(reply, 400, 'invalid_request', error.message);
    request.log.error({ err: error }, 'request failed');
    return sendError(reply, error.statusCode ?? 500, 'internal_error', 'internal error');
  });
  app.setNotFoundHandler((_request, reply) => sendError(reply, 404, 'not_found', 'no such endpoint'));
  await app.register(websocket, { options: { maxPayload: config.INGEST_MAX_FRAME_BYTES } });

  // Liveness probes cannot carry tokens, so health says only that the process answers.
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/metrics', { preValidation: requireRole(authenticator, ['service']) }, async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  registerSessionRoutes(app, registry, authenticator);
  registerWebSocketIngest(app, { registry, authenticator, log });
  registerCaptions(app, registry, authenticator);

  return {
    app,
    registry,
    metrics,
    async listen() {
      await app.listen({ host: config.HOST, port: config.PORT });
      return (app.server.address() as { port: number }).port;
    },
    async close() {
      windowTranscriber.close();
      await app.close();
    },
  };
}
