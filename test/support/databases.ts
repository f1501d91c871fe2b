/**
 * Throw-away databases for tests: a fresh database on the PostgreSQL server (127.0.0.1:5432, or
 * TEST_DATABASE_URL), or a fresh PGlite directory. Each is dropped/removed on release.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';

export type TestDriver = 'postgres' | 'pglite';

export interface TestDatabase {
  driver: TestDriver;
  /** Environment for the gateway: DATABASE_URL or DATA_DIR. */
  env: Record<string, string>;
  release(): Promise<void>;
}

const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export async function createTestDatabase(driver: TestDriver = 'postgres'): Promise<TestDatabase> {
  if (driver === 'pglite') {
    const dir = await mkdtemp(join(tmpdir(), 'helssa-pglite-'));
    return { driver, env: { DATA_DIR: dir }, release: () => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }) };
  }
  const name = `helssa_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    driver,
    env: { DATABASE_URL: url.toString() },
    async release() {
      const drop = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
      await drop.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await drop.end();
    },
  };
}
