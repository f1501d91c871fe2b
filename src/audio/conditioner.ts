/**
 * Conditions a window's audio for the recognizer (pure; the recording keeps the original): what a
 * phone a metre from a quiet patient, a fan and the mains leave in a clinic's audio, taken out before
 * Whisper hears it. In order:
 *  1. high-pass: DC and rumble below `highPassHz` (two cascaded Butterworth sections, 24 dB/octave);
 *  2. hum notch: when the window shows mains hum (50 or 60 Hz standing out of its neighbourhood, measured
 *     with Goertzel filters), a narrow notch at it and each harmonic up to `humHarmonics`;
 *  3. loudness: the gain that brings the RMS of the speech stretches to `targetDbfs` (never more than
 *     `maxGainDb`, and none at all without `minSpeechMs` of speech above a microphone's floor: noise is
 *     never amplified), then a
 *     peak limiter (smooth gain reduction above `peakDbfs`, so nothing clips).
 * Each step can be switched off. The filters run at the window's sample rate on float samples.
 */

export interface ConditionerOptions {
  sampleRate: number;
  /** 0: no high-pass. Default 80. */
  highPassHz: number;
  /** Detect mains hum and notch it out. Default true. */
  humNotch: boolean;
  /** Harmonics notched (the fundamental included). Default 10. */
  humHarmonics: number;
  /** Hum must stand this far above the spectrum beside it to be notched, dB. Default 12. */
  humProminenceDb: number;
  /** Loudness normalization on. Default true. */
  normalize: boolean;
  /** RMS of the speech after normalization, dBFS. Default −20. */
  targetDbfs: number;
  /** Largest gain applied, dB. Default 30. */
  maxGainDb: number;
  /** Speech needed before any gain is applied, ms. Default 200. */
  minSpeechMs: number;
  /** Speech quieter than this is a microphone's floor, not a voice: not amplified, dBFS. Default −65. */
  minSpeechDbfs: number;
  /** Peaks are limited to this, dBFS. Default −1. */
  peakDbfs: number;
}

export const DEFAULT_CONDITIONER_OPTIONS: Omit<ConditionerOptions, 'sampleRate'> = {
  highPassHz: 80,
  humNotch: true,
  humHarmonics: 10,
  humProminenceDb: 12,
  normalize: true,
  targetDbfs: -20,
  maxGainDb: 30,
  minSpeechMs: 200,
  minSpeechDbfs: -65,
  peakDbfs: -1,
};

/** What conditioning did to one window (for metrics and tests). */
export interface Conditioning {
  /** The mains frequency notched out, if any. */
  humHz?: 50 | 60;
  /** Gain applied, dB (0 when normalization is off or found too little speech). */
  gainDb: number;
  /** RMS of the speech stretches before conditioning, dBFS (undefined without speech). */
  speechDbfs?: number;
}

/** A biquad section (RBJ cookbook), run in place over `x`. */
class Biquad {
  private readonly b0: number;
  private readonly b1: number;
  private readonly b2: number;
  private readonly a1: number;
  private readonly a2: number;
  /** State between `step` calls (a stream's filter). */
  private x1 = 0;
  private x2 = 0;
  private y1 = 0;
  private y2 = 0;

  constructor(b0: number, b1: number, b2: number, a1: number, a2: number) {
    this.b0 = b0;
    this.b1 = b1;
    this.b2 = b2;
    this.a1 = a1;
    this.a2 = a2;
  }

  static highPass(hz: number, rate: number, q: number): Biquad {
    const w0 = (2 * Math.PI * hz) / rate;
    const alpha = Math.sin(w0) / (2 * q);
    const cos = Math.cos(w0);
    const a0 = 1 + alpha;
    return new Biquad((1 + cos) / 2 / a0, -(1 + cos) / a0, (1 + cos) / 2 / a0, (-2 * cos) / a0, (1 - alpha) / a0);
  }

  static notch(hz: number, rate: number, q: number): Biquad {
    const w0 = (2 * Math.PI * hz) / rate;
    const alpha = Math.sin(w0) / (2 * q);
    const cos = Math.cos(w0);
    const a0 = 1 + alpha;
    return new Biquad(1 / a0, (-2 * cos) / a0, 1 / a0, (-2 * cos) / a0, (1 - alpha) / a0);
  }

  /** Filters the next samples of a stream in place, continuing from the previous call's state. */
  step(x: Float32Array): void {
    const { b0, b1, b2, a1, a2 } = this;
    let { x1, x2, y1, y2 } = this;
    for (let i = 0; i < x.length; i++) {
      const input = x[i];
      const y = b0 * input + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
      x2 = x1;
      x1 = input;
      y2 = y1;
      y1 = y;
      x[i] = y;
    }
    this.x1 = x1;
    this.x2 = x2;
    this.y1 = y1;
    this.y2 = y2;
  }

  /**
   * Filters `x` in place, a whole window, from a fresh state. The filter first runs over the window's
   * opening `warmUp` samples played backwards (output discarded), so it starts settled: a narrow notch
   * takes ~0.2 s to ring up, and a window that opens on hum would otherwise carry it through its first
   * syllables.
   */
  run(x: Float32Array, warmUp = 0): void {
    this.x1 = this.x2 = this.y1 = this.y2 = 0;
    this.step(x.slice(0, Math.min(warmUp, x.length)).reverse());
    this.step(x);
  }
}

/** Power at `hz` over `x` (Goertzel), per sample. */
export function tonePower(x: Float32Array, hz: number, rate: number): number {
  const coefficient = 2 * Math.cos((2 * Math.PI * hz) / rate);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < x.length; i++) {
    const s = x[i] + coefficient * s1 - s2;
    s2 = s1;
    s1 = s;
  }
  return (s1 * s1 + s2 * s2 - coefficient * s1 * s2) / (x.length * x.length);
}

/**
 * `tonePower` at `hz` and at `hz ± offset`, in one pass: three independent recurrences the processor
 * runs side by side (about three times faster than three passes; the same arithmetic, so the same powers).
 */
function tonePowersAround(x: Float32Array, hz: number, offset: number, rate: number): { at: number; beside: number } {
  const cc = 2 * Math.cos((2 * Math.PI * hz) / rate);
  const cl = 2 * Math.cos((2 * Math.PI * (hz - offset)) / rate);
  const ch = 2 * Math.cos((2 * Math.PI * (hz + offset)) / rate);
  let c1 = 0;
  let c2 = 0;
  let l1 = 0;
  let l2 = 0;
  let h1 = 0;
  let h2 = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const c = v + cc * c1 - c2;
    c2 = c1;
    c1 = c;
    const l = v + cl * l1 - l2;
    l2 = l1;
    l1 = l;
    const h = v + ch * h1 - h2;
    h2 = h1;
    h1 = h;
  }
  const n2 = x.length * x.length;
  const power = (s1: number, s2: number, coefficient: number) => (s1 * s1 + s2 * s2 - coefficient * s1 * s2) / n2;
  return { at: power(c1, c2, cc), beside: (power(l1, l2, cl) + power(h1, h2, ch)) / 2 };
}

/**
 * The mains frequency whose fundamental and first harmonics stand `prominenceDb` above the spectrum
 * beside them (±15 Hz), and no more than 40 dB under the window's level, or undefined. Needs at least half a second: shorter windows are left alone.
 */
export function detectHum(x: Float32Array, rate: number, prominenceDb: number): 50 | 60 | undefined {
  if (x.length < rate / 2) return undefined;
  let total = 0;
  for (let i = 0; i < x.length; i++) total += x[i] * x[i];
  // Hum 40 dB under the window's level is no matter (and a spectrum with nothing there is only rounding).
  const floor = (total / x.length) * 1e-4;
  let best: { hz: 50 | 60; prominence: number } | undefined;
  for (const hz of [50, 60] as const) {
    let hum = 0;
    let beside = 0;
    for (let harmonic = 1; harmonic <= 3; harmonic++) {
      const powers = tonePowersAround(x, hz * harmonic, 15, rate);
      hum += powers.at;
      beside += powers.beside;
    }
    const prominence = 10 * Math.log10((hum + 1e-12) / (beside + 1e-12));
    if (hum >= floor && prominence >= prominenceDb && (!best || prominence > best.prominence)) best = { hz, prominence };
  }
  return best?.hz;
}

const dbfs = (rms: number) => 20 * Math.log10(rms / 32768 + 1e-12);

/**
 * The window's audio conditioned for STT (a new array; `audio` is not changed), with what was done.
 * `speech`: the window's speech stretches, ms from its start (what the loudness is measured over).
 */
export function conditionWindow(audio: Int16Array, speech: readonly (readonly [number, number])[], options: ConditionerOptions): { audio: Int16Array; conditioning: Conditioning } {
  const rate = options.sampleRate;
  const x = new Float32Array(audio);
  if (options.highPassHz > 0) {
    // Butterworth, 4th order: two sections with the Q of its poles.
    Biquad.highPass(options.highPassHz, rate, 0.5412).run(x, rate / 10);
    Biquad.highPass(options.highPassHz, rate, 1.3066).run(x, rate / 10);
  }
  const conditioning: Conditioning = { gainDb: 0 };
  if (options.humNotch) {
    // Hum is steady: a second of the window's middle tells as much as all of it, at a fraction of the cost.
    const middle = Math.max(0, Math.floor((x.length - rate) / 2));
    const humHz = detectHum(x.subarray(middle, middle + rate), rate, options.humProminenceDb);
    if (humHz) {
      conditioning.humHz = humHz;
      for (let harmonic = 1; harmonic <= options.humHarmonics && humHz * harmonic < rate / 2 - 100; harmonic++) Biquad.notch(humHz * harmonic, rate, 30).run(x, rate / 2);
    }
  }
  let sum = 0;
  let count = 0;
  for (const [a, b] of speech) {
    const from = Math.max(0, Math.floor((a * rate) / 1000));
    const to = Math.min(x.length, Math.ceil((b * rate) / 1000));
    for (let i = from; i < to; i++) sum += x[i] * x[i];
    count += Math.max(0, to - from);
  }
  if (count > 0) conditioning.speechDbfs = dbfs(Math.sqrt(sum / count));
  if (options.normalize && conditioning.speechDbfs !== undefined && conditioning.speechDbfs >= options.minSpeechDbfs && (count * 1000) / rate >= options.minSpeechMs) {
    conditioning.gainDb = Math.max(0, Math.min(options.maxGainDb, options.targetDbfs - conditioning.speechDbfs));
  }
  const gain = 10 ** (conditioning.gainDb / 20);
  const limit = 32768 * 10 ** (options.peakDbfs / 20);
  const out = new Int16Array(x.length);
  const knee = limit / 2;
  for (let i = 0; i < x.length; i++) {
    const sample = x[i] * gain;
    out[i] = sample <= knee && sample >= -knee ? Math.round(sample) : limitPeak(sample, limit);
  }
  return { audio: out, conditioning };
}

/**
 * A soft limiter: samples below half the limit pass unchanged; above it they bend smoothly toward the
 * limit (never reaching past it), so a loud syllable after normalization is rounded, not clipped.
 */
function limitPeak(sample: number, limit: number): number {
  const knee = limit / 2;
  const magnitude = Math.abs(sample);
  if (magnitude <= knee) return Math.round(sample);
  const over = (magnitude - knee) / (limit - knee);
  const bent = knee + (limit - knee) * Math.tanh(over);
  return Math.round(Math.sign(sample) * bent);
}

/** Hum is looked for in the first half second of every this many (it is steady; the check costs more than the notches). */
const HUM_CHECK_EVERY = 8;

/**
 * A track's audio as the VAD should hear it, frame by frame: notched once mains hum is found (looked
 * for in half a second of every four, so hum that starts mid-visit is caught within a few seconds, and
 * confirmed in the half second after: a voice can pass one check).
 * Under hum the WebRTC VAD calls everything speech, or opens windows on the hum's swells; through this
 * it cuts what it cuts on clean audio (`npm run bench:conditioning`; a high-pass in front of it changed
 * nothing there: the WebRTC VAD filters low frequencies itself). Without hum the frame passes as it is,
 * at the cost of gathering the half seconds checked. The returned frame may be reused by the next call;
 * with frames that divide half a second (20 ms ones do) the output does not depend on where frames are cut.
 */
export class TrackFilter {
  private readonly options: ConditionerOptions;
  private notches: Biquad[] = [];
  private humHz: 50 | 60 | undefined;
  /** Hum found by the last check and not yet by a second one. */
  private unconfirmed: 50 | 60 | undefined;
  /** The half second being gathered for the next check. */
  private readonly half: Float32Array;
  /** Samples into the current check cycle (its first half second is gathered). */
  private cycleAt = 0;
  private readonly cycle: number;
  private buffer = new Float32Array(0);
  private out = new Int16Array(0);

  constructor(options: ConditionerOptions) {
    this.options = options;
    this.half = new Float32Array(options.humNotch ? options.sampleRate / 2 : 0);
    this.cycle = this.half.length * HUM_CHECK_EVERY;
  }

  /** The mains frequency being notched out, if any. */
  get hum(): 50 | 60 | undefined {
    return this.humHz;
  }

  filter(frame: Int16Array): Int16Array {
    const halfGathered = this.half.length > 0 && this.gather(frame);
    let heard = frame;
    if (this.notches.length > 0) {
      if (this.buffer.length !== frame.length) {
        this.buffer = new Float32Array(frame.length);
        this.out = new Int16Array(frame.length);
      }
      const x = this.buffer;
      for (let i = 0; i < frame.length; i++) x[i] = frame[i];
      for (const notch of this.notches) notch.step(x);
      for (let i = 0; i < x.length; i++) this.out[i] = Math.max(-32768, Math.min(32767, Math.round(x[i])));
      heard = this.out;
    }
    // Notches found now apply from the next frame: the output never depends on where frames are cut.
    if (halfGathered) this.checkForHum();
    return heard;
  }

  /** Copies what falls in the cycle's first half second; true when this frame completed it. */
  private gather(frame: Int16Array): boolean {
    const half = this.half.length;
    if (this.cycleAt >= half && this.cycleAt + frame.length < this.cycle) {
      this.cycleAt += frame.length;
      return false;
    }
    let completed = false;
    for (let i = 0; i < frame.length; i++) {
      if (this.cycleAt < half) {
        this.half[this.cycleAt] = frame[i];
        completed ||= this.cycleAt === half - 1;
      }
      this.cycleAt = (this.cycleAt + 1) % this.cycle;
    }
    return completed;
  }

  private checkForHum(): void {
    const rate = this.options.sampleRate;
    const found = detectHum(this.half, rate, this.options.humProminenceDb);
    const unconfirmed = this.unconfirmed;
    this.unconfirmed = undefined;
    // A check without hum (the fan switched off) keeps the notches: one more check decides nothing.
    if (!found || found === this.humHz) return;
    if (found !== unconfirmed) {
      // A voice held on 100 or 120 Hz can pass for hum for half a second (the corpus's clean tracks did,
      // once a minute): the very next half second is checked, and only hum heard in both is notched.
      this.unconfirmed = found;
      this.cycleAt = 0;
      return;
    }
    this.humHz = found;
    this.notches = [];
    for (let harmonic = 1; harmonic <= this.options.humHarmonics && found * harmonic < rate / 2 - 100; harmonic++) this.notches.push(Biquad.notch(found * harmonic, rate, 30));
  }
}
