/**
 * What a voice sounds like, frame by frame (pure): mel-frequency cepstral coefficients of 16 kHz speech
 * and the voice's pitch, one vector per 20 ms frame over a 32 ms window (the frame and the end of the one
 * before it). The FFT is fft.js's; the mel filterbank, the DCT and the pitch's autocorrelation are a few
 * lines over it, with every buffer allocated once per extractor (it runs on every speech frame of a
 * diarized track). Pitch tells a man's voice from a woman's where the cepstra of a second of speech
 * still vary with what is said.
 */
import FFT from 'fft.js';

export const FEATURE_SAMPLE_RATE = 16000;
/** Samples each vector is computed over: 32 ms. */
const WINDOW = 512;
const MEL_FILTERS = 24;
const MEL_LOW_HZ = 100;
const MEL_HIGH_HZ = 7000;
/** Cepstral coefficients kept, c1… (c0, the loudness, says more about the distance to the microphone than about the voice). */
export const CEPSTRA = 16;
const PRE_EMPHASIS = 0.97;
/** Values per frame: the cepstra, then log2 of the pitch in Hz (NaN when the frame is not voiced). */
export const FEATURES = CEPSTRA + 1;
export const PITCH = CEPSTRA;
/** Pitch is looked for at 8 kHz (pairs of samples averaged) between 60 and 400 Hz. */
const PITCH_RATE = 8000;
const PITCH_WINDOW = WINDOW / 2;
const MIN_LAG = PITCH_RATE / 400;
const MAX_LAG = PITCH_RATE / 60;
/** Normalized autocorrelation a voiced frame reaches at its period. */
const VOICED = 0.5;
/** A shorter period within this fraction of the best is taken (the best is often twice the period). */
const OCTAVE_TOLERANCE = 0.7;

const melOf = (hz: number) => 2595 * Math.log10(1 + hz / 700);
const hzOf = (mel: number) => 700 * (10 ** (mel / 2595) - 1);

/** Triangular mel filters over the FFT bins: for each filter, its first bin and weights. */
function melFilterbank(): { first: number; weights: Float64Array }[] {
  const bins = WINDOW / 2 + 1;
  const low = melOf(MEL_LOW_HZ);
  const high = melOf(MEL_HIGH_HZ);
  const edges = Array.from({ length: MEL_FILTERS + 2 }, (_, i) => (hzOf(low + ((high - low) * i) / (MEL_FILTERS + 1)) * WINDOW) / FEATURE_SAMPLE_RATE);
  return Array.from({ length: MEL_FILTERS }, (_, m) => {
    const [left, centre, right] = [edges[m], edges[m + 1], edges[m + 2]];
    const first = Math.max(0, Math.ceil(left));
    const last = Math.min(bins - 1, Math.floor(right));
    const weights = new Float64Array(Math.max(0, last - first + 1));
    for (let k = first; k <= last; k++) weights[k - first] = k <= centre ? (k - left) / (centre - left) : (right - k) / (right - centre);
    return { first, weights };
  });
}

export class VoiceFeatures {
  private readonly fft = new FFT(WINDOW);
  private readonly input = new Float64Array(WINDOW);
  private readonly spectrum: number[] | Float64Array;
  private readonly hamming = Float64Array.from({ length: WINDOW }, (_, i) => 0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (WINDOW - 1)));
  private readonly filters = melFilterbank();
  private readonly logMel = new Float64Array(MEL_FILTERS);
  private readonly dct = Float64Array.from({ length: CEPSTRA * MEL_FILTERS }, (_, i) => {
    const c = Math.floor(i / MEL_FILTERS) + 1;
    const m = i % MEL_FILTERS;
    return Math.cos((Math.PI * c * (m + 0.5)) / MEL_FILTERS);
  });
  /** The last samples seen: each vector's window reaches back into the frame before. */
  private readonly history = new Float64Array(WINDOW);
  private readonly low = new Float64Array(PITCH_WINDOW);
  private readonly correlation = new Float64Array(MAX_LAG + 2);

  constructor() {
    this.spectrum = this.fft.createComplexArray();
  }

  /**
   * Takes the next frame of the stream (any length up to 512 samples, normally 320) and writes its
   * cepstra into `out` at `offset`. Frames that are not analysed still go through `skip` so the history
   * stays continuous.
   */
  frame(samples: Int16Array, out: Float32Array, offset: number): void {
    this.remember(samples);
    const { input, history, hamming } = this;
    input[0] = history[0] * hamming[0];
    for (let i = 1; i < WINDOW; i++) input[i] = (history[i] - PRE_EMPHASIS * history[i - 1]) * hamming[i];
    this.fft.realTransform(this.spectrum, input);
    const spectrum = this.spectrum;
    for (let m = 0; m < MEL_FILTERS; m++) {
      const { first, weights } = this.filters[m];
      let energy = 1e-3;
      for (let k = 0; k < weights.length; k++) {
        const re = spectrum[2 * (first + k)];
        const im = spectrum[2 * (first + k) + 1];
        energy += weights[k] * (re * re + im * im);
      }
      this.logMel[m] = Math.log(energy);
    }
    for (let c = 0; c < CEPSTRA; c++) {
      let sum = 0;
      for (let m = 0; m < MEL_FILTERS; m++) sum += this.dct[c * MEL_FILTERS + m] * this.logMel[m];
      out[offset + c] = sum;
    }
    out[offset + PITCH] = this.pitch();
  }

  /** log2 of the frame's pitch in Hz, by normalized autocorrelation at 8 kHz; NaN when not voiced. */
  private pitch(): number {
    const { low, history, correlation } = this;
    let energy = 0;
    for (let i = 0; i < PITCH_WINDOW; i++) {
      low[i] = history[2 * i] + history[2 * i + 1];
      energy += low[i] * low[i];
    }
    if (energy === 0) return NaN;
    let best = 0;
    let bestLag = 0;
    for (let lag = MIN_LAG; lag <= MAX_LAG + 1; lag++) {
      let sum = 0;
      for (let i = 0; i + lag < PITCH_WINDOW; i++) sum += low[i] * low[i + lag];
      correlation[lag] = sum / ((energy * (PITCH_WINDOW - lag)) / PITCH_WINDOW);
      if (lag <= MAX_LAG && correlation[lag] > best) {
        best = correlation[lag];
        bestLag = lag;
      }
    }
    if (best < VOICED) return NaN;
    for (let lag = MIN_LAG + 1; lag < bestLag; lag++) {
      const r = correlation[lag];
      if (r >= OCTAVE_TOLERANCE * best && r >= correlation[lag - 1] && r >= correlation[lag + 1]) return Math.log2(PITCH_RATE / lag);
    }
    return Math.log2(PITCH_RATE / bestLag);
  }

  /** A frame that is not analysed (not speech): kept only as the next frame's history. */
  skip(samples: Int16Array): void {
    this.remember(samples);
  }

  private remember(samples: Int16Array): void {
    const n = Math.min(samples.length, WINDOW);
    this.history.copyWithin(0, n);
    for (let i = 0; i < n; i++) this.history[WINDOW - n + i] = samples[samples.length - n + i];
  }
}

/**
 * Which speech frames of a track get their features computed: every one of the first `all`, then one in
 * `every`, at most `max` in all. A diarized track needs every speech frame; a doctor's voice print is the
 * statistics of a sample of them.
 */
export interface SamplingPlan {
  all: number;
  every: number;
  max: number;
}

export const EVERY_SPEECH_FRAME: SamplingPlan = { all: 2 ** 31 - 1, every: 1, max: 2 ** 31 - 1 };

/** A plan followed frame by frame (pure): the same decisions wherever it runs, from the same counts. */
export class SpeechSampler {
  readonly plan: SamplingPlan;
  /** Speech frames heard, and those taken, so far (a track's next connection continues from them). */
  heard: number;
  taken: number;

  constructor(plan: SamplingPlan, heard = 0, taken = 0) {
    this.plan = plan;
    this.heard = heard;
    this.taken = taken;
  }

  /** Counts the frame; true when its features are wanted. */
  wants(isSpeech: boolean): boolean {
    if (!isSpeech) return false;
    const heard = this.heard++;
    const { all, every, max } = this.plan;
    if ((heard >= all && heard % every !== 0) || this.taken >= max) return false;
    this.taken++;
    return true;
  }
}
