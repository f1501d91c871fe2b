/** Starts a real gateway (HTTP + WebSocket on a loopback port) against a test STT server. */
import { createGateway, type Gateway, type GatewayAdapters } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { ensureCorpus } from '../../scripts/make-corpus.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestIdentity, type TestIdentity } from './age.ts';
import { createTestDatabase, type TestDriver } from './databases.ts';
import { SttServer, type SttServerOptions } from './stt-server.ts';
import { signToken, TEST_JWT_SECRET } from './tokens.ts';

export interface Harness {
  gateway: Gateway;
  stt: SttServer;
  baseUrl: string;
  corpusDir: string;
  /** The archive's recipient is this identity's; the spool and the local archive live in dataDir. */
  identity: TestIdentity;
  dataDir: string;
  token(role: 'producer' | 'viewer' | 'service', session?: string): Promise<string>;
  /** Shuts the gateway down (as on SIGTERM) and starts a new one on the same database and data (new port). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** A logger to read what the gateway logs, and adapters in place of the configured ones. */
export interface HarnessOptions {
  log?: Logger;
  adapters?: GatewayAdapters;
}

export async function startHarness(env: Record<string, string> = {}, sttOptions: Partial<SttServerOptions> = {}, driver: TestDriver = 'postgres', options: HarnessOptions = {}): Promise<Harness> {
  const corpusDir = await ensureCorpus();
  const stt = await new SttServer({ corpusDir, ...sttOptions }).start();
  const database = await createTestDatabase(driver);
  const identity = await createTestIdentity();
  const dataDir = database.env.DATA_DIR ?? (await mkdtemp(join(tmpdir(), 'helssa-data-')));
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    JWT_SECRET: TEST_JWT_SECRET,
    STT_BASE_URL: stt.baseUrl,
    OPENAI_API_KEY: 'test-key',
    STT_TIMEOUT_MS: '10000',
    STT_MAX_RETRIES: '2',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    // Tests stream many times faster than real time and poll often; the security tests set these low.
    INGEST_MAX_SPEED: '10000',
    // The speech check (Silero, 8 ms of CPU per second of audio) is on where a test is about it or about
    // the live pipeline as deployed (invented-words, live-pipeline); elsewhere it would only slow hours of
    // test audio streamed at many times real time.
    STT_SPEECH_CHECK: 'off',
    RATE_LIMIT_PER_MINUTE: '1000000',
    SESSION_CREATE_PER_MINUTE: '1000000',
    RATE_LIMIT_PER_IP_PER_MINUTE: '10000000',
    UPLOADS_PER_MINUTE: '1000000',
    INGEST_CONNECTIONS_PER_MINUTE: '1000000',
    MAX_LIVE_TRACKS_PER_TOKEN: '64',
    ...database.env,
    DATA_DIR: dataDir,
    ARCHIVE_RECIPIENTS: identity.recipient,
    // `{stt}` in a value stands for the test recognizer's base URL (known once it listens).
    ...Object.fromEntries(Object.entries(env).map(([name, value]) => [name, value.replaceAll('{stt}', stt.baseUrl)])),
  });
  const newLogger = () => options.log ?? createLogger(config.LOG_LEVEL);
  const gateway = await createGateway(config, newLogger(), options.adapters);
  const port = await gateway.listen();
  const harness: Harness = {
    gateway,
    stt,
    baseUrl: `http://127.0.0.1:${port}`,
    corpusDir,
    identity,
    dataDir,
    token: (role, session) => signToken({ role, session }),
    async restart() {
      await harness.gateway.close();
      harness.gateway = await createGateway(config, newLogger(), options.adapters);
      harness.baseUrl = `http://127.0.0.1:${await harness.gateway.listen()}`;
    },
    async close() {
      await harness.gateway.close();
      await stt.stop();
      await database.release();
      await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    },
  };
  return harness;
}
