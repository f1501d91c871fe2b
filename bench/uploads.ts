/**
 * Upload benchmark, against the test STT server (which hears what the corpus says, and garbles words
 * cut by a window edge, as a recognizer does).
 *
 *  1. quality: the seed design's baseline (fixed 60 s chunks with 2 s overlap, texts merged by matching
 *     the longest run of words shared by the end of one chunk and the start of the next) against ours
 *     (VAD windows of up to 30 s cut in pauses, overlap only where a cut falls in speech, seams merged by
 *     time), on the doctor, patient and mixed recordings of the en/fa/ar consultations: WER of the merged transcript, doubled and lost words.
 *  2. speed: seconds of audio transcribed per wall-second with 1, 2 and 4 worker processes sharing the
 *     Redis queue (one job at a time each), the STT server taking a fixed 300 ms per call; ratios
 *     against 1 worker. Wall time runs from the first upload's first byte to the last transcript.
 *
 *   BENCH_UPLOAD_COPIES=2 (copies of each language's consultation uploaded in the speed phase)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { loadReference } from '../scripts/make-corpus.ts';
import { decodeWav } from '../src/audio/wav.ts';
import { createSttClient, OpenAiTranscriber } from '../src/stt/transcriber.ts';
import { normalizeText } from '../src/transcript/words.ts';
import { readFile } from 'node:fs/promises';
import { startHarness, type Harness } from '../test/support/harness.ts';
import { uploadFile } from '../test/support/upload.ts';
import { doubledWords, wordErrorRate } from '../test/support/wer.ts';

/** The gateway and its worker processes share the key-encryption key of the sealed window audio. */
const AT_REST_KEY = randomBytes(32).toString('base64');

const LANGUAGES = ['en', 'fa', 'ar'] as const;
const copies = Number(process.env.BENCH_UPLOAD_COPIES ?? 2);
const REDIS_URL = 'redis://127.0.0.1:6379';

/** The seed design's merge: drop the longest prefix of the next chunk that repeats the end of the text so far. */
function mergeByWordMatch(merged: string[], next: string[], maxRun = 20): string[] {
  const norm = (w: string) => normalizeText(w).join(' ');
  for (let run = Math.min(maxRun, merged.length, next.length); run > 0; run--) {
    const tail = merged.slice(-run).map(norm).join(' ');
    const head = next.slice(0, run).map(norm).join(' ');
    if (tail === head) return [...merged, ...next.slice(run)];
  }
  return [...merged, ...next];
}

const TRACKS = ['doctor', 'patient', 'mix'] as const;
type Track = (typeof TRACKS)[number];

async function baselineTranscript(h: Harness, language: string, track: Track): Promise<string> {
  const { samples, sampleRate } = decodeWav(await readFile(`${h.corpusDir}/${language}/${track}.wav`));
  const client = createSttClient({ api: 'openai', baseURL: h.stt.baseUrl, apiKey: 'bench', timeoutMs: 30000, maxRetries: 2 });
  const stt = new OpenAiTranscriber(client, { model: 'whisper-1', capabilities: { responseFormat: 'json', wordTimestamps: false, prompt: true, maxFileBytes: 25 * 1024 * 1024 } });
  const chunk = 60 * sampleRate;
  const step = chunk - 2 * sampleRate;
  let merged: string[] = [];
  for (let start = 0; start < samples.length; start += step) {
    const { text } = await stt.transcribe({ audio: samples.subarray(start, start + chunk), sampleRate, language });
    merged = mergeByWordMatch(merged, text.split(/\s+/).filter(Boolean));
    if (start + chunk >= samples.length) break;
  }
  return merged.join(' ');
}

async function waitCompleted(h: Harness, sessionId: string, token: string): Promise<void> {
  for (;;) {
    const status = await (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}`, { headers: { authorization: `Bearer ${token}` } })).json();
    if (status.state === 'completed') return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function oursTranscript(h: Harness, language: string, track: Track): Promise<{ text: string; windows: number }> {
  const token = await h.token('service');
  const accepted = await uploadFile(h.baseUrl, token, `${h.corpusDir}/${language}/${track}.wav`, { language });
  await waitCompleted(h, accepted.json.id, token);
  const doc = await (await fetch(`${h.baseUrl}/v1/sessions/${accepted.json.id}/transcript`, { headers: { authorization: `Bearer ${token}` } })).json();
  return { text: doc.segments.map((s: { text: string }) => s.text).join(' '), windows: accepted.json.upload.windows.total };
}

console.log('## 1. Quality: baseline (60 s chunks, 2 s overlap, word-match merge) vs ours\n');
console.log('| file | method | windows | WER | doubled | lost |');
console.log('| --- | --- | --- | --- | --- | --- |');
const totals = { baseline: { errors: 0, words: 0, doubled: 0, lost: 0, windows: 0 }, ours: { errors: 0, words: 0, doubled: 0, lost: 0, windows: 0 } };
const quality = await startHarness({ ARCHIVE_INSECURE_DISABLE: 'true', ARCHIVE_RECIPIENTS: '' });
try {
  for (const language of LANGUAGES) {
    const corpus = await loadReference(language);
    for (const track of TRACKS) {
      const reference = corpus.tracks[track].map((w) => w.word).join(' ');
      const rows = [
        { method: 'baseline' as const, windows: Math.ceil((corpus.durationMs / 1000 - 2) / 58), text: await baselineTranscript(quality, language, track) },
        { method: 'ours' as const, ...(await oursTranscript(quality, language, track)) },
      ];
      for (const row of rows) {
        const wer = wordErrorRate(reference, row.text);
        const doubled = doubledWords(reference, row.text);
        const total = totals[row.method];
        total.errors += wer.substitutions + wer.deletions + wer.insertions;
        total.words += wer.referenceWords;
        total.doubled += doubled;
        total.lost += wer.deletions;
        total.windows += row.windows;
        console.log(`| ${language}/${track} | ${row.method} | ${row.windows} | ${(wer.wer * 100).toFixed(2)}% | ${doubled} | ${wer.deletions} |`);
      }
    }
  }
  for (const [method, t] of Object.entries(totals)) {
    console.log(`| **all 9** | **${method}** | ${t.windows} | **${((t.errors / t.words) * 100).toFixed(2)}%** | ${t.doubled} | ${t.lost} |`);
  }
} finally {
  await quality.close();
}

function startWorker(sttUrl: string, queueName: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['src/worker.ts'], {
    env: { ...process.env, REDIS_URL, AT_REST_KEY, QUEUE_NAME: queueName, STT_BASE_URL: sttUrl, OPENAI_API_KEY: 'bench', WORKER_CONCURRENCY: '1', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('upload worker ready')) resolve(child);
    });
  });
}

console.log(`\n## 2. Speed: ${copies} × 3 consultations uploaded at once, STT 300 ms per call, worker processes over Redis\n`);
console.log('| workers | audio s | wall s | audio s per wall s | ratio to 1 worker |');
console.log('| --- | --- | --- | --- | --- |');
let single = 0;
for (const workerCount of [1, 2, 4]) {
  const queueName = `bench-${randomUUID()}`;
  const h = await startHarness({ REDIS_URL, AT_REST_KEY, QUEUE_NAME: queueName, UPLOAD_WORKERS: '0', ARCHIVE_INSECURE_DISABLE: 'true', ARCHIVE_RECIPIENTS: '' }, { latencyMs: 300 });
  const workers = await Promise.all(Array.from({ length: workerCount }, () => startWorker(h.stt.baseUrl, queueName)));
  try {
    const token = await h.token('service');
    const started = performance.now();
    const uploads = LANGUAGES.flatMap((language) => Array.from({ length: copies }, () => language));
    const durations = await Promise.all(
      uploads.map(async (language) => {
        const accepted = await uploadFile(h.baseUrl, token, join(h.corpusDir, language, 'mix.wav'), { language });
        await waitCompleted(h, accepted.json.id, token);
        return accepted.json.upload.durationMs / 1000;
      }),
    );
    const wallS = (performance.now() - started) / 1000;
    const audioS = durations.reduce((a, b) => a + b, 0);
    const speed = audioS / wallS;
    if (workerCount === 1) single = speed;
    console.log(`| ${workerCount} | ${audioS.toFixed(0)} | ${wallS.toFixed(2)} | ${speed.toFixed(1)} | ${(speed / single).toFixed(2)}× |`);
  } finally {
    for (const worker of workers) worker.kill('SIGTERM');
    await h.close();
  }
}
