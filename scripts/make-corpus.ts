/**
 * Makes the speech corpus the tests, the demo and the benchmarks stream: one synthetic consultation per
 * language (English, Persian, Arabic), spoken word by word with espeak-ng so every word's start and end
 * are known exactly. For each language it writes into corpus/<lang>/:
 *   doctor.wav, patient.wav   one track per participant (16 kHz PCM16, the other speaker's turns silent)
 *   mix.wav                   both speakers on one track (a single microphone in the room)
 *   <track>.ogg, <track>.webm Opus in the containers browsers and ffmpeg produce (20 ms and 60 ms frames)
 *   <track>-48k.wav           the track at 48 kHz, for the PCM16/48 kHz ingest path
 *   <track>-noisy.wav, .ogg   the track with loud non-speech bursts (cough, door, chair scrape; 0.3–1 s):
 *                             on the silent track while the other person speaks, and on the speaker's
 *                             own track just before the first word of a turn (what Whisper invents on)
 *   <track>-quiet.wav, .ogg   doctor/patient as a phone a metre away hears them: speech at −45 dBFS RMS
 *                             over a microphone floor at −75 dBFS
 *   <track>-hum10/-hum5 .wav, .ogg  doctor/patient under a clinic's low-frequency noise: 50 Hz mains hum
 *                             with its harmonics and a ventilation's sub-bass rumble, at 10 and 5 dB SNR
 *                             (speech RMS over the noise's)
 *   <track>-fan10/-fan5 .wav, .ogg  doctor/patient under a desk fan's broadband hiss (pink noise), at 10
 *                             and 5 dB SNR: what only noise suppression (RNNoise) takes out
 *   <track>-babble10/-babble5 .wav, .ogg  doctor/patient under a waiting room's babble (six talkers, words
 *                             reversed), at 10 and 5 dB SNR: noise no conditioning step removes
 *   reference.json            the words of every track with their times (the mix's with who said them),
 *                             the speaker turns of the mix, and the noise bursts
 * and corpus/en-family/: mix.wav (.ogg, .webm, -48k.wav) and reference.json of a three-person visit (a
 * relative speaks too, once over the patient's last words): single-track only.
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
import { CONSULTATIONS, FAMILY_VISIT, type Consultation, type CorpusSpeaker } from './corpus/consultations.ts';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CORPUS_DIR = process.env.CORPUS_DIR ?? join(root, 'corpus');
const ESPEAK_RATE = 22050;
const OUTPUT_RATE = 16000;
const CORPUS_VERSION = 5;
/** The three-person visit's directory under the corpus. */
export const FAMILY_VISIT_DIR = 'en-family';

export interface ReferenceWord {
  word: string;
  startMs: number;
  endMs: number;
  /** Who said it (every track's words carry it; the mix holds several speakers). */
  speaker: CorpusSpeaker;
}

/** A turn of one speaker on the mix: from its first word's start to its last word's end. */
export interface SpeakerTurn {
  speaker: CorpusSpeaker;
  startMs: number;
  endMs: number;
}

export type CorpusTrack = 'doctor' | 'patient' | 'mix';

export interface NoiseBurst {
  kind: NoiseKind;
  startMs: number;
  endMs: number;
}

export interface CorpusReference {
  language: string;
  durationMs: number;
  tracks: Record<CorpusTrack, ReferenceWord[]>;
  /** The speaker turns of the mix, in order (they overlap where two people speak at once). */
  turns: SpeakerTurn[];
  /** The bursts of each `<track>-noisy.wav` (the words are the track's own). */
  noise: Record<CorpusTrack, NoiseBurst[]>;
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

export type NoiseKind = 'cough' | 'door' | 'chair';
const NOISE_KINDS: NoiseKind[] = ['cough', 'door', 'chair'];
/** Natural length of each burst, ms (a burst squeezed before a word may be shorter, never under 300). */
const NOISE_MS: Record<NoiseKind, number> = { cough: 420, door: 650, chair: 950 };

/** A band-pass biquad (RBJ cookbook, constant peak gain) over `input`, in place. */
function bandPass(input: Float64Array, lowHz: number, highHz: number, rate: number): void {
  const centre = Math.sqrt(lowHz * highHz);
  const w0 = (2 * Math.PI * centre) / rate;
  const alpha = Math.sin(w0) * Math.sinh((Math.LN2 / 2) * Math.log2(highHz / lowHz) * (w0 / Math.sin(w0)));
  const a0 = 1 + alpha;
  const [b0, b2, a1, a2] = [alpha / a0, -alpha / a0, (-2 * Math.cos(w0)) / a0, (1 - alpha) / a0];
  let [x1, x2, y1, y2] = [0, 0, 0, 0];
  for (let i = 0; i < input.length; i++) {
    const x = input[i];
    const y = b0 * x + b2 * x2 - a1 * y1 - a2 * y2;
    [x2, x1, y2, y1] = [x1, x, y1, y];
    input[i] = y;
  }
}

/**
 * A loud non-speech sound (peak −6 dBFS) from seeded noise: a cough (two band-passed bursts with a sharp
 * attack), a door (a 70 Hz thump, a low rumble and a latch click), a chair scraped on the floor
 * (band-passed noise juddering at 18 Hz). No pitch, no formants moving like a voice's.
 */
function noiseBurst(kind: NoiseKind, durationMs: number, rand: () => number): Int16Array {
  const n = Math.round((durationMs / 1000) * ESPEAK_RATE);
  const out = new Float64Array(n);
  const white = () => Float64Array.from({ length: n }, () => rand() * 2 - 1);
  const t = (i: number) => i / ESPEAK_RATE;
  if (kind === 'cough') {
    const band = white();
    bandPass(band, 350, 2600, ESPEAK_RATE);
    const second = 0.45 * (durationMs / 1000);
    for (let i = 0; i < n; i++) {
      const pulse = (at: number) => (t(i) < at ? 0 : Math.min(1, (t(i) - at) / 0.008) * Math.exp(-(t(i) - at) / 0.055));
      out[i] = band[i] * (pulse(0) + 0.7 * pulse(second));
    }
  } else if (kind === 'door') {
    const rumble = white();
    bandPass(rumble, 40, 400, ESPEAK_RATE);
    const click = white();
    bandPass(click, 2000, 6000, ESPEAK_RATE);
    for (let i = 0; i < n; i++) {
      out[i] = Math.sin(2 * Math.PI * 70 * t(i)) * Math.exp(-t(i) / 0.12) + 2 * rumble[i] * Math.exp(-t(i) / 0.08) + (t(i) < 0.006 ? click[i] : 0);
    }
  } else {
    const band = white();
    bandPass(band, 900, 4200, ESPEAK_RATE);
    const length = durationMs / 1000;
    for (let i = 0; i < n; i++) {
      const envelope = Math.min(1, t(i) / 0.1, (length - t(i)) / 0.15);
      out[i] = band[i] * envelope * (0.2 + 0.8 * Math.sin(Math.PI * 18 * t(i)) ** 2);
    }
  }
  const peak = out.reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
  return Int16Array.from(out, (v) => Math.round((v / peak) * 16384));
}

const clamp = (v: number) => Math.max(-32768, Math.min(32767, Math.round(v)));

/** RMS of `x` over the [start, end) sample ranges. */
function rmsOver(x: ArrayLike<number>, ranges: [number, number][]): number {
  let sum = 0;
  let count = 0;
  for (const [a, b] of ranges) for (let i = a; i < Math.min(b, x.length); i++, count++) sum += x[i] * x[i];
  return Math.sqrt(sum / Math.max(1, count)) || 1;
}

/**
 * A clinic room's low-frequency noise at 22.05 kHz: 50 Hz mains hum with decaying harmonics up to
 * 450 Hz (a transformer, a lamp ballast), slowly wavering, over the rumble of the ventilation (noise
 * through two low-pass poles at 45 Hz: a building's sub-bass, below the voice).
 */
function roomNoise(n: number, rand: () => number): Float64Array {
  const out = new Float64Array(n);
  const rumble = new Float64Array(n);
  let first = 0;
  let second = 0;
  const a = Math.exp((-2 * Math.PI * 45) / ESPEAK_RATE);
  for (let i = 0; i < n; i++) {
    first = a * first + (1 - a) * (rand() * 2 - 1);
    second = a * second + (1 - a) * first;
    rumble[i] = second;
  }
  const rumbleRms = rmsOver(rumble, [[0, n]]);
  const phases = Array.from({ length: 9 }, () => rand() * 2 * Math.PI);
  for (let i = 0; i < n; i++) {
    const t = i / ESPEAK_RATE;
    let hum = 0;
    for (let h = 1; h <= 9; h++) hum += Math.sin(2 * Math.PI * 50 * h * t + phases[h - 1]) / h;
    out[i] = hum * (1 + 0.1 * Math.sin(2 * Math.PI * 0.3 * t)) + 0.5 * (rumble[i] / rumbleRms);
  }
  return out;
}

/**
 * A waiting room's babble at 22.05 kHz: six talkers at once, each saying the consultation's words in a
 * seeded shuffle, back to back, played backwards (speech-like, but no word a recognizer could take for
 * the speaker's).
 */
function babbleNoise(n: number, words: Int16Array[], rand: () => number): Float64Array {
  const out = new Float64Array(n);
  for (let talker = 0; talker < 6; talker++) {
    let at = Math.floor(rand() * ESPEAK_RATE);
    while (at < n) {
      const word = words[Math.floor(rand() * words.length)];
      for (let i = 0; i < word.length && at + i < n; i++) out[at + i] += word[word.length - 1 - i];
      at += word.length + Math.floor(rand() * ESPEAK_RATE * 0.08);
    }
  }
  return out;
}

/** A desk fan's steady broadband hiss at 22.05 kHz: pink noise (Paul Kellet's filter over white noise). */
function fanNoise(n: number, rand: () => number): Float64Array {
  const out = new Float64Array(n);
  let [b0, b1, b2, b3, b4, b5, b6] = [0, 0, 0, 0, 0, 0, 0];
  for (let i = 0; i < n; i++) {
    const white = rand() * 2 - 1;
    b0 = 0.99886 * b0 + white * 0.0555179;
    b1 = 0.99332 * b1 + white * 0.0750759;
    b2 = 0.969 * b2 + white * 0.153852;
    b3 = 0.8665 * b3 + white * 0.3104856;
    b4 = 0.55 * b4 + white * 0.5329522;
    b5 = -0.7616 * b5 - white * 0.016898;
    out[i] = b0 + b1 + b2 + b3 + b4 + b5 + b6 + white * 0.5362;
    b6 = white * 0.115926;
  }
  return out;
}

/** Each speaker's espeak-ng variant and pitch range (the lowest; each word adds up to 16). */
const VOICES: Record<CorpusSpeaker, { variant: string; pitch: number }> = {
  doctor: { variant: 'm3', pitch: 35 },
  patient: { variant: 'f2', pitch: 55 },
  relative: { variant: 'f4', pitch: 45 },
};

/** `mixOnly`: the single-track version alone (no per-speaker tracks, no noisy variants). */
async function synthesize(consultation: Consultation, dir: string, seed: number, mixOnly = false): Promise<void> {
  const rand = random(seed);
  const plan = consultation.turns.flatMap((turn, turnIndex) =>
    turn.text
      .split(/\s+/)
      .filter(Boolean)
      .map((word, wordIndex) => ({
        speaker: turn.speaker,
        turn: turnIndex,
        word,
        firstOfTurn: wordIndex === 0 && turnIndex > 0,
        speed: 150 + Math.round(rand() * 30),
        pitch: VOICES[turn.speaker].pitch + Math.round(rand() * 16),
        gapMs: 70 + Math.round(rand() * 130),
        turnGapMs: 700 + Math.round(rand() * 500),
        overlapMs: turn.overlapMs ?? 0,
      })),
  );
  const audio = await mapLimited(plan, 4, (p) => speakWord(`${consultation.voice}+${VOICES[p.speaker].variant}`, p.word, p.speed, p.pitch));

  const toSamples = (ms: number) => Math.round((ms / 1000) * ESPEAK_RATE);
  const leadMs = 600;
  const tailMs = 1200;
  let cursor = toSamples(leadMs);
  const placed = plan.map((p, i) => {
    if (p.firstOfTurn) cursor = p.overlapMs > 0 ? cursor - toSamples(p.overlapMs) : cursor + toSamples(p.turnGapMs);
    else if (i > 0) cursor += toSamples(p.gapMs);
    const start = cursor;
    cursor += audio[i].length;
    return { ...p, start, samples: audio[i] };
  });
  const total = Math.max(...placed.map((p) => p.start + p.samples.length)) + toSamples(tailMs);
  const toMs = (samples: number) => Math.round((samples / ESPEAK_RATE) * 100000) / 100;

  const reference: CorpusReference = {
    language: consultation.language,
    durationMs: toMs(total),
    tracks: { doctor: [], patient: [], mix: [] },
    turns: [],
    noise: { doctor: [], patient: [], mix: [] },
  };
  for (const [turn, { speaker }] of consultation.turns.entries()) {
    const words = placed.filter((p) => p.turn === turn);
    if (words.length > 0) reference.turns.push({ speaker, startMs: toMs(words[0].start), endMs: toMs(words.at(-1)!.start + words.at(-1)!.samples.length) });
  }
  // Noise bursts, each track getting both kinds: before the first word of a turn on its speaker's track
  // (ending 120 ms before the word, so the window that opens on it runs into the speech: turns 1, 4, 5,
  // 8, …), and in the middle of a turn on the other person's track (a window with nothing but the burst).
  const bursts: { track: 'doctor' | 'patient'; start: number; samples: Int16Array; kind: NoiseKind }[] = [];
  const noiseRand = random(seed ^ 0xc0ff);
  const turnsOf = consultation.turns.map((_, turn) => placed.filter((p) => p.turn === turn));
  turnsOf.forEach((words, turn) => {
    if (mixOnly || turn === 0 || words.length === 0) return;
    const kind = NOISE_KINDS[turn % NOISE_KINDS.length];
    const speaker = words[0].speaker;
    if (turn % 4 === 0 || turn % 4 === 1) {
      const previousEnd = turnsOf[turn - 1].at(-1)!;
      const room = (words[0].start - (previousEnd.start + previousEnd.samples.length)) / ESPEAK_RATE * 1000 - 250;
      const samples = noiseBurst(kind, Math.max(300, Math.min(NOISE_MS[kind], room)), noiseRand);
      bursts.push({ track: speaker === 'doctor' ? 'doctor' : 'patient', start: words[0].start - toSamples(120) - samples.length, samples, kind });
    } else {
      const first = words[0].start;
      const last = words.at(-1)!.start + words.at(-1)!.samples.length;
      const samples = noiseBurst(kind, NOISE_MS[kind], noiseRand);
      if (last - first < samples.length + toSamples(1000)) return;
      bursts.push({ track: speaker === 'doctor' ? 'patient' : 'doctor', start: Math.round((first + last - samples.length) / 2), samples, kind });
    }
  });
  const noise = random(seed ^ 0x5eed);
  for (const track of mixOnly ? (['mix'] as const) : (['doctor', 'patient', 'mix'] as const)) {
    const pcm = new Int16Array(total);
    for (let i = 0; i < total; i++) pcm[i] = Math.round((noise() - 0.5) * 40);
    for (const word of [...placed].sort((a, b) => a.start - b.start)) {
      if (track !== 'mix' && word.speaker !== track) continue;
      for (let i = 0; i < word.samples.length; i++) pcm[word.start + i] = clamp(pcm[word.start + i] + word.samples[i]);
      reference.tracks[track].push({ word: word.word, startMs: toMs(word.start), endMs: toMs(word.start + word.samples.length), speaker: word.speaker });
    }
    await writeTrack(dir, track, pcm, true);
    if (mixOnly) continue;
    const noisy = pcm.slice();
    for (const burst of bursts) {
      if (track !== 'mix' && burst.track !== track) continue;
      for (let i = 0; i < burst.samples.length; i++) noisy[burst.start + i] = Math.max(-32768, Math.min(32767, noisy[burst.start + i] + burst.samples[i]));
      reference.noise[track].push({ kind: burst.kind, startMs: toMs(burst.start), endMs: toMs(burst.start + burst.samples.length) });
    }
    reference.noise[track].sort((a, b) => a.startMs - b.startMs);
    await writeTrack(dir, `${track}-noisy`, noisy, false);
    if (track === 'mix') continue;
    const speechRms = rmsOver(pcm, reference.tracks[track].map((w) => [toSamples(w.startMs), toSamples(w.endMs)]));
    const floor = random(seed ^ 0xf100);
    const variants: [string, Int16Array][] = [[`${track}-quiet`, Int16Array.from(pcm, (v) => clamp(v * (32768 * 10 ** (-45 / 20) / speechRms) + (floor() - 0.5) * 20))]];
    const noises = { hum: roomNoise(total, random(seed ^ 0x4077)), fan: fanNoise(total, random(seed ^ 0xfa17)), babble: babbleNoise(total, audio, random(seed ^ 0xbab1)) };
    for (const [name, noiseSamples] of Object.entries(noises)) {
      const noiseRms = rmsOver(noiseSamples, [[0, total]]);
      for (const snrDb of [10, 5]) {
        const scale = speechRms / 10 ** (snrDb / 20) / noiseRms;
        variants.push([`${track}-${name}${snrDb}`, Int16Array.from(pcm, (v, i) => clamp(v + noiseSamples[i] * scale))]);
      }
    }
    // sox and ffmpeg are processes of their own: two at a time.
    await mapLimited(variants, 2, ([name, samples]) => writeTrack(dir, name, samples, false));
  }
  await writeFile(join(dir, 'reference.json'), JSON.stringify(reference, null, 1));
}

/** A 22.05 kHz track as 16 kHz WAV and 20 ms Ogg Opus; `all`: also 48 kHz WAV and 60 ms WebM Opus. */
async function writeTrack(dir: string, name: string, pcm: Int16Array, all: boolean): Promise<void> {
  const raw = join(dir, `${name}-22k.wav`);
  await writeFile(raw, encodeWav(pcm, ESPEAK_RATE));
  const wav = join(dir, `${name}.wav`);
  await run('sox', [raw, '-r', String(OUTPUT_RATE), wav]);
  if (all) await run('sox', [raw, '-r', '48000', join(dir, `${name}-48k.wav`)]);
  await rm(raw);
  await run('ffmpeg', ['-y', '-loglevel', 'error', '-i', wav, '-c:a', 'libopus', '-b:a', '32k', '-frame_duration', '20', join(dir, `${name}.ogg`)]);
  if (all) await run('ffmpeg', ['-y', '-loglevel', 'error', '-i', wav, '-c:a', 'libopus', '-b:a', '32k', '-frame_duration', '60', join(dir, `${name}.webm`)]);
}

/** Identifies the corpus inputs: the scripts (this generator's own source too), the generator version and the espeak-ng build. */
async function inputsDigest(): Promise<string> {
  const { stdout } = await run('espeak-ng', ['--version']);
  const generator = await readFile(fileURLToPath(import.meta.url), 'utf8');
  return createHash('sha256').update(JSON.stringify({ CONSULTATIONS, FAMILY_VISIT, CORPUS_VERSION, generator, espeak: stdout.trim() })).digest('hex');
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
  await mkdir(join(CORPUS_DIR, FAMILY_VISIT_DIR), { recursive: true });
  await synthesize(FAMILY_VISIT, join(CORPUS_DIR, FAMILY_VISIT_DIR), 2000, true);
  await writeFile(manifest, JSON.stringify({ digest, languages: CONSULTATIONS.map((c) => c.language), mixOnly: [FAMILY_VISIT_DIR] }));
  process.stderr.write(`corpus: wrote ${CORPUS_DIR} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return CORPUS_DIR;
}

/** The reference of a language's consultation, or of another visit by its directory (`en-family`). */
export async function loadReference(visit: string): Promise<CorpusReference> {
  return JSON.parse(await readFile(join(CORPUS_DIR, visit, 'reference.json'), 'utf8'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await ensureCorpus();
}
