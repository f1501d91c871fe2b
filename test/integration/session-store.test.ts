/**
 * The store's per-final write on the real PostgreSQL server and on PGlite: finals appended at once from
 * several gateways (store instances over their own connections) take the session's seqs 1..N exactly once,
 * in the order they commit, and read back as written; a final for a session that is not there is refused.
 * A track's state (live, ended, taken over by another instance) and its windows' jobs, written by the
 * prepared statements every live track runs, read back as written.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { asc, eq } from 'drizzle-orm';
import type { Word } from '../../client-sdk/src/protocol.ts';
import { openDatabase, type OpenedDatabase } from '../../src/store/database.ts';
import { segments, sttJobs } from '../../src/store/schema.ts';
import { SessionStore, type TrackRecord, type UnnumberedFinal } from '../../src/store/session-store.ts';
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

  test(`${driver}: a track's state is written by its holder only, taken over by another, ended; its windows' jobs queued and finished`, async () => {
    const database = await createTestDatabase(driver);
    const opened = await openDatabase({ url: database.env.DATABASE_URL, dataDir: database.env.DATA_DIR ?? '' });
    try {
      const [first, second, unnamed] = [new SessionStore(opened.db, 'gw-1'), new SessionStore(opened.db, 'gw-2'), new SessionStore(opened.db)];
      assert.ok(await first.createSession({ id: 'visit' }));
      const track = (values: Partial<TrackRecord>): TrackRecord => ({ trackId: 'doctor', role: 'doctor', participant: 'dr-a', format: 'opus', state: 'live', receivedMs: 0, epoch: 1, ...values });
      const read = async () => {
        const row = await first.getTrack('visit', 'doctor');
        return row && { state: row.state, receivedMs: row.receivedMs, epoch: row.epoch, owner: row.owner, maxSpeakers: row.maxSpeakers, ended: row.endedAt !== null };
      };

      await first.saveTrack('visit', track({ maxSpeakers: 2 }), true);
      await first.saveTrack('visit', track({ receivedMs: 5000 }));
      assert.equal(await read(), { state: 'live', receivedMs: 5000, epoch: 1, owner: 'gw-1', maxSpeakers: 2, ended: false });
      // Another instance's write without taking over changes nothing; a reconnection there takes the track.
      await second.saveTrack('visit', track({ receivedMs: 9000, state: 'reconnecting' }));
      assert.equal((await read())?.receivedMs, 5000);
      await second.saveTrack('visit', track({ receivedMs: 6000, epoch: 2 }), true);
      assert.equal(await read(), { state: 'live', receivedMs: 6000, epoch: 2, owner: 'gw-2', maxSpeakers: 2, ended: false });
      // The instance that lost the track cannot end it; its holder can (and a reconnecting track is live).
      await first.saveTrack('visit', track({ receivedMs: 5500, state: 'ended' }));
      assert.equal((await read())?.owner, 'gw-2');
      await second.saveTrack('visit', track({ receivedMs: 7000, epoch: 2, state: 'reconnecting' }));
      assert.equal(await read(), { state: 'live', receivedMs: 7000, epoch: 2, owner: 'gw-2', maxSpeakers: 2, ended: false });
      await second.saveTrack('visit', track({ receivedMs: 8000, epoch: 2, state: 'ended' }));
      assert.equal(await read(), { state: 'ended', receivedMs: 8000, epoch: 2, owner: null, maxSpeakers: 2, ended: true });
      // A store with no instance id (one gateway alone) writes whatever the owner.
      await unnamed.saveTrack('visit', track({ receivedMs: 8500, epoch: 3 }));
      assert.equal(await read(), { state: 'live', receivedMs: 8500, epoch: 3, owner: null, maxSpeakers: 2, ended: false });

      for (const id of ['u-1', 'u-2', 'u-3']) await first.jobQueued('visit', 'doctor', id, { startMs: 0, endMs: 1000 });
      await first.jobQueued('visit', 'doctor', 'u-1', { startMs: 5, endMs: 6 });
      await first.jobFailedAttempt('visit', 'u-2', 'timeout');
      await first.jobFinished('visit', 'u-1', 'done', 812.4);
      await first.jobFinished('visit', 'u-2', 'done', 95);
      await first.jobFinished('visit', 'u-3', 'failed', null, 'STT answered 500');
      assert.equal(await first.jobCounts('visit'), { pending: 0, done: 2, failed: 1 });
      const jobs = await opened.db.select().from(sttJobs).where(eq(sttJobs.sessionId, 'visit')).orderBy(asc(sttJobs.utteranceId));
      assert.equal(
        jobs.map((j) => ({ id: j.utteranceId, status: j.status, attempts: j.attempts, sttMs: j.sttMs, startMs: j.startMs, lastError: j.lastError, completed: j.completedAt instanceof Date })),
        [
          { id: 'u-1', status: 'done', attempts: 1, sttMs: 812, startMs: 0, lastError: null, completed: true },
          { id: 'u-2', status: 'done', attempts: 2, sttMs: 95, startMs: 0, lastError: 'timeout', completed: true },
          { id: 'u-3', status: 'failed', attempts: 1, sttMs: null, startMs: 0, lastError: 'STT answered 500', completed: true },
        ],
      );
    } finally {
      await opened.close();
      await database.release();
    }
  });
}

test.run();
