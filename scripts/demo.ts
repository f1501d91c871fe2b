/**
 * `npm run demo`: the gateway on its embedded defaults, a bundled consultation streamed in real time over
 * the WebSocket ingest (doctor and patient tracks, WebM/Opus as a browser sends it), live captions in the
 * terminal, then the merged transcript and its WER against the reference.
 *
 *   DEMO_LANGUAGE=en|fa|ar   which consultation (default en)
 *   DEMO_SPEED=1             1 = real time; 4 = four times faster
 *   STT_BASE_URL, OPENAI_API_KEY, STT_MODEL   use a real recognizer instead of the bundled test server
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { SignJWT } from 'jose';
import type { CaptionEvent, PartialEvent } from '../client-sdk/src/protocol.ts';
import { createGateway } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { SttServer } from '../test/support/stt-server.ts';
import { chunksFor, ingestUrl, streamChunks } from '../test/support/producer.ts';
import { CaptionCollector } from '../test/support/viewer.ts';
import { wordErrorRate } from '../test/support/wer.ts';
import { ensureCorpus, loadReference } from './make-corpus.ts';

const language = process.env.DEMO_LANGUAGE ?? 'en';
const speed = Number(process.env.DEMO_SPEED ?? 1);
const corpusDir = await ensureCorpus();

let stt: SttServer | undefined;
if (!process.env.STT_BASE_URL && !process.env.OPENAI_API_KEY) {
  stt = await new SttServer({ corpusDir }).start();
  process.stdout.write(`demo: test STT server (listens to the bundled corpus) at ${stt.baseUrl}\n`);
}
// The clinic's key pair for the demo: the gateway only ever sees the public half.
const dataDir = process.env.DATA_DIR ?? '.data';
const identityFile = join(dataDir, 'demo-age-identity.txt');
if (!existsSync(identityFile)) {
  await mkdir(dataDir, { recursive: true });
  await writeFile(identityFile, `${await generateX25519Identity()}\n`, { mode: 0o600 });
}
const recipient = await identityToRecipient((await readFile(identityFile, 'utf8')).trim());
const secret = randomBytes(32).toString('hex');
const config = loadConfig({
  ...process.env,
  HOST: '127.0.0.1',
  PORT: process.env.PORT ?? '0',
  JWT_SECRET: secret,
  DATA_DIR: dataDir,
  ARCHIVE_RECIPIENTS: process.env.ARCHIVE_RECIPIENTS ?? recipient,
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  // DEMO_SPEED above real time is the demo's choice, not a flooding producer.
  INGEST_MAX_SPEED: String(Math.max(1.5, speed * 1.5)),
  ...(stt ? { STT_BASE_URL: stt.baseUrl, OPENAI_API_KEY: 'demo' } : {}),
});
const gateway = await createGateway(config, createLogger(config.LOG_LEVEL));
const port = await gateway.listen();
const baseUrl = `http://127.0.0.1:${port}`;
const sessionId = `demo-${new Date().toISOString().replace(/[^0-9]/g, '').slice(0, 14)}`;
const token = (role: string) => new SignJWT({ role, ...(role === 'service' ? {} : { session: sessionId }) }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('2h').sign(new TextEncoder().encode(secret));
const api = async (method: string, path: string) => {
  const response = await fetch(`${baseUrl}${path}`, { method, headers: { authorization: `Bearer ${await token('service')}` } });
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${await response.text()}`);
  return response;
};
await fetch(`${baseUrl}/v1/sessions`, {
  method: 'POST',
  headers: { authorization: `Bearer ${await token('service')}`, 'content-type': 'application/json' },
  body: JSON.stringify({ id: sessionId, language, encounterRef: 'demo-visit' }),
});
process.stdout.write(`demo: gateway at ${baseUrl}, session ${sessionId}; streaming the ${language} consultation at ${speed}× real time\n\n`);

const tty = process.stdout.isTTY;
const live = new Map<string, PartialEvent>();
let liveLines = 0;
const clock = (ms: number) => `${String(Math.floor(ms / 60000)).padStart(2, '0')}:${((ms % 60000) / 1000).toFixed(1).padStart(4, '0')}`;

/** Redraws the in-progress captions below the finals (TTY), one line per speaking track. */
function redraw(): void {
  if (!tty) return;
  if (liveLines) process.stdout.write(`\x1b[${liveLines}A\x1b[0J`);
  const lines = [...live.values()].map((p) => `  … ${p.role}: ${[p.stable, p.unstable && `\x1b[2m${p.unstable}\x1b[0m`].filter(Boolean).join(' ')}`);
  const width = process.stdout.columns ?? 100;
  for (const line of lines) process.stdout.write(`${line.slice(0, width + 8)}\n`);
  liveLines = lines.length;
}

function show(event: CaptionEvent): void {
  if (event.type === 'partial') {
    if (event.stable || event.unstable) live.set(event.trackId, event);
    else live.delete(event.trackId);
    redraw();
  } else if (event.type === 'final') {
    live.delete(event.trackId);
    if (tty && liveLines) process.stdout.write(`\x1b[${liveLines}A\x1b[0J`);
    liveLines = 0;
    process.stdout.write(`[${clock(event.startMs)}] ${event.speaker}: ${event.text}\n`);
    redraw();
  } else if (event.type === 'error') {
    process.stdout.write(`! ${event.message}\n`);
  }
}

const viewer = await CaptionCollector.connect(baseUrl, sessionId, await token('viewer'));
viewer.onEvent = show;
await Promise.all(
  (['doctor', 'patient'] as const).map(async (track) =>
    streamChunks(
      ingestUrl(baseUrl, sessionId, track, { format: 'webm', role: track, participant: track === 'doctor' ? 'Dr. Rahimi' : 'Patient', language, access_token: await token('producer') }),
      await chunksFor({ format: 'webm', file: `${corpusDir}/${language}/${track}` }),
      speed,
    ),
  ),
);
await viewer.tracksEnded(['doctor', 'patient'], 600000);
viewer.close();
await api('POST', `/v1/sessions/${sessionId}/end`);

process.stdout.write(`\n── merged transcript (GET /v1/sessions/${sessionId}/transcript?format=text) ──\n`);
process.stdout.write(await (await api('GET', `/v1/sessions/${sessionId}/transcript?format=text`)).text());
const transcript = (await (await api('GET', `/v1/sessions/${sessionId}/transcript`)).json()) as { segments: { words: { word: string; startMs: number }[] }[] };
const merged = transcript.segments.flatMap((s) => s.words).sort((a, b) => a.startMs - b.startMs).map((w) => w.word).join(' ');

const reference = await loadReference(language);
const result = wordErrorRate(reference.tracks.mix.map((w) => w.word).join(' '), merged);
type Status = { archive: { behind: boolean; recordings: { objectKey: string; durationMs: number; state: string }[] } };
let status = (await (await api('GET', `/v1/sessions/${sessionId}`)).json()) as Status;
for (let i = 0; i < 100 && (status.archive.behind || status.archive.recordings.some((r) => r.state !== 'uploaded')); i++) {
  await new Promise((r) => setTimeout(r, 100));
  status = (await (await api('GET', `/v1/sessions/${sessionId}`)).json()) as Status;
}
process.stdout.write(`\n── encrypted recordings (age, to ${recipient.slice(0, 16)}…) ──\n`);
for (const r of status.archive.recordings) {
  process.stdout.write(`${join(config.ARCHIVE_DIR ?? join(dataDir, 'archive'), r.objectKey)}  (${(r.durationMs / 1000).toFixed(1)} s)\n`);
}
process.stdout.write(`decrypt: age -d -i ${identityFile} -o visit.ogg <file>\n`);
await gateway.close();
await stt?.stop();
process.stdout.write(`\nWER: ${(result.wer * 100).toFixed(2)}%\n`);
