/**
 * A voice print (pure): the average cepstra and the median pitch of a stretch of speech, and the distance
 * between two prints. A print is what the gateway keeps of an enrolled voice: 17 numbers, from which no
 * audio can be made again.
 */
import { CEPSTRA, PITCH } from '../audio/voice-features.ts';

export interface VoicePrint {
  /** Speech frames (20 ms) it was made of. */
  frames: number;
  /** Mean of each cepstral coefficient c1…c16. */
  cepstra: number[];
  /** Median log2 pitch (Hz) of its voiced frames; null when too few were voiced. */
  pitch: number | null;
}

/**
 * How far each coefficient typically moves within one voice's speech (its standard deviation over
 * frames, measured on the corpus): a difference of one spread weighs the same on every coefficient.
 */
const CEPSTRAL_SPREAD = [22, 13, 18, 13, 10, 11, 9, 7, 7, 6, 5, 5, 4, 3.3, 3.3, 2.7];
/** A quarter of an octave of pitch weighs as much as one spread of a coefficient. */
const PITCH_SPREAD = 0.25;
/** Pitch histogram: 1/24-octave bins from 60 Hz (log2 5.9) to 400 Hz (8.64). */
const PITCH_LOW = Math.log2(60);
const PITCH_BINS = 66;
const PITCH_BIN = 1 / 24;
/** Voiced frames a print needs for its pitch to count. */
const MIN_VOICED = 10;

/** Running sums of speech frames, made into a print on demand; stats add up (a speaker's model is one). */
export class VoiceStats {
  frames = 0;
  readonly sums = new Float64Array(CEPSTRA);
  readonly pitches = new Uint32Array(PITCH_BINS);
  voiced = 0;

  /** Adds the frame at `offset` of a feature array (see VoiceFeatures). */
  add(features: Float32Array, offset: number): void {
    this.frames++;
    for (let c = 0; c < CEPSTRA; c++) this.sums[c] += features[offset + c];
    const pitch = features[offset + PITCH];
    if (Number.isNaN(pitch)) return;
    const bin = Math.floor((pitch - PITCH_LOW) / PITCH_BIN);
    if (bin < 0 || bin >= PITCH_BINS) return;
    this.pitches[bin]++;
    this.voiced++;
  }

  merge(other: VoiceStats): void {
    this.frames += other.frames;
    for (let c = 0; c < CEPSTRA; c++) this.sums[c] += other.sums[c];
    for (let b = 0; b < PITCH_BINS; b++) this.pitches[b] += other.pitches[b];
    this.voiced += other.voiced;
  }

  print(): VoicePrint {
    const frames = Math.max(1, this.frames);
    return { frames: this.frames, cepstra: Array.from(this.sums, (s) => s / frames), pitch: this.medianPitch() };
  }

  private medianPitch(): number | null {
    if (this.voiced < MIN_VOICED) return null;
    let seen = 0;
    for (let b = 0; b < PITCH_BINS; b++) {
      seen += this.pitches[b];
      if (seen * 2 >= this.voiced) return PITCH_LOW + (b + 0.5) * PITCH_BIN;
    }
    return null;
  }
}

/** Distance between two voices in spreads (0: the same print); pitch counts when both have one. */
export function voiceDistance(a: VoicePrint, b: VoicePrint): number {
  let sum = 0;
  for (let c = 0; c < CEPSTRA; c++) sum += ((a.cepstra[c] - b.cepstra[c]) / CEPSTRAL_SPREAD[c]) ** 2;
  if (a.pitch !== null && b.pitch !== null) sum += ((a.pitch - b.pitch) / PITCH_SPREAD) ** 2;
  return Math.sqrt(sum);
}

/** Whether a value read back (a stored profile) is a print this version can compare. */
export function isVoicePrint(value: unknown): value is VoicePrint {
  const print = value as VoicePrint;
  return (
    typeof print === 'object' && print !== null && Number.isInteger(print.frames) && Array.isArray(print.cepstra) &&
    print.cepstra.length === CEPSTRA && print.cepstra.every(Number.isFinite) && (print.pitch === null || Number.isFinite(print.pitch))
  );
}

/** Two prints of one voice as one, each weighing its frames (a learned profile growing visit by visit). */
export function mergePrints(a: VoicePrint, b: VoicePrint): VoicePrint {
  const frames = a.frames + b.frames;
  if (frames === 0) return a;
  const weigh = (x: number, y: number) => (x * a.frames + y * b.frames) / frames;
  const pitch = a.pitch === null ? b.pitch : b.pitch === null ? a.pitch : weigh(a.pitch, b.pitch);
  return { frames, cepstra: a.cepstra.map((c, i) => weigh(c, b.cepstra[i])), pitch };
}
