/**
 * A visit's data, from the privacy officer's side, end to end with a real S3 server (s3rver) on both
 * databases: `DELETE /v1/sessions/{id}` removes the recordings (objects gone from the bucket), the
 * transcript versions, segments, jobs and data key, disconnects its caption viewers (4410), and leaves
 * the audit trail (reads, caption viewing, the deletion itself) without content; a live session is
 * refused (409) until ended. Retention, swept as the schedule sweeps: recordings past
 * RETENTION_RECORDINGS_DAYS go while the transcript stays; sessions past RETENTION_TRANSCRIPTS_DAYS go
 * whole. Caption viewing is audited like a REST read.
 */
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CloseCode } from '../../client-sdk/src/protocol.ts';
import type { TestDriver } from '../support/databases.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { S3_BUCKET, S3_CREDENTIALS, S3Server } from '../support/s3-server.ts';
import { CaptionCollector } from '../support/viewer.ts';

const s3 = await new S3Server().start();
const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: S3_CREDENTIALS });
const DAY_MS = 24 * 3600 * 1000;

async function objectsUnder(prefix: string): Promise<string[]> {
  const listed = await client.send(new ListObjectsV2Command({ Bucket: S3_BUCKET, Prefix: prefix }));
  return (listed.Contents ?? []).map((o) => o.Key!);
}

const service = async (h: Harness) => ({ authorization: `Bearer ${await h.token('service')}` });

/** Streams the doctor's track of a consultation, ends the session, waits for its recording in the bucket. */
async function completedVisit(h: Harness, sessionId: string, language: string): Promise<void> {
  const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/${language}/doctor` });
  const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
  const result = await streamChunks(ingestUrl(h.baseUrl, sessionId, 'doctor', { format: 'opus', role: 'doctor', language, access_token: await h.token('producer', sessionId) }), chunks, 0);
  assert.is(result.closeCode, 1000);
  await viewer.tracksEnded(['doctor'], 60000);
  viewer.close();
  assert.is((await fetch(`${h.baseUrl}/v1/sessions/${sessionId}/end`, { method: 'POST', headers: await service(h) })).status, 200);
  for (const deadline = Date.now() + 30000; ; await new Promise((r) => setTimeout(r, 100))) {
    const status = await (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}`, { headers: await service(h) })).json();
    if (status.archive.recordings.length > 0 && status.archive.recordings.every((r: { state: string }) => r.state === 'uploaded')) return;
    if (Date.now() > deadline) throw new Error(`${sessionId}: recording not uploaded`);
  }
}

for (const driver of ['postgres', 'pglite'] as TestDriver[]) {
  test(`${driver}: DELETE removes a visit's recordings, transcript and rows, disconnects its viewers; the audit trail stays without content`, async () => {
    const h = await startHarness(s3.env, {}, driver);
    try {
      const id = `erase-${driver}`;
      await completedVisit(h, id, 'en');
      assert.ok((await objectsUnder(`sessions/${id}/`)).length > 0, 'the recording is in the bucket');
      const transcript = await fetch(`${h.baseUrl}/v1/sessions/${id}/transcript?format=text`, { headers: await service(h) });
      assert.is(transcript.status, 200);
      const words = (await transcript.text()).split(/\s+/).filter((w) => w.length > 5);
      const viewer = await CaptionCollector.connect(h.baseUrl, id, await h.token('viewer', id));
      await viewer.waitFor((e) => e.type === 'session');

      // A live session cannot be deleted: it is ended first.
      const live = 'erase-live';
      const liveViewer = await CaptionCollector.connect(h.baseUrl, live, await h.token('viewer', live));
      await liveViewer.waitFor((e) => e.type === 'session');
      const refused = await fetch(`${h.baseUrl}/v1/sessions/${live}`, { method: 'DELETE', headers: await service(h) });
      assert.is(refused.status, 409);
      assert.is((await refused.json()).error.code, 'session_active');
      liveViewer.close();

      const deleted = await fetch(`${h.baseUrl}/v1/sessions/${id}`, { method: 'DELETE', headers: await service(h) });
      assert.is(deleted.status, 204);
      assert.is(await viewer.closed(), CloseCode.sessionDeleted, 'its viewers are disconnected');
      assert.equal(await objectsUnder(`sessions/${id}/`), [], 'no object of the visit is left in the bucket');
      assert.is((await fetch(`${h.baseUrl}/v1/sessions/${id}`, { headers: await service(h) })).status, 404);
      assert.is((await fetch(`${h.baseUrl}/v1/sessions/${id}/transcript`, { headers: await service(h) })).status, 404);
      const { store } = h.gateway;
      assert.equal(await store.listSegments(id), []);
      assert.is(await store.latestTranscript(id), undefined);
      assert.equal(await store.recordingsOf(id), []);
      assert.equal(await store.listTracks(id), []);
      assert.is(await store.dataKey(id), undefined);
      const trail = await store.auditTrail(id);
      const actions = trail.map((e) => e.action);
      for (const action of ['session.read', 'transcript.read', 'captions.watch', 'session.delete']) assert.ok(actions.includes(action), `${action} in ${actions}`);
      const kept = JSON.stringify(trail);
      assert.ok(words.every((w) => !kept.includes(w)), 'no transcript word in the audit trail');
      assert.is((await fetch(`${h.baseUrl}/v1/sessions/${id}`, { method: 'DELETE', headers: await service(h) })).status, 404, 'deleting again: not found');
      const viewerToken = await fetch(`${h.baseUrl}/v1/sessions/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${await h.token('viewer', id)}` } });
      assert.is(viewerToken.status, 403);
    } finally {
      await h.close();
    }
  });
}

test('retention: recordings past their days go (the transcript stays), then sessions past theirs go whole', async () => {
  const h = await startHarness({ ...s3.env, RETENTION_RECORDINGS_DAYS: '1', RETENTION_TRANSCRIPTS_DAYS: '3' });
  try {
    const id = 'retained';
    await completedVisit(h, id, 'fa');
    const { lifecycle, store } = h.gateway;
    assert.equal(await lifecycle.sweep(new Date(Date.now() + DAY_MS / 2)), { sessions: 0, recordings: 0 }, 'nothing has expired yet');
    assert.equal(await lifecycle.sweep(new Date(Date.now() + 2 * DAY_MS)), { sessions: 0, recordings: 1 });
    assert.equal(await objectsUnder(`sessions/${id}/`), [], 'the recording is gone from the bucket');
    const status = await (await fetch(`${h.baseUrl}/v1/sessions/${id}`, { headers: await service(h) })).json();
    assert.equal(status.archive.recordings, []);
    assert.is((await fetch(`${h.baseUrl}/v1/sessions/${id}/transcript?format=text`, { headers: await service(h) })).status, 200, 'the transcript stays');
    assert.equal(await lifecycle.sweep(new Date(Date.now() + 4 * DAY_MS)), { sessions: 1, recordings: 0 });
    assert.is((await fetch(`${h.baseUrl}/v1/sessions/${id}`, { headers: await service(h) })).status, 404);
    const actions = (await store.auditTrail(id)).map((e) => e.action);
    assert.ok(actions.includes('recording.expire') && actions.includes('session.expire'), `${actions}`);
  } finally {
    await h.close();
  }
});

test.after(async () => {
  client.destroy();
  await s3.destroy();
});

test.run();
