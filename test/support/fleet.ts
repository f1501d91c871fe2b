/**
 * A fleet on loopback for tests and benches: gateway processes (`src/main.ts`, killable with SIGKILL)
 * sharing one PostgreSQL and Redis, behind nginx running the repository's own configuration
 * (`deploy/nginx/nginx.conf`, its upstream servers and listen port replaced by loopback ones).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net.ts';

export interface FleetGateway {
  id: string;
  baseUrl: string;
  port: number;
  process: ChildProcess;
  /** SIGKILL: the instance dies with no shutdown at all. */
  kill(): Promise<void>;
  /** SIGTERM: the instance drains and stops. */
  stop(): Promise<void>;
}

/** The Node flags `npm start` runs the gateway with (package.json): tests and benches run it as it ships. */
export const shippedNodeArgs: readonly string[] = (JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }).scripts.start
  .split(' ')
  .filter((word) => word.startsWith('--'));

/** Debian's libfaketime (package faketime), thread-safe build: a process's wall clock moved, its monotonic clock left alone. */
function libfaketime(): string {
  const dir = readdirSync('/usr/lib').map((arch) => join('/usr/lib', arch, 'faketime', 'libfaketimeMT.so.1')).find((path) => existsSync(path));
  if (!dir) throw new Error('libfaketime is not installed (Debian package faketime; scripts/setup.sh installs it)');
  return dir;
}

/**
 * Starts `src/main.ts` on a free loopback port with `env`; resolves once it answers /healthz.
 * `clockOffsetS`: the instance's wall clock runs this many seconds off (libfaketime), as a machine whose clock drifted.
 */
export async function startGatewayProcess(id: string, env: Record<string, string>, clockOffsetS = 0): Promise<FleetGateway> {
  const port = await freePort();
  const clock = clockOffsetS === 0 ? {} : { LD_PRELOAD: libfaketime(), FAKETIME: `${clockOffsetS >= 0 ? '+' : ''}${clockOffsetS}s`, FAKETIME_DONT_FAKE_MONOTONIC: '1' };
  const child = spawn(process.execPath, [...shippedNodeArgs, 'src/main.ts'], {
    env: { ...process.env, ...env, ...clock, INSTANCE_ID: id, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', process.env.FLEET_LOG_LEVEL ? 'inherit' : 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 60000;
  while (!(await fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false))) {
    if (child.exitCode !== null || performance.now() > deadline) throw new Error(`gateway ${id} did not start (exit code ${child.exitCode})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    id,
    baseUrl,
    port,
    process: child,
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface Nginx {
  baseUrl: string;
  /** The master process's (its workers are its children). */
  pid: number;
  stop(): Promise<void>;
}

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((path) => existsSync(path)) ?? 'nginx';

/** Runs nginx with the repository's configuration in front of these gateway ports. */
export async function startNginx(gatewayPorts: number[]): Promise<Nginx> {
  const dir = await mkdtemp(join(tmpdir(), 'helssa-nginx-'));
  const port = await freePort();
  const shipped = await readFile(new URL('../../deploy/nginx/nginx.conf', import.meta.url), 'utf8');
  const servers = (indent: string, options: string) => gatewayPorts.map((p) => `${indent}server 127.0.0.1:${p}${options};\n`).join('');
  const config = shipped
    .replace(/((?:( *)server gateway-\d+:8080([^;]*);\n)+)/g, (_block, _all, indent: string, options: string) => servers(indent, options))
    .replace(/listen 8080;/, `listen 127.0.0.1:${port};`);
  if (config.includes('gateway-')) throw new Error('nginx.conf: upstream servers not replaced');
  await writeFile(join(dir, 'nginx.conf'), config);
  const child = spawn(NGINX, ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-g', `daemon off; pid ${join(dir, 'nginx.pid')}; error_log stderr error;`], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 10000;
  while (!(await fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false))) {
    if (child.exitCode !== null || performance.now() > deadline) throw new Error(`nginx did not start (exit code ${child.exitCode})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    baseUrl,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisServer {
  url: string;
  /** Kills the server (SIGKILL: clients see their connections cut). */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  start(): Promise<void>;
}

/** A private Redis (no persistence) on a free loopback port, so a test may restart it. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const server: RedisServer = {
    url: `redis://127.0.0.1:${port}`,
    async kill() {
      if (!child || child.exitCode !== null) return;
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      const deadline = performance.now() + 10000;
      for (;;) {
        const up = await new Promise<boolean>((resolve) => {
          const probe = spawn('redis-cli', ['-p', String(port), 'ping'], { stdio: ['ignore', 'pipe', 'ignore'] });
          let out = '';
          probe.stdout.on('data', (d) => (out += d));
          probe.once('exit', () => resolve(out.includes('PONG')));
        });
        if (up) return;
        if (performance.now() > deadline) throw new Error('redis-server did not start');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
  await server.start();
  return server;
}

export interface PostgresServer {
  url: string;
  /** Stops at once (`immediate`: connections cut, as a crash). */
  kill(): Promise<void>;
  start(): Promise<void>;
  remove(): Promise<void>;
}

/** The newest PostgreSQL server binaries Debian installed. */
function postgresBin(): string {
  const versions = readdirSync('/usr/lib/postgresql').filter((v) => existsSync(`/usr/lib/postgresql/${v}/bin/initdb`));
  const newest = versions.sort((a, b) => Number(a) - Number(b)).at(-1);
  if (!newest) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql');
  return `/usr/lib/postgresql/${newest}/bin`;
}

function runAs(user: string, command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('runuser', ['-u', user, '--', command, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} failed (${code}): ${err}`))));
  });
}

/** A private PostgreSQL cluster on a free loopback port (trust auth), so a test may restart it. Needs root (runs as `postgres`). */
export async function startPostgres(): Promise<PostgresServer> {
  const PG_BIN = postgresBin();
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'helssa-pg-'));
  await new Promise<void>((resolve, reject) => spawn('chown', ['postgres:postgres', dir]).once('exit', (code) => (code === 0 ? resolve() : reject(new Error('chown failed')))));
  const data = join(dir, 'data');
  await runAs('postgres', `${PG_BIN}/initdb`, ['-D', data, '--auth=trust', '-U', 'postgres', '--no-sync']);
  const server: PostgresServer = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    kill: () => runAs('postgres', `${PG_BIN}/pg_ctl`, ['-D', data, '-m', 'immediate', 'stop']),
    start: () => runAs('postgres', `${PG_BIN}/pg_ctl`, ['-D', data, '-w', '-l', join(dir, 'log'), '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']),
    async remove() {
      await server.kill().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
