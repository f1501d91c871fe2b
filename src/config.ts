/**
 * Configuration from environment variables, validated once at start. Every variable is listed in the
 * README; a bad value stops the gateway with one line per problem naming the variable.
 */
import { availableParallelism } from 'node:os';
import { z } from 'zod';

const int = (fallback: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(fallback);
const optionalString = z.string().trim().min(1).optional();

const iceServersSchema = z.array(z.object({ urls: z.union([z.string(), z.array(z.string())]), username: z.string().optional(), credential: z.string().optional() }).strict());

const redisUrl = z.string({ error: "required: the Redis of the gateway's upload queue, e.g. redis://queue-host:6379" }).regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL');

/** Variables the gateway and `npm run worker` share: the STT endpoint and the upload job queue. */
const shared = {
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** `openai`: any OpenAI-compatible server at STT_BASE_URL; `azure`: Azure OpenAI (AZURE_OPENAI_*). */
  STT_API: z.enum(['openai', 'azure']).default('openai'),
  STT_BASE_URL: z.url().default('https://api.openai.com/v1'),
  OPENAI_API_KEY: optionalString,
  AZURE_OPENAI_ENDPOINT: z.url().optional(),
  AZURE_OPENAI_DEPLOYMENT: optionalString,
  AZURE_OPENAI_API_VERSION: z.string().trim().min(1).default('2024-06-01'),
  AZURE_OPENAI_API_KEY: optionalString,
  AZURE_OPENAI_AD_TOKEN_FILE: optionalString,
  STT_MODEL: z.string().min(1).default('whisper-1'),
  /**
   * Several OpenAI-compatible endpoints, comma-separated, tried in this order with a circuit breaker each
   * (replaces STT_BASE_URL); STT_API_KEYS and STT_MODELS give each its key and model (one value: all).
   */
  STT_BASE_URLS: z
    .string()
    .optional()
    .transform((v) => (v ?? '').split(',').map((url) => url.trim()).filter(Boolean))
    .refine((urls) => urls.every((url) => URL.canParse(url) && /^https?:/.test(url)), 'comma-separated http(s) URLs'),
  STT_API_KEYS: z.string().optional().transform((v) => (v ?? '').split(',').map((key) => key.trim()).filter(Boolean)),
  STT_MODELS: z.string().optional().transform((v) => (v ?? '').split(',').map((model) => model.trim()).filter(Boolean)),
  /** An endpoint whose failures pass this share (percent) of its requests in 10 s (at least 3) is skipped … */
  STT_BREAKER_THRESHOLD: int(50, 1, 100),
  /** … for this long, then tried again with one request. */
  STT_BREAKER_RESET_MS: int(15000, 100, 3600000),
  /** `auto`: found by a probe at start; or what the recognizer is known to give. */
  STT_RESPONSE_FORMAT: z.enum(['auto', 'verbose_json', 'diarized_json', 'json', 'text']).default('auto'),
  STT_ACCEPTS_PROMPT: z.stringbool().default(true),
  STT_MAX_FILE_MB: z.coerce.number().positive().max(2048).default(25),
  STT_REFUSED_RECHECK_MS: int(60000, 100, 3600000),
  STT_LANGUAGE: optionalString,
  /** The languages the recognizer transcribes, comma-separated ISO 639-1 codes; unset: any. */
  STT_LANGUAGES: z
    .string()
    .optional()
    .transform((v) => (v ?? '').split(',').map((code) => code.trim()).filter(Boolean))
    .refine((codes) => codes.every((code) => /^[a-z]{2,3}$/.test(code)), 'comma-separated ISO 639-1 codes, e.g. en,fa,ar'),
  STT_PROMPT: optionalString,
  /** STT price per audio minute by model, for the analytics' cost estimate: {"whisper-1": 0.006, …}. */
  STT_PRICE_PER_MINUTE: z
    .string()
    .default('{"whisper-1":0.006,"gpt-4o-transcribe":0.006,"gpt-4o-mini-transcribe":0.003,"gpt-4o-transcribe-diarize":0.006}')
    .transform((text, ctx) => {
      try {
        const prices = JSON.parse(text) as unknown;
        if (typeof prices === 'object' && prices !== null && !Array.isArray(prices) && Object.values(prices).every((p) => typeof p === 'number' && p >= 0)) return prices as Record<string, number>;
      } catch {
        // reported below
      }
      ctx.addIssue({ code: 'custom', message: 'a JSON object of model → price per audio minute (numbers ≥ 0)' });
      return z.NEVER;
    }),
  STT_CONCURRENCY: int(4, 1, 256),
  STT_TIMEOUT_MS: int(30000, 100, 600000),
  STT_MAX_RETRIES: int(3, 0, 10),
  STT_WORD_TIMESTAMPS: z.stringbool().default(true),
  STT_NO_SPEECH_PROB: z.coerce.number().min(0).max(1).default(0.6),
  STT_LOGPROB_THRESHOLD: z.coerce.number().max(0).default(-1),
  STT_COMPRESSION_RATIO: z.coerce.number().positive().default(2.4),
  /** `silero`: a neural VAD checks each window before it is sent; windows without enough speech are not sent. */
  STT_SPEECH_CHECK: z.enum(['silero', 'off']).default('silero'),
  STT_SPEECH_MIN_MS: int(200, 0, 10000),
  /** Takes invented words (outside speech, loops, stock phrases over weak speech) out of every answer. */
  STT_HALLUCINATION_FILTER: z.stringbool().default(true),
  /** A directory of `<language>.txt` stock phrase lists in place of the built-in ones. */
  STT_HALLUCINATION_PHRASES_DIR: optionalString,
  /** Conditioning of the audio sent to STT (the recording keeps the original): high-pass cutoff, Hz; 0: off. */
  AUDIO_HIGH_PASS_HZ: int(80, 0, 300),
  /** Notch out detected 50/60 Hz mains hum and its harmonics. */
  AUDIO_HUM_NOTCH: z.stringbool().default(true),
  /** Bring each window's speech to AUDIO_TARGET_DBFS (never more than AUDIO_MAX_GAIN_DB; noise alone is never amplified). */
  AUDIO_NORMALIZE: z.stringbool().default(true),
  AUDIO_TARGET_DBFS: z.coerce.number().min(-40).max(-6).default(-20),
  AUDIO_MAX_GAIN_DB: z.coerce.number().min(0).max(40).default(30),
  /**
   * Noise taken out of each track as it streams, before the VAD, over a track's first 4 s and then only
   * while its noise floor stays above −50 dBFS (a fan), the other tracks passing through untouched:
   * `spectral`, steady noise (≈ 0.14 % of a core per noisy real-time track, with the track's decoding);
   * `auto`, RNNoise (broadband noise, also some that comes and goes: ≈ 4 %, in worker threads of its own);
   * `rnnoise`, RNNoise on every track all the time.
   */
  AUDIO_NOISE_SUPPRESSION: z.enum(['spectral', 'auto', 'rnnoise', 'off']).default('spectral'),
  /** Worker threads RNNoise runs in (each track's stream in one of them); default: one per core but one, at least one. */
  AUDIO_NOISE_SUPPRESSION_THREADS: int(Math.max(1, availableParallelism() - 1), 1, 64),

  REDIS_URL: redisUrl.optional(),
  QUEUE_NAME: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - only').default('helssa-windows'),
  QUEUE_ATTEMPTS: int(3, 1, 20),
  QUEUE_BACKOFF_MS: int(2000, 10, 600000),
  QUEUE_LOCK_MS: int(30000, 500, 600000),
  /**
   * Key-encryption key for audio at rest (base64 of 32 bytes), shared by the gateway and its workers.
   * The gateway makes one in DATA_DIR when unset; a worker over Redis needs it set.
   */
  AT_REST_KEY: z
    .string()
    .refine((v) => Buffer.from(v, 'base64').length === 32, 'must be 32 random bytes in base64 (openssl rand -base64 32)')
    .optional(),
};

const atRestKeyRequired = z
  .string({ error: "required: the gateway's key-encryption key, to read the sealed window audio" })
  .refine((v) => Buffer.from(v, 'base64').length === 32, 'must be 32 random bytes in base64 (openssl rand -base64 32)');

const schema = z
  .object({
    ...shared,
    HOST: z.string().default('0.0.0.0'),
    PORT: int(8080, 0, 65535),

    JWT_SECRET: z.string().min(32, 'must be at least 32 characters (HS256 secret)').optional(),
    JWT_JWKS_URL: z.url().optional(),
    JWT_ISSUER: optionalString,
    JWT_AUDIENCE: optionalString,
    JWT_MAX_TTL_S: int(86400, 60, 30 * 86400),
    JWT_CLOCK_SKEW_S: int(60, 0, 600),

    HTTP_REQUEST_TIMEOUT_MS: int(3600000, 1000, 24 * 3600000),
    HTTP_IDLE_TIMEOUT_MS: int(30000, 1000, 600000),
    UPLOAD_BODY_IDLE_TIMEOUT_MS: int(30000, 100, 600000),
    RATE_LIMIT_PER_MINUTE: int(600, 1, 1000000),
    SESSION_CREATE_PER_MINUTE: int(60, 1, 1000000),
    RATE_LIMIT_PER_IP_PER_MINUTE: int(1200, 1, 10000000),
    UPLOADS_PER_MINUTE: int(30, 1, 1000000),
    INGEST_CONNECTIONS_PER_MINUTE: int(120, 1, 1000000),
    MAX_TRACKS_PER_SESSION: int(8, 1, 1000),
    MAX_LIVE_TRACKS_PER_TOKEN: int(8, 1, 100000),
    MAX_VIEWERS_PER_TOKEN: int(16, 1, 100000),
    MAX_CONNECTIONS_PER_IP: int(256, 1, 1000000),
    INGEST_MAX_SPEED: z.coerce.number().min(1).max(10000).default(1.5),
    INGEST_BURST_MS: int(60000, 0, 3600000),
    STT_BACKLOG_MEMORY_S: int(120, 0, 36000),
    END_WAIT_MS: int(10000, 0, 600000),
    RETENTION_RECORDINGS_DAYS: int(0, 0, 36500),
    RETENTION_TRANSCRIPTS_DAYS: int(0, 0, 36500),
    RETENTION_SWEEP_MS: int(3600000, 1000, 7 * 24 * 3600000),
    PRODUCER_RESUME_MS: int(10000, 0, 300000),

    VAD_AGGRESSIVENESS: int(2, 0, 3),
    /**
     * Worker threads each live track's Opus decoding and VAD run in (off the event loop that carries every
     * track's packets), with the spectral noise suppressor; 0: on the event loop. Default: one per core but
     * one, at least one. Tracks with RNNoise on are decoded on the event loop (their VAD hears its audio).
     */
    AUDIO_DSP_THREADS: int(Math.max(1, availableParallelism() - 1), 0, 64),
    SEGMENT_PRE_ROLL_MS: int(300, 0, 2000),
    SEGMENT_SILENCE_MS: int(500, 100, 5000),
    SEGMENT_MAX_WINDOW_MS: int(28000, 5000, 30000),
    SEGMENT_OVERLAP_MS: int(1500, 0, 5000),
    SEGMENT_PARTIAL_INTERVAL_MS: int(1000, 0, 10000),
    /** Silence after which a speculative final is sent (its STT call overlaps the rest of SEGMENT_SILENCE_MS); 0: off. */
    SEGMENT_SPECULATIVE_MS: int(200, 0, 5000),
    /** Partial audio sent to STT per audio received, at most (finals are never held back). */
    STT_PARTIAL_BUDGET: z.coerce.number().min(0).max(100).default(0.4),
    /** Audio before the last stable word that a partial window keeps as context. */
    PARTIAL_CONTEXT_MS: int(2000, 0, 30000),

    UPLOAD_MAX_BYTES: int(500 * 1024 * 1024, 1024, 8 * 1024 ** 3),
    UPLOAD_MAX_DURATION_S: int(3600, 1, 24 * 3600),
    UPLOAD_MAX_WINDOW_MS: int(30000, 5000, 30000),
    UPLOAD_SILENCE_MS: int(2000, 100, 10000),
    UPLOAD_WORKERS: int(2, 0, 256),

    WEBRTC_PORT_MIN: z.coerce.number().int().min(1024).max(65535).optional(),
    WEBRTC_PORT_MAX: z.coerce.number().int().min(1024).max(65535).optional(),
    WEBRTC_ANNOUNCED_ADDRESS: z.union([z.ipv4(), z.ipv6()]).optional(),
    WEBRTC_ICE_SERVERS: z
      .string()
      .default('[]')
      .transform((text, ctx) => {
        try {
          return iceServersSchema.parse(JSON.parse(text));
        } catch {
          ctx.addIssue({ code: 'custom', message: 'must be a JSON array of {"urls": "stun:…" | ["turn:…"], "username"?, "credential"?}' });
          return z.NEVER;
        }
      }),
    WEBRTC_CONNECT_TIMEOUT_MS: int(10000, 500, 120000),
    RTP_BIND_HOST: optionalString,
    RTP_ANNOUNCED_ADDRESS: optionalString,
    RTP_PORT_MIN: z.coerce.number().int().min(1024).max(65535).optional(),
    RTP_PORT_MAX: z.coerce.number().int().min(1024).max(65535).optional(),
    RTP_IDLE_TIMEOUT_MS: int(10000, 500, 600000),

    INGEST_MAX_FRAME_BYTES: int(256 * 1024, 1024, 16 * 1024 * 1024),
    WS_HEARTBEAT_MS: int(15000, 100, 600000),
    VIEWER_MAX_BUFFER_BYTES: int(16 * 1024 * 1024, 64 * 1024, 1024 ** 3),
    SHUTDOWN_DRAIN_MS: int(15000, 0, 600000),
    /** This gateway's name in a fleet (tracks it holds, caption bus); default: host, process id and a random suffix. */
    INSTANCE_ID: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . and - only').optional(),
    /** A gateway that has not renewed its lease for this long is dead: its live tracks are ended or taken over. */
    FLEET_LEASE_MS: int(10000, 1000, 600000),
    /**
     * With REDIS_URL: every this often, a live track's audio past its stored finals is written to Redis
     * (sealed), so a producer that cannot resend loses at most this much when its gateway dies. 0: off.
     */
    TRACK_TAIL_MS: int(1000, 0, 60000),
    /** How long a tail nobody took is kept (a track whose producer never came back and whose session has not ended). */
    TRACK_TAIL_TTL_MS: int(6 * 3600000, 60000, 7 * 24 * 3600000),

    DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
    DATA_DIR: z.string().min(1).default('.data'),

    ALERT_WEBHOOK_URL: z.url().optional(),
    ALERT_WEBHOOK_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    ALERT_EVALUATION_MS: int(60000, 50, 3600000),
    ALERT_FOR_SCALE: z.coerce.number().min(0).max(100).default(1),
    WEBHOOK_URL: z.url().optional(),
    WEBHOOK_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    WEBHOOK_MAX_ATTEMPTS: int(8, 1, 50),
    WEBHOOK_RETRY_BASE_MS: int(1000, 10, 600000),
    WEBHOOK_TIMEOUT_MS: int(10000, 100, 120000),
    PUBLIC_URL: z.url().optional(),

    ARCHIVE_RECIPIENTS: z
      .string()
      .optional()
      .transform((v) => (v ?? '').split(',').map((r) => r.trim()).filter(Boolean))
      .refine((list) => list.every((r) => r.startsWith('age1')), 'every recipient must be an age public key (age1…)'),
    ARCHIVE_INSECURE_DISABLE: z.stringbool().default(false),
    ARCHIVE_STORE: z.enum(['local', 's3']).default('local'),
    ARCHIVE_DIR: z.string().min(1).optional(),
    SPOOL_DIR: z.string().min(1).optional(),
    ARCHIVE_PREFIX: z.string().default(''),
    /** Live tracks' one-second slices go to the object store this often (a lost machine costs at most this plus a second); 0: at the end only. */
    ARCHIVE_STREAM_MS: int(5000, 0, 3600000),
    S3_ENDPOINT: z.url().optional(),
    S3_BUCKET: z.string().min(1).optional(),
    S3_REGION: z.string().min(1).default('us-east-1'),
    S3_ACCESS_KEY_ID: z.string().min(1).optional(),
    S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
    S3_FORCE_PATH_STYLE: z.stringbool().default(false),
    S3_TIMEOUT_MS: int(30000, 1000, 600000),
  })
  .refine((c) => c.ARCHIVE_RECIPIENTS.length > 0 || c.ARCHIVE_INSECURE_DISABLE, {
    message: 'set at least one age recipient (age1…): recordings are archived encrypted to the clinic. For development only, ARCHIVE_INSECURE_DISABLE=true runs without an archive',
    path: ['ARCHIVE_RECIPIENTS'],
  })
  .refine((c) => c.ARCHIVE_STORE !== 's3' || c.S3_BUCKET, { message: 'ARCHIVE_STORE=s3 needs S3_BUCKET', path: ['S3_BUCKET'] })
  .refine((c) => !c.WEBHOOK_URL || c.WEBHOOK_SECRET, { message: 'WEBHOOK_URL needs WEBHOOK_SECRET to sign deliveries', path: ['WEBHOOK_SECRET'] })
  .refine((c) => !c.ALERT_WEBHOOK_URL || c.ALERT_WEBHOOK_SECRET || c.WEBHOOK_SECRET, { message: 'ALERT_WEBHOOK_URL needs ALERT_WEBHOOK_SECRET (or WEBHOOK_SECRET) to sign alerts', path: ['ALERT_WEBHOOK_SECRET'] })
  .refine((c) => (c.WEBRTC_PORT_MIN === undefined) === (c.WEBRTC_PORT_MAX === undefined) && (c.WEBRTC_PORT_MIN ?? 0) < (c.WEBRTC_PORT_MAX ?? 1), {
    message: 'set both WEBRTC_PORT_MIN and WEBRTC_PORT_MAX, min below max',
    path: ['WEBRTC_PORT_MIN'],
  })
  .refine((c) => (c.RTP_PORT_MIN === undefined) === (c.RTP_PORT_MAX === undefined) && (c.RTP_PORT_MIN ?? 0) <= (c.RTP_PORT_MAX ?? 0), {
    message: 'set both RTP_PORT_MIN and RTP_PORT_MAX, min not above max',
    path: ['RTP_PORT_MIN'],
  })
  .refine((c) => c.UPLOAD_WORKERS > 0 || c.REDIS_URL, { message: 'UPLOAD_WORKERS=0 needs REDIS_URL: without Redis only the gateway can run upload jobs', path: ['UPLOAD_WORKERS'] })
  .refine((c) => c.JWT_SECRET || c.JWT_JWKS_URL, {
    message: 'set JWT_SECRET (HS256) or JWT_JWKS_URL: every endpoint needs signed tokens',
    path: ['JWT_SECRET'],
  });

export type Config = z.infer<typeof schema>;

const workerSchema = z.object({
  ...shared,
  REDIS_URL: redisUrl,
  AT_REST_KEY: atRestKeyRequired,
  WORKER_CONCURRENCY: int(4, 1, 256),
});
export type WorkerConfig = z.infer<typeof workerSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  return parse(schema, env);
}

/** The configuration of a separate upload worker (`npm run worker`): STT, Redis and the queue only. */
export function loadWorkerConfig(env: Record<string, string | undefined> = process.env): WorkerConfig {
  return parse(workerSchema, env);
}

/** An empty variable (`DATABASE_URL=` as `.env` files leave them) means unset, for every variable. */
function parse<T extends z.ZodType>(schema: T, env: Record<string, string | undefined>): z.infer<T> {
  const set = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ''));
  const result = schema.safeParse(set);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => `  ${issue.path.join('.') || '(config)'}: ${issue.message}`);
  throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
}
