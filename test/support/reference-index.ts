/**
 * The "ears" of the test recognizer: finds where a window of audio sits in a corpus of reference
 * recordings by cross-correlating loudness envelopes, then reads the words whose span lies inside it.
 * Windows reach it after Opus coding, resampling and VAD cuts, so it matches features that survive
 * those (10 ms log-energy of the signal and of its first difference), never sample values.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeWav } from '../../src/audio/wav.ts';
import type { CorpusReference, ReferenceWord } from '../../scripts/make-corpus.ts';

const SAMPLE_RATE = 16000;
const HOP = 160; // 10 ms
const COARSE = 5; // coarse search on 50 ms steps
const FLOOR_DB = -50; // quieter than this is silence, whatever the codec left of the noise floor
const FLOOR = 10 * Math.log10((32768 * 10 ** (FLOOR_DB / 20)) ** 2);
/** Opus at 24–32 kbit/s and resampling move these levels by a few dB; other sounds differ by far more. */
const MAX_LEVEL_DISTANCE_DB = 8;

export interface ReferenceTrack {
  name: string;
  language: string;
  words: ReferenceWord[];
  features: Float32Array; // interleaved [energy, diffEnergy] per 10 ms frame
  frames: number;
}

export interface Match {
  track: ReferenceTrack;
  offsetMs: number;
  score: number;
}

export interface HeardWord {
  word: string;
  /** Seconds from the window start. */
  start: number;
  end: number;
  /** Who said it (the corpus's label), for a diarizing recognizer's answer. */
  speaker?: string;
}

/** Two log-energy channels per 10 ms: loudness and a crude high-band (first difference) loudness. */
export function envelope(samples: Int16Array): { features: Float32Array; frames: number } {
  const frames = Math.floor(samples.length / HOP);
  const features = new Float32Array(frames * 2);
  for (let f = 0; f < frames; f++) {
    let energy = 0;
    let diffEnergy = 0;
    const base = f * HOP;
    for (let i = 0; i < HOP; i++) {
      const s = samples[base + i];
      const d = s - (base + i > 0 ? samples[base + i - 1] : 0);
      energy += s * s;
      diffEnergy += d * d;
    }
    features[f * 2] = Math.max(FLOOR, 10 * Math.log10(energy / HOP + 1e-9));
    features[f * 2 + 1] = Math.max(FLOOR, 10 * Math.log10(diffEnergy / HOP + 1e-9));
  }
  return { features, frames };
}

/** True when no 10 ms frame rises above the silence floor. */
export function isSilent(features: Float32Array): boolean {
  for (let i = 0; i < features.length; i += 2) if (features[i] > FLOOR + 3) return false;
  return true;
}

function downsample(features: Float32Array, frames: number, factor: number): Float32Array {
  const out = new Float32Array(Math.floor(frames / factor) * 2);
  for (let f = 0; f < out.length / 2; f++) {
    for (let c = 0; c < 2; c++) {
      let sum = 0;
      for (let k = 0; k < factor; k++) sum += features[(f * factor + k) * 2 + c];
      out[f * 2 + c] = sum / factor;
    }
  }
  return out;
}

/** Pearson correlation of the window against the reference at `lag` frames (reference padded with floor). */
function correlation(window: Float32Array, reference: Float32Array, lag: number): number {
  const n = window.length;
  let sw = 0, sr = 0, sww = 0, srr = 0, swr = 0;
  for (let i = 0; i < n; i++) {
    const w = window[i];
    const j = lag * 2 + i;
    const r = j >= 0 && j < reference.length ? reference[j] : FLOOR;
    sw += w; sr += r; sww += w * w; srr += r * r; swr += w * r;
  }
  const cov = swr - (sw * sr) / n;
  const varW = sww - (sw * sw) / n;
  const varR = srr - (sr * sr) / n;
  if (varW <= 1e-6 || varR <= 1e-6) return 0;
  return cov / Math.sqrt(varW * varR);
}

/** RMS difference in dB of both feature channels over the frames where either side has sound. */
function levelDistance(window: Float32Array, reference: Float32Array, lag: number): number {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < window.length; i++) {
    const j = lag * 2 + i;
    const r = j >= 0 && j < reference.length ? reference[j] : FLOOR;
    if (window[i] <= FLOOR + 3 && r <= FLOOR + 3) continue;
    sum += (window[i] - r) ** 2;
    count++;
  }
  return count ? Math.sqrt(sum / count) : 0;
}

export class ReferenceIndex {
  readonly tracks: ReferenceTrack[];
  private readonly coarse = new Map<ReferenceTrack, Float32Array>();

  constructor(tracks: ReferenceTrack[]) {
    this.tracks = tracks;
    for (const track of tracks) this.coarse.set(track, downsample(track.features, track.frames, COARSE));
  }

  /**
   * Loads every track of every language under a corpus directory made by scripts/make-corpus.ts; with
   * `noisy`, their noisy versions too (twice the tracks to search: only where noisy audio is streamed);
   * with `mixOnly`, the visits recorded on one track only (the three-person visit).
   */
  static async load(corpusDir: string, noisy = false, mixOnly = false): Promise<ReferenceIndex> {
    const manifest = JSON.parse(await readFile(join(corpusDir, 'manifest.json'), 'utf8')) as { languages: string[]; mixOnly: string[] };
    const tracks: ReferenceTrack[] = [];
    const visits = [...manifest.languages.map((dir) => ({ dir, names: ['doctor', 'patient', 'mix'] as const })), ...(mixOnly ? manifest.mixOnly : []).map((dir) => ({ dir, names: ['mix'] as const }))];
    for (const { dir, names } of visits) {
      const reference = JSON.parse(await readFile(join(corpusDir, dir, 'reference.json'), 'utf8')) as CorpusReference;
      const language = reference.language;
      // A noisy track holds the same words as its clean one, and the bursts that make it noisy.
      for (const name of names) {
        for (const file of noisy && dir === language ? [name, `${name}-noisy`] : [name]) {
          const { samples, sampleRate } = decodeWav(await readFile(join(corpusDir, dir, `${file}.wav`)));
          if (sampleRate !== SAMPLE_RATE) throw new Error(`${dir}/${file}.wav is ${sampleRate} Hz, expected ${SAMPLE_RATE}`);
          tracks.push({ name: `${dir}/${file}`, language, words: reference.tracks[name], ...envelope(samples) });
        }
      }
    }
    return new ReferenceIndex(tracks);
  }

  /** Where the window best fits, searched coarse-to-fine; undefined when nothing fits well. */
  locate(samples: Int16Array, language?: string): Match | undefined {
    const { features, frames } = envelope(samples);
    if (frames < 10 || isSilent(features)) return undefined;
    const candidates = this.tracks.filter((t) => !language || t.language === language);
    const windowCoarse = downsample(features, frames, COARSE);
    const coarseLen = windowCoarse.length / 2;
    const shortlist: { track: ReferenceTrack; lag: number; score: number }[] = [];
    for (const track of candidates) {
      const reference = this.coarse.get(track)!;
      const lags = reference.length / 2 - Math.floor(coarseLen / 2);
      for (let lag = 0; lag <= lags; lag++) {
        const score = correlation(windowCoarse, reference, lag);
        if (shortlist.length < 4 || score > shortlist[shortlist.length - 1].score) {
          shortlist.push({ track, lag, score });
          shortlist.sort((a, b) => b.score - a.score);
          if (shortlist.length > 4) shortlist.pop();
        }
      }
    }
    let best: Match | undefined;
    for (const { track, lag } of shortlist) {
      for (let fine = lag * COARSE - COARSE * 2; fine <= lag * COARSE + COARSE * 2; fine++) {
        if (fine < 0) continue;
        const score = correlation(features, track.features, fine);
        if (!best || score > best.score) best = { track, offsetMs: fine * 10, score };
      }
    }
    if (!best || best.score < 0.6) return undefined;
    // The shape can match by chance (noise bursts shaped like words); the levels of both channels must too.
    return levelDistance(features, best.track.features, best.offsetMs / 10) <= MAX_LEVEL_DISTANCE_DB ? best : undefined;
  }

  /**
   * The words a recognizer would hear in a window at `offsetMs` lasting `durationMs`: whole words inside;
   * a word cut by an edge is garbled when mostly inside and dropped when mostly outside.
   */
  static wordsInWindow(words: readonly ReferenceWord[], offsetMs: number, durationMs: number): HeardWord[] {
    const slackMs = 30;
    const from = offsetMs;
    const to = offsetMs + durationMs;
    const heard: HeardWord[] = [];
    for (const w of words) {
      const inside = Math.min(w.endMs, to) - Math.max(w.startMs, from);
      if (inside <= 0) continue;
      const fraction = inside / (w.endMs - w.startMs);
      const whole = w.startMs >= from - slackMs && w.endMs <= to + slackMs;
      let text = w.word;
      if (!whole) {
        if (fraction < 0.5) continue;
        const keep = Math.max(1, Math.floor([...w.word].length * fraction * 0.7));
        const letters = [...w.word];
        text = w.startMs < from ? letters.slice(-keep).join('') : letters.slice(0, keep).join('');
      }
      const round = (ms: number) => Math.round(Math.max(0, Math.min(durationMs, ms - from))) / 1000;
      heard.push({ word: text, start: round(w.startMs), end: round(w.endMs), speaker: w.speaker });
    }
    return heard;
  }
}
