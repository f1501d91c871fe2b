/**
 * One microphone, two people, end to end over real connections: the consultations' single-track mix
 * (doctor and patient on one device) streamed live as Opus over the WebSocket and uploaded as a file,
 * with `diarize=true`, in en/fa/ar. Every final must have one speaker; the role-attributed WER (a word
 * with the wrong role is an error) must be ≤ 3 % in each language, live and uploaded. Then the doctor's
 * voice: enrolled from a clip, it decides the roles (`roleSource: voice`); learned from the doctor's own
 * one-person track, it does the same for the next diarized visit. Bad input: clips too short, too long,
 * silent; three voices where two were expected (a relative speaks, once over the patient): no word lost,
 * no more speakers than asked, roles still right. A one-person track keeps its role (`roleSource: track`).
 * And the diarizer of the STT backend: a recognizer speaking gpt-4o-transcribe-diarize's protocol
 * (`diarized_json`, no prompt, `chunking_strategy`, `known_speaker_names[]`/`known_speaker_references[]`),
 * told the doctor's enrolled clip: its segments label the finals, its naming of the doctor gives the role;
 * when it returns no speakers, the track's own diarizer labels them and no word is lost.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { CorpusReference } from '../../scripts/make-corpus.ts';
import { FAMILY_VISIT_DIR, loadReference } from '../../scripts/make-corpus.ts';
import type { FinalEvent, TranscriptDocument } from '../../client-sdk/src/protocol.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { uploadFile } from '../support/upload.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { roleAttributedWer, wordErrorRate } from '../support/wer.ts';

const run = promisify(execFile);
const LANGUAGES = ['en', 'fa', 'ar'] as const;
const ROLE_OF = { doctor: 'doctor', patient: 'patient', relative: 'patient' } as const;

let h: Harness;
let main: Harness;

const referenceWords = (reference: CorpusReference) => reference.tracks.mix.map((w) => ({ word: w.word, role: ROLE_OF[w.speaker] }));
const spokenWords = (segments: readonly { role: string; words: { word: string }[] }[]) => segments.flatMap((s) => s.words.map((w) => ({ word: w.word, role: s.role })));

/** Streams a visit's mix on one diarized track; returns the finals a viewer received. */
async function streamVisit(sessionId: string, visit: string, language: string, query: Record<string, string> = {}, track = 'mix'): Promise<FinalEvent[]> {
  const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
  const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/${visit}/${track}` });
  const url = ingestUrl(h.baseUrl, sessionId, 'room', { format: 'opus', role: 'doctor', language, diarize: 'true', access_token: await h.token('producer', sessionId), ...query });
  const result = await streamChunks(url, chunks, 0);
  assert.is(result.closeCode, 1000, result.closeReason);
  await viewer.tracksEnded(['room'], 120000);
  viewer.close();
  return viewer.finals;
}

async function storedTranscript(sessionId: string): Promise<TranscriptDocument> {
  const headers = { authorization: `Bearer ${await h.token('service')}` };
  for (const deadline = Date.now() + 120000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
    const status = await (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}`, { headers })).json();
    if (status.state === 'completed') return (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}/transcript?format=json`, { headers })).json();
  }
  throw new Error(`session ${sessionId} did not complete`);
}

async function endSession(sessionId: string): Promise<TranscriptDocument> {
  await fetch(`${h.baseUrl}/v1/sessions/${sessionId}/end`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` } });
  return storedTranscript(sessionId);
}

/** A piece of a corpus track as a WAV clip (ffmpeg), for enrollment. */
async function clip(source: string, fromS: number, seconds: number, name: string, filter?: string): Promise<string> {
  const target = join(tmpdir(), `helssa-enroll-${process.pid}-${name}.wav`);
  await run('ffmpeg', ['-y', '-loglevel', 'error', '-ss', String(fromS), '-t', String(seconds), '-i', source, ...(filter ? ['-af', filter] : []), '-ac', '1', target]);
  return target;
}

async function enroll(participant: string, path: string): Promise<Response> {
  return fetch(`${h.baseUrl}/v1/speakers/${participant}`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}`, 'content-type': 'audio/wav' }, body: await readFile(path) });
}

test.before(async () => {
  main = h = await startHarness({}, { mixOnlyVisits: true });
});

test.after(async () => {
  await main?.close();
});

test('single-track consultations, live and uploaded: one speaker per final, role-attributed WER ≤ 3 % in each language', async () => {
  const figures: string[] = [];
  await Promise.all(
    LANGUAGES.map(async (language) => {
      const reference = await loadReference(language);
      const live = await streamVisit(`diarized-live-${language}`, language, language);
      for (const final of live) assert.ok(/^S\d$/.test(final.speaker) && ['order', 'content'].includes(final.roleSource), `${final.speaker} ${final.roleSource}`);
      assert.is(new Set(live.map((f) => f.speaker)).size, 2, `${language}: two speakers live`);
      const liveWer = roleAttributedWer(referenceWords(reference), spokenWords([...live].sort((a, b) => a.startMs - b.startMs)));
      const upload = await uploadFile(h.baseUrl, await h.token('service'), `${h.corpusDir}/${language}/mix.wav`, { language, diarize: 'true' });
      assert.is(upload.status, 202, JSON.stringify(upload.json));
      const document = await storedTranscript(upload.json.id);
      assert.is(document.speakers.length, 2, `${language}: two speakers uploaded`);
      const uploadWer = roleAttributedWer(referenceWords(reference), spokenWords(document.segments));
      figures.push(`${language} live ${(liveWer.wer * 100).toFixed(1)} % upload ${(uploadWer.wer * 100).toFixed(1)} %`);
      assert.ok(liveWer.wer <= 0.03, `${language} live: role-attributed WER ${(liveWer.wer * 100).toFixed(1)} %`);
      assert.ok(uploadWer.wer <= 0.03, `${language} upload: role-attributed WER ${(uploadWer.wer * 100).toFixed(1)} %`);
    }),
  );
  console.log(`role-attributed WER: ${figures.join(', ')}`);
});

test("the doctor's voice: enrolled from a clip, or learned from their own track, decides the roles", async () => {
  // The doctor's first 12 s of their own track: their words, the patient's turns silent.
  const enrolled = await enroll('dr-enrolled', await clip(`${h.corpusDir}/en/doctor.wav`, 0, 12, 'doctor'));
  assert.is(enrolled.status, 201, await enrolled.clone().text());
  const profile = await enrolled.json();
  assert.is(profile.source, 'enrolled');
  assert.ok(profile.speechMs >= 3000, `${profile.speechMs} ms of speech`);
  assert.not.ok('print' in profile, 'the print itself is not served');
  const finals = await streamVisit('diarized-voice', 'en', 'en', { participant: 'dr-enrolled' });
  assert.ok(finals.every((f) => f.roleSource === 'voice'), finals.map((f) => f.roleSource).join(' '));
  const wer = roleAttributedWer(referenceWords(await loadReference('en')), spokenWords([...finals].sort((a, b) => a.startMs - b.startMs)));
  assert.ok(wer.wer <= 0.03, `by voice: role-attributed WER ${(wer.wer * 100).toFixed(1)} %`);

  // Learned: the doctor streams their own one-person track (roleSource track), then a diarized visit.
  const own = 'doctor-own-track';
  await streamVisit(own, 'fa', 'fa', { participant: 'dr-learned', diarize: 'false' }, 'doctor');
  const ownTranscript = await endSession(own);
  assert.ok(ownTranscript.segments.length > 5);
  assert.ok(ownTranscript.segments.every((s) => s.roleSource === 'track' && s.role === 'doctor' && s.speaker === 'dr-learned'), 'a one-person track keeps its role');
  const learned = await (await fetch(`${h.baseUrl}/v1/speakers/dr-learned`, { headers: { authorization: `Bearer ${await h.token('service')}` } })).json();
  assert.is(learned.source, 'learned');
  const next = await streamVisit('diarized-learned', 'fa', 'fa', { participant: 'dr-learned' });
  assert.ok(next.every((f) => f.roleSource === 'voice'), next.map((f) => f.roleSource).join(' '));
  const learnedWer = roleAttributedWer(referenceWords(await loadReference('fa')), spokenWords([...next].sort((a, b) => a.startMs - b.startMs)));
  assert.ok(learnedWer.wer <= 0.03, `by learned voice: role-attributed WER ${(learnedWer.wer * 100).toFixed(1)} %`);

  const deleted = await fetch(`${h.baseUrl}/v1/speakers/dr-enrolled`, { method: 'DELETE', headers: { authorization: `Bearer ${await h.token('service')}` } });
  assert.is(deleted.status, 204);
  assert.is((await fetch(`${h.baseUrl}/v1/speakers/dr-enrolled`, { headers: { authorization: `Bearer ${await h.token('service')}` } })).status, 404);
});

test('bad enrollment clips are refused with their own code; nothing is kept', async () => {
  const cases = [
    ['clip_too_short', await clip(`${h.corpusDir}/en/doctor.wav`, 0, 2, 'short')],
    ['clip_too_long', await clip(`${h.corpusDir}/en/doctor.wav`, 0, 25, 'long')],
    ['not_enough_speech', await clip(`${h.corpusDir}/en/doctor.wav`, 0, 8, 'silent', 'volume=0')],
  ] as const;
  for (const [code, path] of cases) {
    const response = await enroll(`dr-${code}`, path);
    assert.is(response.status, 422, code);
    assert.is((await response.json()).error.code, code);
    assert.is((await fetch(`${h.baseUrl}/v1/speakers/dr-${code}`, { headers: { authorization: `Bearer ${await h.token('service')}` } })).status, 404);
  }
  const empty = await fetch(`${h.baseUrl}/v1/speakers/dr-empty`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` }, body: '' });
  assert.is(empty.status, 400);
  const viewer = await fetch(`${h.baseUrl}/v1/speakers/dr-x`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('viewer', 'x')}` }, body: 'x' });
  assert.is(viewer.status, 403);
});

test('three voices where two were expected (a relative speaks, once over the patient): no word lost, at most the speakers asked, roles right', async () => {
  const reference = await loadReference(FAMILY_VISIT_DIR);
  const words = reference.tracks.mix.map((w) => w.word).join(' ');
  for (const speakers of ['2', '3']) {
    const finals = await streamVisit(`family-${speakers}`, FAMILY_VISIT_DIR, 'en', { speakers });
    const sorted = [...finals].sort((a, b) => a.startMs - b.startMs);
    const plain = wordErrorRate(words, sorted.map((f) => f.text).join(' '));
    assert.ok(plain.deletions <= 2, `speakers=${speakers}: ${plain.deletions} words lost`);
    assert.ok(new Set(finals.map((f) => f.speaker)).size <= Number(speakers), `speakers=${speakers}: ${[...new Set(finals.map((f) => f.speaker))]}`);
    const wer = roleAttributedWer(referenceWords(reference), spokenWords(sorted));
    console.log(`family visit, speakers=${speakers}: ${new Set(finals.map((f) => f.speaker)).size} speakers found, WER ${(plain.wer * 100).toFixed(1)} %, role-attributed ${(wer.wer * 100).toFixed(1)} %`);
    assert.ok(wer.wer <= 0.05, `speakers=${speakers}: role-attributed WER ${(wer.wer * 100).toFixed(1)} %`);
  }
  const badSpeakers = await fetch(ingestUrl(h.baseUrl, 'family-bad', 'room', { format: 'opus', role: 'doctor', speakers: '9' }).replace('ws', 'http'));
  assert.ok(badSpeakers.status >= 400);
});

for (const noSpeakers of [false, true]) {
  test(`a diarizing recognizer (diarized_json)${noSpeakers ? ' that returns no speakers: the track\'s diarizer labels the finals' : ', told the doctor\'s enrolled clip, labels the finals'}`, async () => {
    h = await startHarness({ STT_MODEL: 'gpt-4o-transcribe-diarize' }, { dialect: 'openai-diarize', model: 'gpt-4o-transcribe-diarize', noSpeakers });
    try {
      const enrolled = await enroll('dr-backend', await clip(`${h.corpusDir}/ar/doctor.wav`, 0, 12, 'ar-doctor'));
      assert.is(enrolled.status, 201);
      const finals = await streamVisit(`backend-${noSpeakers}`, 'ar', 'ar', { participant: 'dr-backend' });
      const calls = h.stt.calls.filter((c) => c.status === 200 && c.responseFormat === 'diarized_json');
      assert.ok(calls.length > 0, 'windows went as diarized_json');
      // The start-up probe learns that the model refuses prompts (a 400); no window carries one.
      assert.ok(calls.every((c) => c.prompt === undefined), 'no prompt is sent to a diarizing model');
      const wer = roleAttributedWer(referenceWords(await loadReference('ar')), spokenWords([...finals].sort((a, b) => a.startMs - b.startMs)));
      console.log(`diarizing recognizer${noSpeakers ? ' without speakers' : ''}: role-attributed WER ${(wer.wer * 100).toFixed(1)} %, role sources ${[...new Set(finals.map((f) => f.roleSource))]}`);
      assert.ok(wer.wer <= 0.03, `role-attributed WER ${(wer.wer * 100).toFixed(1)} %`);
      assert.ok(finals.every((f) => f.roleSource === 'voice'), 'the doctor found by voice (the recognizer naming them, or the print)');
      const upload = await uploadFile(h.baseUrl, await h.token('service'), `${h.corpusDir}/ar/mix.wav`, { language: 'ar', diarize: 'true' });
      assert.is(upload.status, 202, JSON.stringify(upload.json));
      const document = await storedTranscript(upload.json.id);
      const reference = await loadReference('ar');
      const uploadWer = roleAttributedWer(referenceWords(reference), spokenWords(document.segments));
      const plain = wordErrorRate(reference.tracks.mix.map((w) => w.word).join(' '), document.segments.map((s) => s.text).join(' '));
      console.log(`  upload: WER ${(plain.wer * 100).toFixed(1)} %, role-attributed ${(uploadWer.wer * 100).toFixed(1)} %`);
      assert.is(plain.deletions, 0, 'no word lost');
      // Without its speakers the words have no times of their own: laid over a long upload window's
      // speech by their length, a word next to a change of speaker can land on the other side of it.
      assert.ok(uploadWer.wer <= (noSpeakers ? 0.1 : 0.03), `upload: role-attributed WER ${(uploadWer.wer * 100).toFixed(1)} %`);
    } finally {
      await h.close();
      h = main;
    }
  });
}

test.run();
