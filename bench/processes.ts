/** The processes a benchmark runs beside itself: the test STT server and gateways, and their CPU time. */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { shippedNodeArgs } from '../test/support/fleet.ts';
import { freePort } from '../test/support/net.ts';
import { signToken, TEST_JWT_SECRET } from '../test/support/tokens.ts';

const CLOCK_TICKS = 100;

/** CPU seconds (user + system, all its threads) a process has used, from /proc. */
async function processCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

export function cpuSeconds(child: ChildProcess): Promise<number> {
  return processCpuSeconds(child.pid!);
}

/** CPU seconds of a process and every process below it (nginx's master and workers). */
export async function treeCpuSeconds(pid: number): Promise<number> {
  let total = await processCpuSeconds(pid);
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).split(' ').filter(Boolean).map(Number);
  for (const child of children) total += await treeCpuSeconds(child);
  return total;
}

/**
 * `BENCH_NODE_ARGS` (e.g. `--cpu-prof --trace-gc`) go to the gateways' Node after the shipped flags, to look
 * inside what a bench measures or to measure another setting (a V8 flag given twice: the last one counts).
 */
export function startProcess(args: string[], env: Record<string, string>, stdout: 'pipe' | 'inherit' = 'pipe'): ChildProcess {
  const nodeArgs = args[0] === 'src/main.ts' ? [...shippedNodeArgs, ...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [])] : [];
  return spawn(process.execPath, [...nodeArgs, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', stdout, 'inherit'] });
}

export async function startSttServer(env: Record<string, string> = {}): Promise<{ child: ChildProcess; url: string }> {
  const child = startProcess(['test/support/stt-server-main.ts'], env);
  const [line] = await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next().then((r) => [r.value as string]);
  return { child, url: line.trim() };
}

const dataDir = await mkdtemp(join(tmpdir(), 'helssa-bench-'));

/** The key-encryption key the bench's gateways and upload workers share. */
export const BENCH_AT_REST_KEY = randomBytes(32).toString('base64');

/** A gateway in its own process (PGlite in a fresh directory), with `env` on top of the bench defaults. */
export async function startGateway(sttUrl: string, env: Record<string, string>): Promise<{ child: ChildProcess; baseUrl: string }> {
  const port = await freePort();
  const child = startProcess(['src/main.ts'], {
    PORT: String(port), HOST: '127.0.0.1', JWT_SECRET: TEST_JWT_SECRET, STT_BASE_URL: sttUrl, OPENAI_API_KEY: 'bench', LOG_LEVEL: 'error', STT_CONCURRENCY: '8',
    // Streams run many times faster than real time, many tracks under one token.
    INGEST_MAX_SPEED: '10000', RATE_LIMIT_PER_MINUTE: '1000000', MAX_LIVE_TRACKS_PER_TOKEN: '10000', MAX_TRACKS_PER_SESSION: '1000', AT_REST_KEY: BENCH_AT_REST_KEY,
    DATA_DIR: join(dataDir, String(port)), ...env,
  }, 'inherit');
  const baseUrl = `http://127.0.0.1:${port}`;
  // PGlite's first start (initdb) takes ~10 s, longer on a loaded machine.
  for (let i = 0; i < 1200; i++) {
    if (await fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false)) return { child, baseUrl };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('gateway did not start');
}

export async function stop(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

export function removeBenchData(): Promise<void> {
  return rm(dataDir, { recursive: true, force: true });
}

/** A Summary's quantiles from the gateway's /metrics, in milliseconds, and its count. */
export async function quantiles(baseUrl: string, metric: string): Promise<Record<string, number>> {
  const text = await metricsText(baseUrl);
  const out: Record<string, number> = {};
  for (const match of text.matchAll(new RegExp(`${metric}\\{quantile="([\\d.]+)"\\} ([\\d.eE+-]+|NaN)`, 'g'))) out[match[1]] = Number(match[2]) * 1000;
  out.count = Number(new RegExp(`${metric}_count (\\d+)`).exec(text)?.[1] ?? 0);
  return out;
}

/** A counter's value from /metrics. */
export async function counter(baseUrl: string, metric: string): Promise<number> {
  return Number(new RegExp(`^${metric} ([\\d.eE+-]+)$`, 'm').exec(await metricsText(baseUrl))?.[1] ?? 0);
}

/** A gauge's value from /metrics (scraping also resets what prom-client resets per scrape, e.g. the event-loop delay). */
export async function gauge(baseUrl: string, metric: string): Promise<number> {
  return Number(new RegExp(`^${metric} ([\\d.eE+-]+|NaN)$`, 'm').exec(await metricsText(baseUrl))?.[1] ?? NaN);
}

async function metricsText(baseUrl: string): Promise<string> {
  return (await fetch(`${baseUrl}/metrics`, { headers: { authorization: `Bearer ${await signToken({ role: 'service' })}` } })).text();
}
