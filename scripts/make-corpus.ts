/**
 * Makes the speech corpus the tests, the demo and the benchmarks stream: one synthetic consultation per
 * language (English, Persian, Arabic), spoken word by word with espeak-ng so every word's start and end
 * are known exactly. For each language it writes into corpus/<lang>/:
 *   doctor.wav, patient.wav   one track per participant (16 kHz PCM16, the other speaker's turns silent)
 *   mix.wav                   both speakers on one track (a single microphone in the room)
 *   <track>.ogg, <track>.webm Opus in the containers browsers and ffmpeg produce (20 ms and 60 ms frames)
 *   <track>-48k.wav           the track at 48 kHz, for the PCM16/48 kHz ingest path
 *   reference.json            the words of every track with their times
 * Each word gets its own small variation of speed and pitch (seeded), so the same word said twice does
 * not sound identical: the test recognizer must tell them apart by listening, as a real one would.
 * Does nothing when corpus/ already matches this script's inputs.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { decodeWav, encodeWav } from '../src/audio/wav.ts';
import { CONSULTATIONS, type Consultation } from './corpus/consultations.ts';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CORPUS_DIR = process.env.CORPUS_DIR ?? join(root, 'corpus');
const ESPEAK_RATE = 22050;
const OUTPUT_RATE = 16000;
const CORPUS_VERSION = 3;

export interface ReferenceWord {
  word: string;
  startMs: number;
  endMs: number;
}

export interface CorpusReference {
  language: string;
  durationMs: number;
  tracks: Record<'doctor' | 'patient' | 'mix', ReferenceWord[]>;
}

/** Deterministic PRNG (mulberry32), so the corpus is the same on every machine with the same espeak-ng. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function speakWord(voice: string, word: string, speed: number, pitch: number): Promise<Int16Array> {
  const { stdout } = await run('espeak-ng', ['-v', voice, '-s', String(speed), '-p', String(pitch), '--stdout', word], {
    encoding: 'buffer',
    maxBuffer: 64 * 1024 * 1024,
  });
  const { samples, sampleRate } = decodeWav(stdout);
  if (sampleRate !== ESPEAK_RATE) throw new Error(`espeak-ng wrote ${sampleRate} Hz, expected ${ESPEAK_RATE}`);
  return trimSilence(samples);
}

function trimSilence(samples: Int16Array): Int16Array {
  const threshold = 200;
  let start = 0;
  let end = samples.length;
  while (start < end && Math.abs(samples[start]) < threshold) start++;
  while (end > start && Math.abs(samples[end - 1]) < threshold) end--;
  const margin = Math.round(ESPEAK_RATE * 0.01);
  return samples.subarray(Math.max(0, start - margin), Math.min(samples.length, end + margin));
}

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]);
    }
  });
  await Promise.all(workers);
  return results;
}

async function synthesize(consultation: Consultation, dir: string, seed: number): Promise<void> {
  const rand = random(seed);
  const voices = { doctor: `${consultation.voice}+m3`, patient: `${consultation.voice}+f2` };
  const plan = consultation.turns.flatMap((turn, turnIndex) =>
    turn.text
      .split(/\s+/)
      .filter(Boolean)
      .map((word, wordIndex) => ({
        speaker: turn.speaker,
        word,
        firstOfTurn: wordIndex === 0 && turnIndex > 0,
        speed: 150 + Math.round(rand() * 30),
        pitch: (turn.speaker === 'doctor' ? 35 : 55) + Math.round(rand() * 16),
        gapMs: 70 + Math.round(rand() * 130),
        turnGapMs: 700 + Math.round(rand() * 500),
      })),
  );
  const audio = await mapLimited(plan, 4, (p) => speakWord(voices[p.speaker], p.word, p.speed, p.pitch));

  const toSamples = (ms: number) => Math.round((ms / 1000) * ESPEAK_RATE);
  const leadMs = 600;
  const tailMs = 1200;
  let cursor = toSamples(leadMs);
  const placed = plan.map((p, i) => {
    if (p.firstOfTurn) cursor += toSamples(p.turnGapMs);
    else if (i > 0) cursor += toSamples(p.gapMs);
    const start = cursor;
    cursor += audio[i].length;
    return { ...p, start, samples: audio[i] };
  });
  const total = cursor + toSamples(tailMs);
  const toMs = (samples: number) => Math.round((samples / ESPEAK_RATE) * 100000) / 100;

  const reference: CorpusReference = { language: consultation.language, durationMs: toMs(total), tracks: { doctor: [], patient: [], mix: [] } };
  const noise = random(seed ^ 0x5eed);
  for (const track of ['doctor', 'patient', 'mix'] as const) {
    const pcm = new Int16Array(total);
    for (let i = 0; i < total; i++) pcm[i] = Math.round((noise() - 0.5) * 40);
    for (const word of placed) {
      if (track !== 'mix' && word.speaker !== track) continue;
      for (let i = 0; i < word.samples.length; i++) pcm[word.start + i] += word.samples[i];
      reference.tracks[track].push({ word: word.word, startMs: toMs(word.start), endMs: toMs(word.start + word.samples.length) });
    }
    const raw = join(dir, `${track}-22k.wav`);
    await writeFile(raw, encodeWav(pcm, ESPEAK_RATE));
    await run('sox', [raw, '-r', String(OUTPUT_RATE), join(dir, `${track}.wav`)]);
    await run('sox', [raw, '-r', '48000', join(dir, `${track}-48k.wav`)]);
    await rm(raw);
    const wav = join(dir, `${track}.wav`);
    await run('ffmpeg', ['-y', '-loglevel', 'error', '-i', wav, '-c:a', 'libopus', '-b:a', '32k', '-frame_duration', '20', join(dir, `${track}.ogg`)]);
    await run('ffmpeg', ['-y', '-loglevel', 'error', '-i', wav, '-c:a', 'libopus', '-b:a', '32k', '-frame_duration', '60', join(dir, `${track}.webm`)]);
  }
  await writeFile(join(dir, 'reference.json'), JSON.stringify(reference, null, 1));
}

/** Identifies the corpus inputs: the scripts, the generator version and the espeak-ng build. */
async function inputsDigest(): Promise<string> {
  const { stdout } = await run('espeak-ng', ['--version']);
  return createHash('sha256').update(JSON.stringify({ CONSULTATIONS, CORPUS_VERSION, espeak: stdout.trim() })).digest('hex');
}

export async function ensureCorpus(): Promise<string> {
  const digest = await inputsDigest();
  const manifest = join(CORPUS_DIR, 'manifest.json');
  if (existsSync(manifest) && JSON.parse(await readFile(manifest, 'utf8')).digest === digest) return CORPUS_DIR;
  const started = Date.now();
  await rm(CORPUS_DIR, { recursive: true, force: true });
  for (const [index, consultation] of CONSULTATIONS.entries()) {
    const dir = join(CORPUS_DIR, consultation.language);
    await mkdir(dir, { recursive: true });
    await synthesize(consultation, dir, 1000 + index);
  }
  await writeFile(manifest, JSON.stringify({ digest, languages: CONSULTATIONS.map((c) => c.language) }));
  process.stderr.write(`corpus: wrote ${CORPUS_DIR} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return CORPUS_DIR;
}

export async function loadReference(language: string): Promise<CorpusReference> {
  return JSON.parse(await readFile(join(CORPUS_DIR, language, 'reference.json'), 'utf8'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await ensureCorpus();
}
