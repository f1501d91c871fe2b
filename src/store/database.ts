/**
 * Opens the database and applies the committed migrations: PostgreSQL through postgres.js when a URL is
 * given (production), otherwise PGlite persisted in a data directory (the embedded default). Both are
 * driven through one drizzle type, so the store above does not know which it has.
 */
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import * as schema from './schema.ts';

export type Database = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface OpenedDatabase {
  db: Database;
  driver: 'postgres' | 'pglite';
  /**
   * Runs `work` unless another process holds advisory lock `lock` (it then returns false at once): one
   * gateway of a fleet at a time does a scheduled job. PGlite is one process's alone: `work` just runs.
   */
  exclusive(lock: number, work: () => Promise<void>): Promise<boolean>;
  close(): Promise<void>;
}

const MIGRATIONS = fileURLToPath(new URL('../../drizzle', import.meta.url));
/** Serializes migrations when several gateways or workers start against one PostgreSQL. */
const MIGRATION_LOCK = 727_001;

export async function openDatabase(options: { url?: string; dataDir: string }): Promise<OpenedDatabase> {
  if (options.url) {
    const client = postgres(options.url, { max: 10, onnotice: () => {} });
    const db = drizzlePostgres(client, { schema });
    const lock = await client.reserve();
    try {
      await lock`select pg_advisory_lock(${MIGRATION_LOCK})`;
      await migratePostgres(db, { migrationsFolder: MIGRATIONS });
      await lock`select pg_advisory_unlock(${MIGRATION_LOCK})`;
    } finally {
      lock.release();
    }
    const exclusive = async (id: number, work: () => Promise<void>) => {
      const held = await client.reserve();
      try {
        const [{ locked }] = await held`select pg_try_advisory_lock(${id}) as locked`;
        if (!locked) return false;
        try {
          await work();
        } finally {
          await held`select pg_advisory_unlock(${id})`;
        }
        return true;
      } finally {
        held.release();
      }
    };
    return { db: db as unknown as Database, driver: 'postgres', exclusive, close: () => client.end({ timeout: 5 }) };
  }
  await mkdir(options.dataDir, { recursive: true });
  const client = new PGlite(options.dataDir);
  const db = drizzlePglite(client, { schema });
  await migratePglite(db, { migrationsFolder: MIGRATIONS });
  return { db: db as unknown as Database, driver: 'pglite', exclusive: async (_lock, work) => (await work(), true), close: () => client.close() };
}
