/**
 * The store's per-final write on the real PostgreSQL server and on PGlite: finals appended at once from
 * several gateways (store instances over their own connections) take the session's seqs 1..N exactly once,
 * in the order they commit, and read back as written; a final for a session that is not there is refused.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { asc } from 'drizzle-orm';
import type { Word } from '../../client-sdk/src/protocol.ts';
import { openDatabase, type OpenedDatabase } from '../../src/store/database.ts';
import { segments } from '../../src/store/schema.ts';
import { SessionStore, type UnnumberedFinal } from '../../src/store/session-store.ts';
import { createTestDatabase, type TestDriver } from '../support/databases.ts';

const FINALS = 60;

function final(sessionId: string, i: number, withConfidence: boolean): UnnumberedFinal {
  const words: Word[] = [
    { word: `word${i}`, startMs: i * 1000, endMs: i * 1000 + 400, ...(withConfidence ? { confidence: 0.5 } : {}) },
    { word: 'دوم', startMs: i * 1000 + 400, endMs: i * 1000 + 900, ...(withConfidence ? { confidence: 1 } : {}) },
  ];
  return { type: 'final', sessionId, trackId: `track-${i % 3}`, role: i % 2 ? 'doctor' : 'patient', roleSource: 'track', speaker: `S${i % 2}`, utteranceId: `u-${i}`, text: `word${i} دوم`, words, startMs: i * 1000, endMs: i * 1000 + 900 };
}

for (const driver of ['postgres', 'pglite'] as TestDriver[]) {
  test(`${driver}: finals appended at once from several gateways take seqs 1..N once each and read back as written`, async () => {
    const database = await createTestDatabase(driver);
    // PGlite is one process's alone: one connection; PostgreSQL: three gateways, each with its pool.
    const opened: OpenedDatabase[] = [];
    for (let i = 0; i < (driver === 'postgres' ? 3 : 1); i++) opened.push(await openDatabase({ url: database.env.DATABASE_URL, dataDir: database.env.DATA_DIR ?? '' }));
    try {
      const stores = opened.map((o, i) => new SessionStore(o.db, `gw-${i}`));
      assert.ok(await stores[0].createSession({ id: 'visit' }));
      const appended = await Promise.all(Array.from({ length: FINALS }, (_, i) => stores[i % stores.length].appendSegment(final('visit', i, i % 4 !== 0), i % 5 ? i * 10.6 : undefined)));
      assert.equal(appended.map((f) => f.seq).sort((a, b) => a - b), Array.from({ length: FINALS }, (_, i) => i + 1));
      for (const f of appended) assert.is(f.segmentId, `visit.${f.seq}`);
      assert.is(await stores[0].lastSeq('visit'), FINALS);

      const stored = await stores.at(-1)!.listSegments('visit');
      assert.equal(stored, [...appended].sort((a, b) => a.seq - b.seq));
      assert.equal((await stores[0].listSegments('visit', FINALS - 2)).map((f) => f.seq), [FINALS - 1, FINALS]);

      // What analytics read of each final, computed in the same statement.
      const columns = await opened[0].db.select({ seq: segments.seq, confidence: segments.confidence, latencyMs: segments.latencyMs, wordCount: segments.wordCount }).from(segments).orderBy(asc(segments.seq));
      for (const row of columns) {
        const i = Number(/word(\d+)/.exec(stored[row.seq - 1].text)![1]);
        assert.equal(row, { seq: row.seq, confidence: i % 4 !== 0 ? 0.75 : null, latencyMs: i % 5 ? Math.round(i * 10.6) : null, wordCount: 2 });
      }

      const refused = await stores[0].appendSegment(final('missing', 1, true)).then(() => undefined, (error: Error) => error);
      assert.match(refused?.message ?? 'stored', /session missing does not exist/);
      assert.is(await stores[0].lastSeq('missing'), 0);
    } finally {
      for (const o of opened) await o.close();
      await database.release();
    }
  });
}

test.run();
