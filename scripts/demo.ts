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
const secret = randomBytes(32).toString('hex');
const config = loadConfig({
  ...process.env,
  HOST: '127.0.0.1',
  PORT: process.env.PORT ?? '0',
  JWT_SECRET: secret,
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  ...(stt ? { STT_BASE_URL: stt.baseUrl, OPENAI_API_KEY: 'demo' } : {}),
});
const gateway = await createGateway(config, createLogger(config.LOG_LEVEL));
const port = await gateway.listen();
const baseUrl = `http://127.0.0.1:${port}`;
const token = (role: string) => new SignJWT({ role, session: 'demo' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('2h').sign(new TextEncoder().encode(secret));
process.stdout.write(`demo: gateway at ${baseUrl}; streaming the ${language} consultation at ${speed}× real time\n\n`);

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

const viewer = await CaptionCollector.connect(baseUrl, 'demo', await token('viewer'));
viewer.onEvent = show;
await Promise.all(
  (['doctor', 'patient'] as const).map(async (track) =>
    streamChunks(
      ingestUrl(baseUrl, 'demo', track, { format: 'webm', role: track, participant: track === 'doctor' ? 'Dr. Rahimi' : 'Patient', language, access_token: await token('producer') }),
      await chunksFor({ format: 'webm', file: `${corpusDir}/${language}/${track}` }),
      speed,
    ),
  ),
);
await viewer.tracksEnded(['doctor', 'patient'], 600000);
viewer.close();

const finals = viewer.finals;
process.stdout.write('\n── merged transcript ──\n');
const turns = finals.flatMap((f) => f.words.map((w) => ({ ...w, speaker: f.speaker }))).sort((a, b) => a.startMs - b.startMs);
let current = '';
let line = '';
for (const word of turns) {
  if (word.speaker !== current) {
    if (line) process.stdout.write(`${line}\n`);
    current = word.speaker;
    line = `[${clock(word.startMs)}] ${word.speaker}:`;
  }
  line += ` ${word.word}`;
}
if (line) process.stdout.write(`${line}\n`);

const reference = await loadReference(language);
const result = wordErrorRate(reference.tracks.mix.map((w) => w.word).join(' '), viewer.transcript());
await gateway.close();
await stt?.stop();
process.stdout.write(`\nWER: ${(result.wer * 100).toFixed(2)}%\n`);
