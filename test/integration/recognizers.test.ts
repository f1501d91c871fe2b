/**
 * Every recognizer a clinic may run, each a dialect of the test server taken from its documentation:
 * OpenAI whisper-1, a text-only model (gpt-4o-transcribe), Azure OpenAI (key and Entra token),
 * speaches, vLLM, whisper.cpp's server, Groq and LocalAI. For each: the gateway probes what it gives, then the
 * live and upload paths run with windows cut inside speech every 6 s (a continuous dictation's seams),
 * measured against the reference: WER at most 0.5 %, no doubled word. whisper-1, the dialect the others
 * vary, runs both paths in en/fa/ar; each other recognizer one language live and another uploaded, in
 * turn, so that every language goes through every path on several dialects (the dialects' differences
 * are in the wire format, not in the language).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadReference } from '../../scripts/make-corpus.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import type { SttServerOptions } from '../support/stt-server.ts';
import { uploadedTranscript } from '../support/transcripts.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { doubledWords, wordErrorRate } from '../support/wer.ts';

const LANGUAGES = ['en', 'fa', 'ar'] as const;
const TRACKS = ['doctor', 'patient'] as const;
const MAX_WER = 0.005;
/** Windows cut inside speech every 6 s, live and uploaded: every seam of a dictation is exercised. */
const SEAMS = { SEGMENT_MAX_WINDOW_MS: '6000', SEGMENT_SILENCE_MS: '1500', UPLOAD_MAX_WINDOW_MS: '6000', UPLOAD_SILENCE_MS: '1500' };

interface RecognizerCase {
  name: string;
  stt: Partial<SttServerOptions>;
  env: Record<string, string>;
  /** What the probe should find. */
  format: 'verbose_json' | 'json';
}

const TOKEN_FILE = join(process.env.TMPDIR ?? '/tmp', `helssa-entra-token-${process.pid}`);

const RECOGNIZERS: RecognizerCase[] = [
  { name: 'OpenAI whisper-1', stt: { dialect: 'openai', model: 'whisper-1', apiKey: 'sk-clinic' }, env: { OPENAI_API_KEY: 'sk-clinic' }, format: 'verbose_json' },
  { name: 'gpt-4o-transcribe (text only)', stt: { dialect: 'openai-text-only', model: 'gpt-4o-transcribe' }, env: { STT_MODEL: 'gpt-4o-transcribe' }, format: 'json' },
  {
    name: 'Azure OpenAI, api-key',
    stt: { dialect: 'azure', model: 'whisper-clinic', apiKey: 'azure-key' },
    env: { STT_API: 'azure', AZURE_OPENAI_ENDPOINT: '{stt}', AZURE_OPENAI_DEPLOYMENT: 'whisper-clinic', AZURE_OPENAI_API_KEY: 'azure-key', OPENAI_API_KEY: '' },
    format: 'verbose_json',
  },
  {
    name: 'Azure OpenAI, Entra token',
    stt: { dialect: 'azure', model: 'whisper-clinic', apiKey: 'entra-access-token' },
    env: { STT_API: 'azure', AZURE_OPENAI_ENDPOINT: '{stt}', AZURE_OPENAI_DEPLOYMENT: 'whisper-clinic', AZURE_OPENAI_AD_TOKEN_FILE: TOKEN_FILE, OPENAI_API_KEY: '' },
    format: 'verbose_json',
  },
  { name: 'speaches', stt: { dialect: 'speaches', model: 'Systran/faster-whisper-large-v3' }, env: { STT_MODEL: 'Systran/faster-whisper-large-v3', OPENAI_API_KEY: 'none' }, format: 'verbose_json' },
  { name: 'vLLM', stt: { dialect: 'vllm', model: 'openai/whisper-large-v3' }, env: { STT_MODEL: 'openai/whisper-large-v3' }, format: 'verbose_json' },
  { name: 'whisper.cpp server', stt: { dialect: 'whisper-cpp' }, env: { OPENAI_API_KEY: 'none' }, format: 'verbose_json' },
  { name: 'Groq', stt: { dialect: 'groq', model: 'whisper-large-v3-turbo' }, env: { STT_MODEL: 'whisper-large-v3-turbo' }, format: 'verbose_json' },
  { name: 'LocalAI (segment times in nanoseconds)', stt: { dialect: 'localai' }, env: { OPENAI_API_KEY: 'none', STT_MODEL: 'whisper-1' }, format: 'verbose_json' },
];

async function live(h: Harness, sessionId: string, language: string): Promise<string> {
  const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
  const token = await h.token('producer', sessionId);
  await Promise.all(
    TRACKS.map(async (track) => {
      const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/${language}/${track}` });
      const result = await streamChunks(ingestUrl(h.baseUrl, sessionId, track, { format: 'opus', role: track, language, access_token: token }), chunks, 0);
      assert.is(result.closeCode, 1000, result.closeReason);
    }),
  );
  await viewer.tracksEnded([...TRACKS], 120000);
  viewer.close();
  // Word times, the recognizer's or estimated, lie inside the visit and go forward in each track.
  const durationMs = (await loadReference(language)).durationMs;
  for (const track of TRACKS) {
    const times = viewer.finals.filter((f) => f.trackId === track).flatMap((f) => f.words);
    times.forEach((w, i) => assert.ok(w.startMs >= 0 && w.endMs <= durationMs + 500 && w.endMs >= w.startMs && (i === 0 || w.startMs >= times[i - 1].startMs), `${track} word ${i} "${w.word}" at ${w.startMs}–${w.endMs}`));
  }
  return viewer.transcript();
}

function uploaded(h: Harness, language: string): Promise<string> {
  return uploadedTranscript(h, `${h.corpusDir}/${language}/mix.wav`, language);
}

function check(label: string, reference: string, hypothesis: string): number {
  const result = wordErrorRate(reference, hypothesis);
  assert.ok(result.wer <= MAX_WER, `${label}: WER ${(result.wer * 100).toFixed(2)}% > ${MAX_WER * 100}%\n  ref: ${reference}\n  hyp: ${hypothesis}`);
  assert.is(doubledWords(reference, hypothesis), 0, `${label}: doubled words\n  ref: ${reference}\n  hyp: ${hypothesis}`);
  return result.wer;
}

RECOGNIZERS.forEach((recognizer, i) => {
  const runs = i === 0 ? LANGUAGES.flatMap((language) => [{ path: 'live', language }, { path: 'upload', language }]) : [{ path: 'live', language: LANGUAGES[i % 3] }, { path: 'upload', language: LANGUAGES[(i + 1) % 3] }];
  test(`${recognizer.name}: probed, then ${runs.map((r) => `${r.path} ${r.language}`).join(', ')} with seams inside speech`, async () => {
    await writeFile(TOKEN_FILE, 'entra-access-token\n');
    const h = await startHarness({ ...SEAMS, ...recognizer.env }, recognizer.stt);
    try {
      const probe = h.stt.calls.filter((c) => c.fileName.startsWith('probe.'));
      assert.ok(probe.length >= 1 && probe.at(-1)!.status === 200, `probed: ${JSON.stringify(probe)}`);
      assert.is(probe.at(-1)!.responseFormat, recognizer.format, 'the richest format the recognizer gives');
      const wers: string[] = [];
      await Promise.all(
        runs.map(async ({ path, language }) => {
          const reference = (await loadReference(language)).tracks.mix.map((w) => w.word).join(' ');
          const text = path === 'live' ? await live(h, `${recognizer.stt.dialect}-${language}`, language) : await uploaded(h, language);
          wers.push(`${path} ${language} ${(check(`${recognizer.name} ${path} ${language}`, reference, text) * 100).toFixed(2)}%`);
        }),
      );
      const windows = h.stt.calls.filter((c) => !c.fileName.startsWith('probe.'));
      assert.ok(windows.every((c) => c.status === 200 && c.responseFormat === recognizer.format), 'every window in the probed format, none refused');
      process.stderr.write(`${recognizer.name}: ${wers.sort().join(', ')}\n`);
    } finally {
      await h.close();
    }
  });
});

test.run();
