/**
 * From configuration to the options of every component: a pure function (no I/O), holding every
 * cross-field check, so that environment-variable names stop at the config module and the composition
 * roots (the gateway's `app.ts`, the upload worker's `worker.ts`) only wire what this returns.
 */
import { join } from 'node:path';
import { Encrypter } from 'age-encryption';
import type { AuthOptions } from './api/auth.ts';
import type { RtpIngestOptions } from './api/rtp-ingest.ts';
import type { WebRtcOptions } from './api/whip-ingest.ts';
import type { RealTimeLimits } from './audio/real-time-guard.ts';
import { ConfigError, type Config, type WorkerConfig } from './config.ts';
import { Segmenter, type SegmenterOptions } from './segmenter/segmenter.ts';
import type { RecognizerSettings } from './stt/recognizer.ts';
import type { BreakerOptions } from './stt/recognizer-pool.ts';
import type { RetentionPolicy } from './session/data-lifecycle.ts';
import type { RateLimitSettings } from './api/rate-limits.ts';
import type { AlertWebhookOptions } from './api/alert-webhook.ts';
import type { HallucinationThresholds } from './stt/recognized-words.ts';
import type { InventedWordsSettings } from './stt/speech-guard.ts';
import type { PartialBudgetOptions } from './stt/stt-cost.ts';
import { DEFAULT_CONDITIONER_OPTIONS, type ConditionerOptions } from './audio/conditioner.ts';

/**
 * Credit a track's partials and speculative finals may hold: a pause earns the next utterance its quick
 * partials and a speculative final of up to this length (longer utterances end the usual way).
 */
const PARTIAL_MAX_CREDIT_MS = 8000;

/** What the gateway and the upload worker share: the recognizer and the upload job queue. */
export interface SttComponents {
  /** The recognizer (with STT_BASE_URLS: the first endpoint's settings). */
  recognizer: RecognizerSettings;
  /** STT_BASE_URLS: every endpoint, tried in order, each behind a circuit breaker. */
  recognizerPool: { endpoints: RecognizerSettings[]; breaker: BreakerOptions } | undefined;
  thresholds: HallucinationThresholds;
  /** What keeps invented words out: the speech check before a window is sent, and the filter after. */
  inventedWords: InventedWordsSettings;
  /** How the audio sent to STT is conditioned; undefined: sent as received. */
  conditioning: Omit<ConditionerOptions, 'sampleRate'> | undefined;
  /** Noise suppression of each track as it streams (what the VAD and the windows sent to STT hear). */
  noiseSuppression: 'spectral' | 'rnnoise' | 'auto' | 'off';
  /** The worker threads RNNoise runs in. */
  noiseSuppressionThreads: number;
  queue: { redisUrl: string | undefined; name: string; lockMs: number; attempts: number; backoffMs: number };
  /** Base64 key-encryption key of audio at rest; undefined: the gateway makes one in `keyFile`. */
  atRestKey: string | undefined;
}

type SttConfig = Pick<WorkerConfig, 'STT_API' | 'STT_BASE_URL' | 'STT_BASE_URLS' | 'STT_API_KEYS' | 'STT_MODELS' | 'STT_BREAKER_THRESHOLD' | 'STT_BREAKER_RESET_MS' | 'OPENAI_API_KEY' | 'AZURE_OPENAI_ENDPOINT' | 'AZURE_OPENAI_DEPLOYMENT' | 'AZURE_OPENAI_API_VERSION' | 'AZURE_OPENAI_API_KEY' | 'AZURE_OPENAI_AD_TOKEN_FILE'
  | 'STT_MODEL' | 'STT_TIMEOUT_MS' | 'STT_MAX_RETRIES' | 'STT_RESPONSE_FORMAT' | 'STT_WORD_TIMESTAMPS' | 'STT_ACCEPTS_PROMPT' | 'STT_MAX_FILE_MB' | 'STT_REFUSED_RECHECK_MS' | 'STT_LANGUAGE' | 'STT_PROMPT'
  | 'STT_NO_SPEECH_PROB' | 'STT_LOGPROB_THRESHOLD' | 'STT_COMPRESSION_RATIO' | 'STT_SPEECH_CHECK' | 'STT_SPEECH_MIN_MS' | 'STT_HALLUCINATION_FILTER' | 'STT_HALLUCINATION_PHRASES_DIR' | 'AUDIO_HIGH_PASS_HZ' | 'AUDIO_HUM_NOTCH' | 'AUDIO_NORMALIZE' | 'AUDIO_TARGET_DBFS' | 'AUDIO_MAX_GAIN_DB' | 'AUDIO_NOISE_SUPPRESSION' | 'AUDIO_NOISE_SUPPRESSION_THREADS' | 'QUEUE_NAME' | 'QUEUE_LOCK_MS' | 'QUEUE_ATTEMPTS' | 'QUEUE_BACKOFF_MS'> & { REDIS_URL?: string; AT_REST_KEY?: string };

/** Throws ConfigError when the recognizer's settings do not fit together. */
function recognizerSettings(config: SttConfig): RecognizerSettings {
  const problems: string[] = [];
  const timing = { timeoutMs: config.STT_TIMEOUT_MS, maxRetries: config.STT_MAX_RETRIES };
  let client: RecognizerSettings['client'];
  if (config.STT_API === 'azure') {
    if (!config.AZURE_OPENAI_ENDPOINT) problems.push('AZURE_OPENAI_ENDPOINT: required with STT_API=azure (https://<resource>.openai.azure.com)');
    if (!config.AZURE_OPENAI_DEPLOYMENT) problems.push('AZURE_OPENAI_DEPLOYMENT: required with STT_API=azure (the name of the transcription deployment)');
    if (!config.AZURE_OPENAI_API_KEY === !config.AZURE_OPENAI_AD_TOKEN_FILE) problems.push('AZURE_OPENAI_API_KEY: set it or AZURE_OPENAI_AD_TOKEN_FILE (a Microsoft Entra token), not both');
    client = { api: 'azure', endpoint: config.AZURE_OPENAI_ENDPOINT!, deployment: config.AZURE_OPENAI_DEPLOYMENT!, apiVersion: config.AZURE_OPENAI_API_VERSION, apiKey: config.AZURE_OPENAI_API_KEY, adTokenFile: config.AZURE_OPENAI_AD_TOKEN_FILE, ...timing };
  } else {
    if (!config.OPENAI_API_KEY) problems.push('OPENAI_API_KEY: required (any non-empty value for a self-hosted server without keys)');
    client = { api: 'openai', baseURL: config.STT_BASE_URL, apiKey: config.OPENAI_API_KEY!, ...timing };
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  return {
    client,
    model: config.STT_MODEL,
    responseFormat: config.STT_RESPONSE_FORMAT,
    wordTimestamps: config.STT_WORD_TIMESTAMPS,
    acceptsPrompt: config.STT_ACCEPTS_PROMPT,
    maxFileBytes: Math.floor(config.STT_MAX_FILE_MB * 1024 * 1024),
    language: config.STT_LANGUAGE,
    prompt: config.STT_PROMPT,
    recheckMs: config.STT_REFUSED_RECHECK_MS,
  };
}

/** STT_BASE_URLS: one OpenAI-compatible recognizer per URL, each with its key and model. */
function recognizerPool(config: SttConfig, first: RecognizerSettings): SttComponents['recognizerPool'] {
  const urls = config.STT_BASE_URLS;
  if (urls.length === 0) return undefined;
  const problems: string[] = [];
  if (config.STT_API !== 'openai') problems.push('STT_BASE_URLS: OpenAI-compatible endpoints only (unset STT_API=azure)');
  const each = (name: string, values: string[], fallback: string | undefined) => {
    if (values.length > 1 && values.length !== urls.length) problems.push(`${name}: one value, or one per STT_BASE_URLS entry (${urls.length})`);
    return urls.map((_, i) => values[values.length > 1 ? i : 0] ?? fallback);
  };
  const keys = each('STT_API_KEYS', config.STT_API_KEYS, config.OPENAI_API_KEY);
  const models = each('STT_MODELS', config.STT_MODELS, config.STT_MODEL);
  if (keys.some((key) => !key)) problems.push('STT_API_KEYS: required (or OPENAI_API_KEY for every endpoint)');
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  return {
    endpoints: urls.map((url, i) => ({ ...first, client: { api: 'openai', baseURL: url, apiKey: keys[i]!, timeoutMs: config.STT_TIMEOUT_MS, maxRetries: config.STT_MAX_RETRIES }, model: models[i]! })),
    breaker: { errorThresholdPercentage: config.STT_BREAKER_THRESHOLD, volumeThreshold: 3, rollingCountTimeout: 10000, resetTimeout: config.STT_BREAKER_RESET_MS },
  };
}

export function sttComponents(config: SttConfig): SttComponents {
  const recognizer = recognizerSettings(config.STT_BASE_URLS.length > 0 ? { ...config, STT_BASE_URL: config.STT_BASE_URLS[0], OPENAI_API_KEY: config.STT_API_KEYS[0] ?? config.OPENAI_API_KEY, STT_MODEL: config.STT_MODELS[0] ?? config.STT_MODEL } : config);
  return {
    recognizer,
    recognizerPool: recognizerPool(config, recognizer),
    thresholds: { noSpeechProb: config.STT_NO_SPEECH_PROB, logprob: config.STT_LOGPROB_THRESHOLD, compressionRatio: config.STT_COMPRESSION_RATIO },
    inventedWords: { speechCheck: config.STT_SPEECH_CHECK, minSpeechMs: config.STT_SPEECH_MIN_MS, filter: config.STT_HALLUCINATION_FILTER, phrasesDir: config.STT_HALLUCINATION_PHRASES_DIR },
    conditioning:
      config.AUDIO_HIGH_PASS_HZ > 0 || config.AUDIO_HUM_NOTCH || config.AUDIO_NORMALIZE
        ? { ...DEFAULT_CONDITIONER_OPTIONS, highPassHz: config.AUDIO_HIGH_PASS_HZ, humNotch: config.AUDIO_HUM_NOTCH, normalize: config.AUDIO_NORMALIZE, targetDbfs: config.AUDIO_TARGET_DBFS, maxGainDb: config.AUDIO_MAX_GAIN_DB }
        : undefined,
    noiseSuppression: config.AUDIO_NOISE_SUPPRESSION,
    noiseSuppressionThreads: config.AUDIO_NOISE_SUPPRESSION_THREADS,
    queue: { redisUrl: config.REDIS_URL, name: config.QUEUE_NAME, lockMs: config.QUEUE_LOCK_MS, attempts: config.QUEUE_ATTEMPTS, backoffMs: config.QUEUE_BACKOFF_MS },
    atRestKey: config.AT_REST_KEY,
  };
}

export interface GatewayComponents extends SttComponents {
  listen: { host: string; port: number };
  dataDir: string;
  keyFile: string;
  logLevel: string;
  stt: {
    concurrency: number; language: string | undefined; languages: string[] | undefined; prompt: string | undefined; backlogMemoryS: number; spillDir: string;
    partialBudget: PartialBudgetOptions; partialContextMs: number;
  };
  vadAggressiveness: number;
  /** Worker threads live tracks are decoded and heard by the VAD in (0: the event loop). */
  dspThreads: number;
  segmenter: Partial<SegmenterOptions>;
  realTime: RealTimeLimits;
  uploads: {
    segmenter: Partial<SegmenterOptions>;
    workDir: string;
    queueDir: string;
    maxBytes: number;
    maxDurationMs: number;
    bodyIdleTimeoutMs: number;
    workers: number;
  };
  auth: AuthOptions;
  /** The gateway's own alerts, POSTed to a webhook (deployments without Prometheus). */
  alertWebhook: AlertWebhookOptions | undefined;
  /** STT price per audio minute by model (the analytics' cost estimate). */
  sttPrices: Record<string, number>;
  /** Retention per kind (days; 0: kept forever) and how often it is swept. */
  retention: RetentionPolicy;
  http: { idleTimeoutMs: number; requestTimeoutMs: number; maxFrameBytes: number; heartbeatMs: number; rateLimits: RateLimitSettings; endWaitMs: number; viewerMaxBufferedBytes: number };
  caps: { tracksPerSession: number; liveTracksPerToken: number; viewersPerToken: number; connectionsPerIp: number };
  /** How long a track whose producer dropped waits for it to resume before it ends. */
  resumeWindowMs: number;
  webrtc: Omit<WebRtcOptions, 'limits' | 'maxTracksPerToken'>;
  rtp: Omit<RtpIngestOptions, 'limits' | 'maxTracksPerToken'>;
  database: { url: string | undefined; dataDir: string };
  webhook: { url: string; secret: string; maxAttempts: number; retryBaseMs: number; timeoutMs: number; publicUrl: string | undefined } | undefined;
  /** undefined: archiving disabled (development only). */
  archive:
    | {
        recipients: string[];
        spoolDir: string;
        prefix: string;
        streamEveryMs: number;
        store: { kind: 's3'; endpoint?: string; bucket: string; region: string; accessKeyId?: string; secretAccessKey?: string; forcePathStyle: boolean; timeoutMs: number } | { kind: 'local'; dir: string };
      }
    | undefined;
  shutdownDrainMs: number;
  /** `instanceId` undefined: made at start (host, process id, random). */
  fleet: { instanceId: string | undefined; leaseMs: number; tailEveryMs: number; tailTtlMs: number };
}

/** Throws ConfigError when fields that are each valid do not fit together. */
export function gatewayComponents(config: Config): GatewayComponents {
  // The endpointing silence, up to half a second: it is there when the utterance closes (no latency), and
  // a word's weak ending the VAD heard as silence (a fricative under a fan) is then heard whole, not cut
  // at 300 ms; a longer endpointing (dictation) would only send more silence.
  const trailingPadMs = Math.min(500, config.SEGMENT_SILENCE_MS);
  const segmenter: Partial<SegmenterOptions> = {
    preRollMs: config.SEGMENT_PRE_ROLL_MS,
    silenceMs: config.SEGMENT_SILENCE_MS,
    trailingPadMs,
    maxWindowMs: config.SEGMENT_MAX_WINDOW_MS,
    cutSearchMs: Math.min(4000, Math.floor(config.SEGMENT_MAX_WINDOW_MS / 4)),
    overlapMs: config.SEGMENT_OVERLAP_MS,
    partialIntervalMs: config.SEGMENT_PARTIAL_INTERVAL_MS,
    // Off when not below the endpointing silence (it would never come first).
    speculativeSilenceMs: config.SEGMENT_SPECULATIVE_MS < config.SEGMENT_SILENCE_MS ? config.SEGMENT_SPECULATIVE_MS : 0,
  };
  const uploadSegmenter = { ...segmenter, speculativeSilenceMs: 0, silenceMs: config.UPLOAD_SILENCE_MS, trailingPadMs: Math.min(trailingPadMs, config.UPLOAD_SILENCE_MS), maxWindowMs: config.UPLOAD_MAX_WINDOW_MS, cutSearchMs: Math.min(4000, Math.floor(config.UPLOAD_MAX_WINDOW_MS / 4)) };
  for (const [names, options] of [['SEGMENT_*', segmenter], ['UPLOAD_*', uploadSegmenter]] as const) {
    try {
      new Segmenter(options);
    } catch (error) {
      throw new ConfigError(`invalid configuration:\n  ${names}: ${(error as Error).message}`);
    }
  }
  if (config.STT_LANGUAGE && config.STT_LANGUAGES.length > 0 && !config.STT_LANGUAGES.includes(config.STT_LANGUAGE)) {
    throw new ConfigError(`invalid configuration:\n  STT_LANGUAGE: ${config.STT_LANGUAGE} is not among STT_LANGUAGES (${config.STT_LANGUAGES.join(', ')})`);
  }
  try {
    for (const recipient of config.ARCHIVE_RECIPIENTS) new Encrypter().addRecipient(recipient);
  } catch (error) {
    throw new ConfigError(`invalid configuration:\n  ARCHIVE_RECIPIENTS: ${(error as Error).message}`);
  }
  const dataDir = config.DATA_DIR;
  return {
    ...sttComponents(config),
    listen: { host: config.HOST, port: config.PORT },
    dataDir,
    keyFile: join(dataDir, 'keys', 'at-rest.key'),
    logLevel: config.LOG_LEVEL,
    stt: { concurrency: config.STT_CONCURRENCY, language: config.STT_LANGUAGE, languages: config.STT_LANGUAGES.length > 0 ? config.STT_LANGUAGES : undefined, prompt: config.STT_PROMPT, backlogMemoryS: config.STT_BACKLOG_MEMORY_S, spillDir: join(dataDir, 'stt-backlog'),
      partialBudget: { budget: config.STT_PARTIAL_BUDGET, maxCreditMs: PARTIAL_MAX_CREDIT_MS }, partialContextMs: config.PARTIAL_CONTEXT_MS,
    },
    vadAggressiveness: config.VAD_AGGRESSIVENESS,
    dspThreads: config.AUDIO_DSP_THREADS,
    segmenter,
    realTime: { maxSpeed: config.INGEST_MAX_SPEED, burstMs: config.INGEST_BURST_MS },
    uploads: {
      segmenter: uploadSegmenter,
      workDir: join(dataDir, 'uploads'),
      queueDir: join(dataDir, 'queue'),
      maxBytes: config.UPLOAD_MAX_BYTES,
      maxDurationMs: config.UPLOAD_MAX_DURATION_S * 1000,
      bodyIdleTimeoutMs: config.UPLOAD_BODY_IDLE_TIMEOUT_MS,
      workers: config.UPLOAD_WORKERS,
    },
    auth: { secret: config.JWT_SECRET, jwksUrl: config.JWT_JWKS_URL, issuer: config.JWT_ISSUER, audience: config.JWT_AUDIENCE, maxTtlS: config.JWT_MAX_TTL_S, clockSkewS: config.JWT_CLOCK_SKEW_S },
    sttPrices: config.STT_PRICE_PER_MINUTE,
    alertWebhook: config.ALERT_WEBHOOK_URL
      ? { url: config.ALERT_WEBHOOK_URL, secret: (config.ALERT_WEBHOOK_SECRET ?? config.WEBHOOK_SECRET)!, evaluationMs: config.ALERT_EVALUATION_MS, forScale: config.ALERT_FOR_SCALE, timeoutMs: config.WEBHOOK_TIMEOUT_MS }
      : undefined,
    retention: { recordingsDays: config.RETENTION_RECORDINGS_DAYS, transcriptsDays: config.RETENTION_TRANSCRIPTS_DAYS, sweepMs: config.RETENTION_SWEEP_MS },
    http: {
      idleTimeoutMs: config.HTTP_IDLE_TIMEOUT_MS, requestTimeoutMs: config.HTTP_REQUEST_TIMEOUT_MS, maxFrameBytes: config.INGEST_MAX_FRAME_BYTES, heartbeatMs: config.WS_HEARTBEAT_MS,
      rateLimits: {
        perMinute: config.RATE_LIMIT_PER_MINUTE, perIpPerMinute: config.RATE_LIMIT_PER_IP_PER_MINUTE, sessionCreatePerMinute: config.SESSION_CREATE_PER_MINUTE,
        uploadsPerMinute: config.UPLOADS_PER_MINUTE, ingestConnectionsPerMinute: config.INGEST_CONNECTIONS_PER_MINUTE,
      }, endWaitMs: config.END_WAIT_MS, viewerMaxBufferedBytes: config.VIEWER_MAX_BUFFER_BYTES,
    },
    caps: { tracksPerSession: config.MAX_TRACKS_PER_SESSION, liveTracksPerToken: config.MAX_LIVE_TRACKS_PER_TOKEN, viewersPerToken: config.MAX_VIEWERS_PER_TOKEN, connectionsPerIp: config.MAX_CONNECTIONS_PER_IP },
    resumeWindowMs: config.PRODUCER_RESUME_MS,
    webrtc: {
      portRange: config.WEBRTC_PORT_MIN !== undefined ? [config.WEBRTC_PORT_MIN, config.WEBRTC_PORT_MAX!] : undefined,
      announcedAddress: config.WEBRTC_ANNOUNCED_ADDRESS,
      iceServers: config.WEBRTC_ICE_SERVERS,
      connectTimeoutMs: config.WEBRTC_CONNECT_TIMEOUT_MS,
      idleTimeoutMs: config.RTP_IDLE_TIMEOUT_MS,
    },
    rtp: {
      bindHost: config.RTP_BIND_HOST ?? config.HOST,
      announcedAddress: config.RTP_ANNOUNCED_ADDRESS,
      portRange: config.RTP_PORT_MIN !== undefined ? [config.RTP_PORT_MIN, config.RTP_PORT_MAX!] : undefined,
      idleTimeoutMs: config.RTP_IDLE_TIMEOUT_MS,
    },
    database: { url: config.DATABASE_URL, dataDir },
    webhook: config.WEBHOOK_URL
      ? { url: config.WEBHOOK_URL, secret: config.WEBHOOK_SECRET!, maxAttempts: config.WEBHOOK_MAX_ATTEMPTS, retryBaseMs: config.WEBHOOK_RETRY_BASE_MS, timeoutMs: config.WEBHOOK_TIMEOUT_MS, publicUrl: config.PUBLIC_URL }
      : undefined,
    archive: config.ARCHIVE_RECIPIENTS.length === 0
      ? undefined
      : {
          recipients: config.ARCHIVE_RECIPIENTS,
          spoolDir: config.SPOOL_DIR ?? join(dataDir, 'spool'),
          prefix: config.ARCHIVE_PREFIX,
          streamEveryMs: config.ARCHIVE_STREAM_MS,
          store: config.ARCHIVE_STORE === 's3'
            ? { kind: 's3', endpoint: config.S3_ENDPOINT, bucket: config.S3_BUCKET!, region: config.S3_REGION, accessKeyId: config.S3_ACCESS_KEY_ID, secretAccessKey: config.S3_SECRET_ACCESS_KEY, forcePathStyle: config.S3_FORCE_PATH_STYLE, timeoutMs: config.S3_TIMEOUT_MS }
            : { kind: 'local', dir: config.ARCHIVE_DIR ?? join(dataDir, 'archive') },
        },
    shutdownDrainMs: config.SHUTDOWN_DRAIN_MS,
    fleet: { instanceId: config.INSTANCE_ID, leaseMs: config.FLEET_LEASE_MS, tailEveryMs: config.TRACK_TAIL_MS, tailTtlMs: config.TRACK_TAIL_TTL_MS },
  };
}
