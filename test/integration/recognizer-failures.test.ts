/**
 * A recognizer that refuses is not a recognizer that is down. Start-up with a configuration the probe
 * shows cannot work fails with one clear line; a refusal at run time (a revoked key, a deleted
 * deployment, an HTML page from a proxy, an empty body, another API's JSON) sets the sessions'
 * `stt: misconfigured` with the recognizer's words, an error event and a metric, sends nothing while it
 * lasts (one check every STT_REFUSED_RECHECK_MS, no retry storm), keeps every window, and once the
 * recognizer takes requests again every word arrives. Windows too large for the recognizer's file limit
 * go as FLAC or Opus.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import { WebSocket } from 'ws';
import * as assert from 'uvu/assert';
import type { ErrorEvent, SessionEvent } from '../../client-sdk/src/protocol.ts';
import { createGateway } from '../../src/app.ts';
import { gatewayComponents } from '../../src/components.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { ensureCorpus, loadReference } from '../../scripts/make-corpus.ts';
import { shippedNodeArgs } from '../support/fleet.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { SttServer, type Fault, type SttServerOptions } from '../support/stt-server.ts';
import { TEST_JWT_SECRET } from '../support/tokens.ts';
import { uploadFile } from '../support/upload.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { doubledWords, wordErrorRate } from '../support/wer.ts';

const corpusDir = await ensureCorpus();

/** The gateway's start against a recognizer, up to the probe's verdict (the database is opened after it). */
async function startAgainst(stt: Partial<SttServerOptions>, env: Record<string, string>): Promise<string> {
  const server = await new SttServer({ corpusDir, ...stt }).start();
  const dataDir = await mkdtemp(join(tmpdir(), 'helssa-refused-'));
  try {
    const config = loadConfig({ JWT_SECRET: TEST_JWT_SECRET, ARCHIVE_INSECURE_DISABLE: 'true', DATA_DIR: dataDir, STT_BASE_URL: server.baseUrl, OPENAI_API_KEY: 'sk-test', ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replaceAll('{stt}', server.baseUrl)])) });
    const gateway = await createGateway(config, createLogger('silent'));
    await gateway.close();
    return 'started';
  } catch (error) {
    assert.instance(error, ConfigError);
    return (error as Error).message;
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

test('start-up: a configuration the recognizer refuses stops the gateway with its reason', async () => {
  assert.match(await startAgainst({ apiKey: 'sk-right' }, { OPENAI_API_KEY: 'sk-wrong' }), /refuses this configuration \(model whisper-1\): the recognizer refused the request \(401\): Incorrect API key provided/);
  assert.match(await startAgainst({ dialect: 'speaches', model: 'Systran/faster-whisper-small' }, { STT_MODEL: 'large-v3' }), /\(404\): Model 'large-v3' is not installed locally/);
  assert.match(await startAgainst({ dialect: 'vllm', model: 'openai/whisper-large-v3' }, { STT_MODEL: 'whisper-1' }), /\(404\): The model `whisper-1` does not exist/);
  const azure = { STT_API: 'azure', AZURE_OPENAI_ENDPOINT: '{stt}', AZURE_OPENAI_API_KEY: 'key' };
  assert.match(await startAgainst({ dialect: 'azure', model: 'whisper-clinic' }, { ...azure, AZURE_OPENAI_DEPLOYMENT: 'whisper' }), /Azure OpenAI http:\/\/127\.0\.0\.1:\d+ \(deployment whisper\) refuses .*\(404\): The API deployment for this resource does not exist/);
  assert.match(await startAgainst({ dialect: 'azure', model: 'whisper-clinic' }, { ...azure, AZURE_OPENAI_DEPLOYMENT: 'whisper-clinic', AZURE_OPENAI_API_VERSION: '2019-01-01' }), /\(404\): API version not supported/);
  assert.match(await startAgainst({ dialect: 'azure', model: 'whisper-clinic' }, { STT_API: 'azure', AZURE_OPENAI_ENDPOINT: '{stt}', AZURE_OPENAI_DEPLOYMENT: 'whisper-clinic', AZURE_OPENAI_AD_TOKEN_FILE: '/nonexistent/entra-token' }), /AZURE_OPENAI_AD_TOKEN_FILE: cannot read \/nonexistent\/entra-token/);
  // A model that takes only json and text is found out, not refused; one that refuses prompts gets none.
  assert.is(await startAgainst({ dialect: 'openai-text-only', refusePrompt: true }, { STT_MODEL: 'gpt-4o-transcribe-diarize', STT_PROMPT: 'cardiology visit' }), 'started');
  // whisper.cpp answers a refusal with status 200 and {"error": ...}: still a refusal.
  assert.match(await startAgainst({ dialect: 'whisper-cpp', maxFileBytes: 1000 }, {}), /refuses this configuration/);
});

test('start-up from the command line: exit 78 and one line naming the recognizer and its reason', async () => {
  const server = await new SttServer({ corpusDir, apiKey: 'sk-right' }).start();
  const dataDir = await mkdtemp(join(tmpdir(), 'helssa-main-'));
  try {
    const child = spawn(process.execPath, [...shippedNodeArgs, 'src/main.ts'], {
      env: { PATH: process.env.PATH, JWT_SECRET: TEST_JWT_SECRET, ARCHIVE_INSECURE_DISABLE: 'true', DATA_DIR: dataDir, STT_BASE_URL: server.baseUrl, OPENAI_API_KEY: 'sk-wrong', PORT: '0', LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    assert.is(code, 78);
    assert.match(stderr.trim(), new RegExp(`^helssa-live: the recognizer at ${server.baseUrl.replace(/[./]/g, '\\$&')} refuses this configuration \\(model whisper-1\\): .*\\(401\\): Incorrect API key`));
    assert.not.match(stderr, /sk-wrong/, 'the key is never printed');
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
});

async function streamTrack(h: Harness, sessionId: string, language: string): Promise<CaptionCollector> {
  const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
  const url = ingestUrl(h.baseUrl, sessionId, 'doctor', { format: 'ogg', role: 'doctor', language, access_token: await h.token('producer', sessionId) });
  const result = await streamChunks(url, await chunksFor({ format: 'ogg', file: `${h.corpusDir}/${language}/doctor` }), 0);
  assert.is(result.closeCode, 1000, 'a refusing recognizer does not disconnect the producer');
  return viewer;
}

async function faults(h: Harness, fault?: Fault): Promise<void> {
  await fetch(`${h.stt.baseUrl.replace(/\/v1$/, '')}/_control/faults`, fault ? { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(fault) } : { method: 'DELETE' });
}

async function status(h: Harness, sessionId: string): Promise<any> {
  return (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}`, { headers: { authorization: `Bearer ${await h.token('service')}` } })).json();
}

async function metric(h: Harness, name: string): Promise<string> {
  return h.gateway.metrics.registry.getSingleMetricAsString(name);
}

test('a key revoked while a visit streams: misconfigured with its reason, no retry storm, every word once the key works', async () => {
  const h = await startHarness({ STT_REFUSED_RECHECK_MS: '400' });
  try {
    await faults(h, { kind: 'refuse', status: 401, count: 100000 });
    const before = h.stt.calls.length;
    const viewer = await streamTrack(h, 'revoked', 'en');
    const error = (await viewer.waitFor((e) => e.type === 'error' && e.code === 'stt_misconfigured')) as ErrorEvent;
    assert.match(error.message, /\(401\): Incorrect API key/);
    const state = (await viewer.waitFor((e) => e.type === 'session' && e.stt === 'misconfigured')) as SessionEvent;
    assert.match(state.sttError!, /\(401\)/);
    const during = await status(h, 'revoked');
    assert.is(during.stt, 'misconfigured');
    assert.match(during.sttError, /Incorrect API key/);
    assert.ok(during.sttBacklog.windows > 0, 'the windows wait');
    assert.match(await metric(h, 'helssa_stt_refusing'), /helssa_stt_refusing 1/);
    // An upload in the meantime waits too, rather than spending its attempts.
    const upload = await uploadFile(h.baseUrl, await h.token('service'), `${h.corpusDir}/fa/mix.wav`, { language: 'fa' });
    assert.is(upload.status, 202, JSON.stringify(upload.json));
    const sent = () => h.stt.calls.slice(before).filter((c) => !c.fileName.startsWith('probe.')).length;
    const probes = () => h.stt.calls.slice(before).filter((c) => c.fileName.startsWith('probe.')).length;
    const [windowsThen, probesThen] = [sent(), probes()];
    // Only the windows already at the recognizer when the first refusal came back (STT_CONCURRENCY 4).
    assert.ok(windowsThen <= 5, `${windowsThen} windows sent`);
    await new Promise((r) => setTimeout(r, 2000));
    assert.is(sent(), windowsThen, 'no window is sent while the recognizer refuses');
    assert.ok(probes() - probesThen >= 3 && probes() - probesThen <= 6, `one check every 400 ms (${probes() - probesThen} in 2 s)`);
    await faults(h);
    await viewer.tracksEnded(['doctor'], 60000);
    const reference = (await loadReference('en')).tracks.doctor.map((w) => w.word).join(' ');
    const result = wordErrorRate(reference, viewer.transcript());
    assert.ok(result.wer <= 0.005, `nothing lost (WER ${(result.wer * 100).toFixed(2)}%)`);
    assert.is(doubledWords(reference, viewer.transcript()), 0);
    await viewer.waitFor((e) => e.type === 'session' && e.stt === 'ok');
    assert.match(await metric(h, 'helssa_stt_refusing'), /helssa_stt_refusing 0/);
    assert.match(await metric(h, 'helssa_stt_refusals_total'), /helssa_stt_refusals_total 1/);
    for (const deadline = Date.now() + 60000; (await status(h, upload.json.id)).state !== 'completed'; ) {
      assert.ok(Date.now() < deadline, 'the upload completes once the recognizer takes requests');
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = await status(h, upload.json.id);
    assert.is(after.upload.windows.failed, 0, 'no upload window spent its attempts on the refusal');
    viewer.close();
  } finally {
    await h.close();
  }
});

test('a format configured (or assumed) and then refused: the check at once adopts the one the recognizer takes', async () => {
  const h = await startHarness({ STT_RESPONSE_FORMAT: 'verbose_json', STT_MODEL: 'gpt-4o-transcribe', STT_REFUSED_RECHECK_MS: '60000' }, { dialect: 'openai-text-only', model: 'gpt-4o-transcribe' });
  try {
    assert.is(h.stt.calls.length, 0, 'no probe at start when the format is configured');
    const viewer = await streamTrack(h, 'configured', 'en');
    await viewer.tracksEnded(['doctor'], 60000);
    const reference = (await loadReference('en')).tracks.doctor.map((w) => w.word).join(' ');
    const result = wordErrorRate(reference, viewer.transcript());
    assert.ok(result.wer <= 0.005, `every word, in the format the recognizer takes (WER ${(result.wer * 100).toFixed(2)}%)`);
    assert.ok(h.stt.calls.some((c) => c.fileName.startsWith('probe.') && c.responseFormat === 'json' && c.status === 200), 'probed once refused');
    assert.is(h.stt.calls.filter((c) => !c.fileName.startsWith('probe.') && c.status === 400).length <= 4, true, 'only the windows in flight were refused');
    assert.is((await status(h, 'configured')).stt, 'ok');
    viewer.close();
  } finally {
    await h.close();
  }
});

test('refusals at run time (400, 404, HTML, empty, another API) keep every window; words out of order are put right', async () => {
  const h = await startHarness({ STT_REFUSED_RECHECK_MS: '200' });
  try {
    const cases: [string, Fault, RegExp][] = [
      ['400', { kind: 'refuse', status: 400, count: 2 }, /\(400\): Invalid value for 'language'/],
      ['404', { kind: 'refuse', status: 404, count: 2 }, /\(404\): The model `whisper-1` does not exist/],
      ['html', { kind: 'answer', answer: 'html', count: 2 }, /text where JSON was expected: "<!DOCTYPE html>/],
      ['empty', { kind: 'answer', answer: 'empty', count: 2 }, /empty body/],
      ['foreign-json', { kind: 'answer', answer: 'foreign-json', count: 2 }, /not a transcription/],
    ];
    for (const [answer, fault, reason] of cases) {
      await faults(h, fault);
      const viewer = await streamTrack(h, `answer-${answer}`, 'ar');
      const error = (await viewer.waitFor((e) => e.type === 'error' && e.code === 'stt_misconfigured')) as ErrorEvent;
      assert.match(error.message, reason);
      await viewer.tracksEnded(['doctor'], 60000);
      const reference = (await loadReference('ar')).tracks.doctor.map((w) => w.word).join(' ');
      const result = wordErrorRate(reference, viewer.transcript());
      assert.ok(result.wer <= 0.005, `${answer}: nothing lost (WER ${(result.wer * 100).toFixed(2)}%)`);
      viewer.close();
    }
    await faults(h, { kind: 'answer', answer: 'disordered-words', count: 1000 });
    const viewer = await streamTrack(h, 'disordered', 'fa');
    await viewer.tracksEnded(['doctor'], 60000);
    const reference = (await loadReference('fa')).tracks.doctor.map((w) => w.word).join(' ');
    const result = wordErrorRate(reference, viewer.transcript());
    assert.ok(result.wer <= 0.005, `words reversed and overlapping in time come out in order (WER ${(result.wer * 100).toFixed(2)}%)`);
    assert.ok(viewer.finals.every((f) => f.words.every((w, i) => w.endMs >= w.startMs && (i === 0 || w.startMs >= f.words[i - 1].startMs))), 'word times ordered');
    await faults(h);
    viewer.close();
  } finally {
    await h.close();
  }
});

test('windows above the recognizer file limit go as FLAC, or Opus when FLAC is too big; nothing is lost', async () => {
  for (const [limitBytes, format] of [[700_000, 'flac'], [250_000, 'ogg']] as const) {
    const h = await startHarness({ STT_MAX_FILE_MB: String(limitBytes / 1024 / 1024), UPLOAD_MAX_WINDOW_MS: '30000', UPLOAD_SILENCE_MS: '5000' }, { maxFileBytes: limitBytes });
    try {
      const service = await h.token('service');
      const upload = await uploadFile(h.baseUrl, service, `${h.corpusDir}/en/mix.wav`, { language: 'en' });
      assert.is(upload.status, 202, JSON.stringify(upload.json));
      for (const deadline = Date.now() + 60000; (await status(h, upload.json.id)).state !== 'completed'; ) {
        assert.ok(Date.now() < deadline, 'completed');
        await new Promise((r) => setTimeout(r, 100));
      }
      const windows = h.stt.calls.filter((c) => !c.fileName.startsWith('probe.'));
      assert.ok(windows.some((c) => c.fileName === `window.${format}`), `${format}: ${windows.map((c) => c.fileName).join(', ')}`);
      assert.ok(windows.every((c) => c.status === 200), 'none refused for its size');
      const text = await (await fetch(`${h.baseUrl}/v1/sessions/${upload.json.id}/transcript?format=text`, { headers: { authorization: `Bearer ${service}` } })).text();
      const hypothesis = text.split('\n').filter(Boolean).map((line) => line.replace(/^\[[^\]]*\] [^:]*: /, '')).join(' ');
      const reference = (await loadReference('en')).tracks.mix.map((w) => w.word).join(' ');
      const result = wordErrorRate(reference, hypothesis);
      assert.ok(result.wer <= 0.005, `${format}: WER ${(result.wer * 100).toFixed(2)}%`);
    } finally {
      await h.close();
    }
  }
});

test('languages the recognizer does not transcribe are refused up front (STT_LANGUAGES), in every way in', async () => {
  assert.throws(() => gatewayComponents(loadConfig({ JWT_SECRET: TEST_JWT_SECRET, ARCHIVE_INSECURE_DISABLE: 'true', OPENAI_API_KEY: 'k', STT_LANGUAGES: 'en,ar', STT_LANGUAGE: 'fa' })), /STT_LANGUAGE: fa is not among STT_LANGUAGES \(en, ar\)/);
  assert.throws(() => loadConfig({ JWT_SECRET: TEST_JWT_SECRET, ARCHIVE_INSECURE_DISABLE: 'true', OPENAI_API_KEY: 'k', STT_LANGUAGES: 'english' }), /STT_LANGUAGES: comma-separated ISO 639-1 codes/);
  const h = await startHarness({ STT_LANGUAGES: 'en,ar' });
  try {
    const headers = { authorization: `Bearer ${await h.token('service')}`, 'content-type': 'application/json' };
    const refused = await fetch(`${h.baseUrl}/v1/sessions`, { method: 'POST', headers, body: JSON.stringify({ language: 'fa' }) });
    assert.is(refused.status, 400);
    assert.equal(await refused.json(), { error: { code: 'unsupported_language', message: 'language fa: the recognizer transcribes en, ar only (STT_LANGUAGES)' } });
    assert.is((await fetch(`${h.baseUrl}/v1/sessions`, { method: 'POST', headers, body: JSON.stringify({ language: 'ar' }) })).status, 201);
    const socket = new WebSocket(ingestUrl(h.baseUrl, 'lang', 'doctor', { format: 'ogg', role: 'doctor', language: 'fa', access_token: await h.token('producer', 'lang') }));
    const closed = await new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    assert.equal(closed, { code: 4400, reason: 'language fa: the recognizer transcribes en, ar only (STT_LANGUAGES)' });
    // A short file: the answer comes before the body is read, and a long one would meet a closed connection.
    const short = join(h.dataDir, 'short.wav');
    await writeFile(short, (await readFile(`${h.corpusDir}/fa/mix.wav`)).subarray(0, 4096));
    const upload = await uploadFile(h.baseUrl, await h.token('service'), short, { language: 'fa' });
    assert.is(upload.status, 400);
    assert.is(upload.json.error.code, 'unsupported_language');
    assert.is(h.stt.calls.filter((c) => !c.fileName.startsWith('probe.')).length, 0, 'nothing sent to the recognizer');
  } finally {
    await h.close();
  }
});

test.run();
