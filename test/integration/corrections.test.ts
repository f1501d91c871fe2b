/**
 * Transcript corrections over REST, on PostgreSQL: a service corrects segments of a completed visit
 * (`PUT …/transcript` with the version it read); the correction is the next version, with who and when;
 * every version stays readable in every format; a correction of an outdated version is refused (409,
 * two reviewers at once), an unknown segment is a 400, a viewer may not correct; each is audited.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { TranscriptDocument } from '../../client-sdk/src/protocol.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { CaptionCollector } from '../support/viewer.ts';

let h: Harness;

test.before(async () => {
  h = await startHarness();
});

test.after(async () => {
  await h?.close();
});

const auth = async (role: 'service' | 'viewer' = 'service') => ({ authorization: `Bearer ${await h.token(role, 'corrected')}`, 'content-type': 'application/json' });

test('a correction is the next version, with who and when; every version stays readable; stale and bad ones are refused', async () => {
  const id = 'corrected';
  const viewer = await CaptionCollector.connect(h.baseUrl, id, await h.token('viewer', id));
  const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/en/patient` });
  await streamChunks(ingestUrl(h.baseUrl, id, 'patient', { format: 'opus', role: 'patient', language: 'en', access_token: await h.token('producer', id) }), chunks, 0);
  await viewer.tracksEnded(['patient'], 60000);
  viewer.close();
  const ended = await fetch(`${h.baseUrl}/v1/sessions/${id}/end`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` } });
  assert.is(ended.status, 200);
  const firstResponse = await fetch(`${h.baseUrl}/v1/sessions/${id}/transcript`, { headers: await auth() });
  assert.is(firstResponse.status, 200, await firstResponse.clone().text());
  const first = (await firstResponse.json()) as TranscriptDocument;
  assert.is(first.version, 1);
  const target = first.segments[1];
  const fixed = target.text.replace(/metformin/i, 'Metformin 500 mg');

  const put = (body: unknown, headers?: Record<string, string>) => fetch(`${h.baseUrl}/v1/sessions/${id}/transcript`, { method: 'PUT', headers: headers ?? {}, body: JSON.stringify(body) });
  const corrected = await put({ basedOn: 1, segments: [{ id: target.id, text: `${fixed} (reviewed)` }] }, await auth());
  assert.is(corrected.status, 200, await corrected.clone().text());
  const second = (await corrected.json()) as TranscriptDocument;
  assert.is(second.version, 2);
  assert.is(second.correction?.basedOn, 1);
  assert.ok(second.correction?.by, 'who corrected it');
  assert.is(second.segments[1].text, `${fixed} (reviewed)`);
  assert.is(second.segments[1].originalText, target.text);
  assert.equal(second.segments[0], first.segments[0], 'other segments untouched');

  // Both versions readable, in every format; the latest by default.
  const latest = await (await fetch(`${h.baseUrl}/v1/sessions/${id}/transcript?format=text`, { headers: await auth() })).text();
  assert.ok(latest.includes('(reviewed)'));
  const original = await (await fetch(`${h.baseUrl}/v1/sessions/${id}/transcript?format=vtt&version=1`, { headers: await auth() })).text();
  assert.ok(original.startsWith('WEBVTT') && !original.includes('(reviewed)'));
  assert.is((await fetch(`${h.baseUrl}/v1/sessions/${id}/transcript?version=9`, { headers: await auth() })).status, 404);
  const versions = await (await fetch(`${h.baseUrl}/v1/sessions/${id}/transcript/versions`, { headers: await auth() })).json();
  assert.equal(versions.map((v: { version: number }) => v.version), [1, 2]);
  assert.is(versions[0].correction, null);
  assert.is(versions[1].correction.basedOn, 1);

  // Two reviewers at once: the second, still on version 1, is refused and told the latest.
  const stale = await put({ basedOn: 1, segments: [{ id: target.id, text: 'other words' }] }, await auth());
  assert.is(stale.status, 409);
  assert.is((await stale.json()).error.code, 'version_conflict');
  const unknown = await put({ basedOn: 2, segments: [{ id: 'nope', text: 'x' }] }, await auth());
  assert.is(unknown.status, 400);
  assert.is((await unknown.json()).error.code, 'invalid_correction');
  assert.is((await put({ basedOn: 2, segments: [] }, await auth())).status, 400);
  assert.is((await put({ basedOn: 2, segments: [{ id: target.id, text: 'x' }] }, await auth('viewer'))).status, 403);
  const actions = (await h.gateway.store.auditTrail(id)).map((e) => e.action);
  assert.ok(actions.includes('transcript.correct'), `${actions}`);
});

test.run();
