/** The test STT server on its own: OpenAI wire protocol, real listening, faults. */
import { readFile } from 'node:fs/promises';
import OpenAI, { toFile } from 'openai';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ensureCorpus, loadReference } from '../../scripts/make-corpus.ts';
import { decodeWav, encodeWav } from '../../src/audio/wav.ts';
import { SttServer } from '../support/stt-server.ts';

const corpusDir = await ensureCorpus();
const server = await new SttServer({ corpusDir }).start();
const client = new OpenAI({ baseURL: server.baseUrl, apiKey: 'test-key', maxRetries: 0 });

async function upload(bytes: Buffer, name: string, extra: Record<string, string | string[]> = {}) {
  const form = new FormData();
  form.append('file', new Blob([new Uint8Array(bytes)]), name);
  form.append('model', 'whisper-1');
  for (const [key, value] of Object.entries(extra)) for (const v of [value].flat()) form.append(key, v);
  return fetch(`${server.baseUrl}/audio/transcriptions`, { method: 'POST', body: form, headers: { authorization: 'Bearer k' } });
}

for (const language of ['en', 'fa', 'ar']) {
  test(`${language}: every whole reference file comes back word for word (wav, ogg, webm)`, async () => {
    const reference = await loadReference(language);
    for (const [track, extension] of [['doctor', 'wav'], ['patient', 'ogg'], ['mix', 'webm']] as const) {
      const file = await toFile(await readFile(`${corpusDir}/${language}/${track}.${extension}`), `${track}.${extension}`);
      const result = await client.audio.transcriptions.create({ file, model: 'whisper-1', response_format: 'verbose_json', timestamp_granularities: ['word', 'segment'] });
      assert.equal(result.text, reference.tracks[track].map((w) => w.word).join(' '), `${language}/${track}.${extension}`);
      assert.equal(result.words!.length, reference.tracks[track].length);
      const first = result.words![0];
      assert.ok(Math.abs(first.start * 1000 - reference.tracks[track][0].startMs) < 40, 'word times match the reference');
    }
  });
}

test('a window: only the words inside, timestamps relative to the window, edge words dropped or garbled', async () => {
  const reference = await loadReference('en');
  const { samples } = decodeWav(await readFile(`${corpusDir}/en/doctor.wav`));
  const words = reference.tracks.doctor;
  // From the middle of word 5 to the middle of word 12.
  const fromMs = (words[5].startMs + words[5].endMs) / 2;
  const toMs = (words[12].startMs + words[12].endMs) / 2;
  const audio = samples.subarray(Math.round(fromMs * 16), Math.round(toMs * 16));
  const result = await client.audio.transcriptions.create({
    file: await toFile(encodeWav(audio, 16000), 'w.wav'),
    model: 'whisper-1',
    response_format: 'verbose_json',
    timestamp_granularities: ['word'],
  });
  const whole = words.slice(6, 12).map((w) => w.word);
  const heard = result.words!.map((w) => w.word);
  assert.ok(heard.join(' ').includes(whole.join(' ')), `whole words present: ${heard.join(' ')}`);
  assert.not.ok(heard.includes(words[5].word) && heard.includes(words[12].word), 'cut words are not returned whole');
  const w6 = result.words!.find((w) => w.word === words[6].word)!;
  assert.ok(Math.abs(w6.start * 1000 - (words[6].startMs - fromMs)) < 40, 'timestamps are relative to the window');
});

test('json and text response formats', async () => {
  const bytes = await readFile(`${corpusDir}/en/patient.ogg`);
  const json = await (await upload(bytes, 'a.ogg', { response_format: 'json' })).json();
  assert.ok(json.text.startsWith('Good morning doctor.'));
  const text = await (await upload(bytes, 'a.ogg', { response_format: 'text' })).text();
  assert.equal(text.trim(), json.text);
});

test('errors are shaped like OpenAI errors', async () => {
  const missing = await fetch(`${server.baseUrl}/audio/transcriptions`, { method: 'POST', body: (() => { const f = new FormData(); f.append('model', 'whisper-1'); return f; })(), headers: { authorization: 'Bearer k' } });
  assert.equal(missing.status, 400);
  assert.equal((await missing.json()).error.param, 'file');
  const badType = await upload(Buffer.from('hello'), 'notes.txt');
  assert.equal(badType.status, 400);
  assert.match((await badType.json()).error.message, /Invalid file format/);
  const undecodable = await upload(Buffer.from('definitely not audio'), 'fake.mp3');
  assert.equal(undecodable.status, 400);
  const noKey = await fetch(`${server.baseUrl}/audio/transcriptions`, { method: 'POST', body: new FormData() });
  assert.equal(noKey.status, 401);
});

test('injected faults: 429 and 500 reach the SDK as its typed errors; the SDK retries them', async () => {
  const file = async () => toFile(await readFile(`${corpusDir}/en/doctor.ogg`), 'd.ogg');
  server.faults.push({ kind: 'status', status: 429, count: 1 });
  await client.audio.transcriptions.create({ file: await file(), model: 'whisper-1' }).then(() => assert.unreachable(), (e) => assert.instance(e, OpenAI.RateLimitError));
  server.faults.push({ kind: 'status', status: 500, count: 1 });
  await client.audio.transcriptions.create({ file: await file(), model: 'whisper-1' }).then(() => assert.unreachable(), (e) => assert.instance(e, OpenAI.InternalServerError));
  server.faults.push({ kind: 'status', status: 500, count: 2 });
  const retrying = new OpenAI({ baseURL: server.baseUrl, apiKey: 'k', maxRetries: 2 });
  const result = await retrying.audio.transcriptions.create({ file: await file(), model: 'whisper-1' });
  assert.ok(result.text.length > 0, 'third attempt succeeds');
});

test('slow answers trip the client time-out', async () => {
  server.faults.push({ kind: 'slow', delayMs: 1500, count: 1 });
  const impatient = new OpenAI({ baseURL: server.baseUrl, apiKey: 'k', maxRetries: 0, timeout: 300 });
  const file = await toFile(await readFile(`${corpusDir}/en/doctor.ogg`), 'd.ogg');
  await impatient.audio.transcriptions.create({ file, model: 'whisper-1' }).then(() => assert.unreachable(), (e) => assert.instance(e, OpenAI.APIConnectionTimeoutError));
});

test('silent windows: nothing, or a flagged hallucination when asked for', async () => {
  const silence = encodeWav(new Int16Array(16000 * 3), 16000);
  const quiet = await (await upload(silence, 's.wav', { response_format: 'verbose_json' })).json();
  assert.equal(quiet.text, '');
  const hallucinating = await new SttServer({ corpusDir, hallucinateOnSilence: true }).start();
  const form = new FormData();
  form.append('file', new Blob([new Uint8Array(silence)]), 's.wav');
  form.append('model', 'whisper-1');
  form.append('response_format', 'verbose_json');
  const answer = await (await fetch(`${hallucinating.baseUrl}/audio/transcriptions`, { method: 'POST', body: form, headers: { authorization: 'Bearer k' } })).json();
  assert.ok(answer.text.length > 0);
  assert.ok(answer.segments[0].no_speech_prob > 0.6 && answer.segments[0].avg_logprob < -1);
  await hallucinating.stop();
});

test.after(() => server.stop());
test.run();
