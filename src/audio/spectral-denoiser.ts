/**
 * Noise suppression for steady noise (a fan's hiss, an air conditioner, a computer's whirr), cheap enough
 * to run on every track: a short-time spectrum at 16 kHz (32 ms windows every 16 ms, square-root Hann
 * analysis and synthesis, fft.js); the noise's power in each band learnt while speech is absent from it,
 * absence told by the band's smoothed power staying near its minimum over the last 1.5 s (MCRA, Cohen and
 * Berdugo: speech comes and goes, the fan does not); and a Wiener gain per band from a decision-directed
 * estimate of the speech-to-noise ratio (Ephraim and Malah: smoothed over time), weighted by the band's
 * speech presence so that where speech is absent the gain rests on its floor, −40 dB, rather than
 * twinkling with the noise ("musical" noise, which the VAD hears as speech starting). The VAD hears the
 * windows that hold no speech at the floor gain as a whole (`heardGain`); the windows sent to STT keep
 * them as they are (cutting them there too took weak speech with the noise). It costs about 1/30 of
 * RNNoise, which also takes out some of what comes and goes, but is too dear to run on every
 * track (see the README).
 */
import FFT from 'fft.js';
import { BlockDenoiser, type DenoiserOptions } from './noise-suppressor.ts';

const WINDOW = 512;
const HOP = WINDOW / 2;
const BINS = WINDOW / 2 + 1;
/** Output sample n + this is input sample n denoised: a window's first half is final once its second has come. */
export const SPECTRAL_LATENCY_SAMPLES = WINDOW - HOP;
/** The power's smoothing over time before its minimum is taken. */
const SMOOTHING = 0.7;
/** The minimum is taken over SUB_WINDOWS stretches of SUB_WINDOW_FRAMES windows (6 × 16 × 16 ms ≈ 1.5 s). */
const SUB_WINDOW_FRAMES = 16;
const SUB_WINDOWS = 6;
/** A band whose smoothed power is this many times its minimum holds speech. */
const PRESENCE_RATIO = 5;
/** The speech-presence probability's memory from window to window. */
const PRESENCE_SMOOTHING = 0.2;
/** The noise estimate's memory where speech is absent (a time constant of 20 windows, 0.3 s). */
const NOISE_SMOOTHING = 0.95;
/** The decision-directed estimate's memory (how much of the last window's clean speech the ratio keeps). */
const DECISION_DIRECTED = 0.9;
/**
 * The deepest cut (−40 dB): what is left of a 5 dB SNR hiss in the pauses then sits well under −50 dBFS,
 * where the VAD does not hear it as speech.
 */
const MIN_GAIN = 10 ** (-40 / 20);
const LOG_MIN_GAIN = Math.log(MIN_GAIN);

/** Bands under this (the lowest male voice, ~80 Hz, at 31.25 Hz per band) hold only rumble: they get the deepest cut. */
const LOWEST_VOICE_BIN = 3;

/** The voice's bands for the window's speech presence: 94 Hz to 4 kHz. */
const VOICE_BINS = 128;
/**
 * A window whose voice bands hold speech on average this little (their smoothed presence) is a pause, and
 * the VAD hears it at the floor gain; from VOICE_PRESENCE up, as it is; between the two, in proportion.
 * Noise alone gives 0.12 at the median and 0.2 at the 99th percentile (a fan's hiss and mains hum at 10
 * and 5 dB SNR), speech under the hiss 0.5 at the median and 0.23 at the 10th percentile. What is left of
 * the noise in the pauses, about −60 dBFS, the WebRTC VAD otherwise calls speech: a fan's track was one
 * stretch of speech to it, cut only at the windows' maximum length. Stricter (0.25–0.4) left no window on
 * noise alone but lost words at 5 dB SNR (3.7–6.4 % WER in Arabic).
 */
const PAUSE_PRESENCE = 0.2;
const VOICE_PRESENCE = 0.3;

/** Square-root periodic Hann: analysis times synthesis is a Hann, whose halves at a half-window hop sum to 1. */
const ROOT_HANN = Float64Array.from({ length: WINDOW }, (_, n) => Math.sqrt(0.5 - 0.5 * Math.cos((2 * Math.PI * n) / WINDOW)));
const HANN = ROOT_HANN.map((w) => w * w);

/**
 * One track's audio through the spectral suppressor as it streams (pure), `SPECTRAL_LATENCY_SAMPLES`
 * (16 ms) behind. While the model does not run (`auto` on a quiet track) a window passes as it came, so
 * going in and out of it crossfades over a hop, and with neither window running the audio comes out bit
 * for bit as it went in.
 */
export class SpectralDenoiser extends BlockDenoiser {
  private readonly fft = new FFT(WINDOW);
  /** The last window of input, oldest first. */
  private readonly input = new Float64Array(WINDOW);
  private readonly windowed = new Float64Array(WINDOW);
  private readonly spectrum: number[];
  private readonly time: number[];
  /** The windows' sum, overlapping: its first hop is final after each window. */
  private readonly overlap = new Float64Array(WINDOW);
  private readonly out = new Int16Array(HOP);
  private readonly powers = new Float64Array(BINS);
  private readonly smoothed = new Float64Array(BINS);
  /** Each band's noise power, and how likely it holds speech now. */
  private readonly noise = new Float64Array(BINS);
  private readonly presence = new Float64Array(BINS);
  /** The smoothed power's minimum in the stretch going on, and over the stretches before it. */
  private readonly stretchMin = new Float64Array(BINS).fill(Infinity);
  private readonly pastMin = new Float64Array(BINS).fill(Infinity);
  private readonly stretchMins: Float64Array[] = [];
  private stretchFrames = 0;
  /** Last window's clean-speech power per band (its gain² × its power), for the decision-directed ratio. */
  private readonly cleanPower = new Float64Array(BINS);
  /** The noise estimate starts again when the model comes back (the room may have changed meanwhile). */
  private wasEngaged = false;
  /** Windows left whose power starts the estimates instead of joining them. */
  private warmup = 0;
  /** How likely the last window holds speech, 0–1, from its bands' speech presence (what the VAD's view of it is scaled by). */
  private voice = 1;
  /** Windows heard since the estimates started. */
  private windowsHeard = 0;

  constructor(options: DenoiserOptions = {}) {
    super(HOP, SPECTRAL_LATENCY_SAMPLES, options, true);
    this.spectrum = this.fft.createComplexArray() as number[];
    this.time = this.fft.createComplexArray() as number[];
  }

  protected runBlock(block: Int16Array): Int16Array {
    const input = this.input;
    input.copyWithin(0, HOP);
    for (let i = 0; i < HOP; i++) input[HOP + i] = block[i];
    const overlap = this.overlap;
    const out = this.out;
    const before = this.voice;
    if (!this.engaged && !this.wasEngaged) {
      // Neither window runs: the hop comes out as it went in, and the overlap holds what the next window
      // needs should it run (this window's second half as it came).
      for (let n = 0; n < HOP; n++) {
        out[n] = input[n];
        overlap[n] = input[HOP + n] * HANN[HOP + n];
      }
      this.voice = 1;
      this.heardGain = 1;
      return out;
    }
    if (this.engaged) this.addDenoised();
    else {
      for (let n = 0; n < WINDOW; n++) overlap[n] += input[n] * HANN[n];
      this.voice = 1;
    }
    // The hop that comes out is this window's first half and the last one's second: speech in either keeps it.
    this.heardGain = MIN_GAIN ** (1 - Math.max(before, this.voice));
    this.wasEngaged = this.engaged;
    for (let n = 0; n < HOP; n++) out[n] = Math.max(-32768, Math.min(32767, Math.round(overlap[n])));
    overlap.copyWithin(0, HOP);
    overlap.fill(0, HOP);
    return out;
  }

  protected release(): void {}

  /** The window, denoised, added into the overlap. */
  private addDenoised(): void {
    if (!this.wasEngaged) this.forgetNoise();
    const { input, windowed, spectrum, time, overlap } = this;
    for (let n = 0; n < WINDOW; n++) windowed[n] = input[n] * ROOT_HANN[n];
    this.fft.realTransform(spectrum, windowed);
    const powers = this.powers;
    for (let k = 0; k < BINS; k++) powers[k] = spectrum[2 * k] * spectrum[2 * k] + spectrum[2 * k + 1] * spectrum[2 * k + 1];
    this.trackNoise(powers);
    let presence = 0;
    for (let k = LOWEST_VOICE_BIN; k < VOICE_BINS; k++) presence += this.presence[k];
    presence /= VOICE_BINS - LOWEST_VOICE_BIN;
    this.voice = Math.min(1, Math.max(0, (presence - PAUSE_PRESENCE) / (VOICE_PRESENCE - PAUSE_PRESENCE)));
    for (let k = 0; k < BINS; k++) {
      const power = powers[k];
      const noise = Math.max(this.noise[k], 1e-3);
      const posterior = power / noise;
      const prior = DECISION_DIRECTED * (this.cleanPower[k] / noise) + (1 - DECISION_DIRECTED) * Math.max(posterior - 1, 0);
      const wiener = Math.max(MIN_GAIN, prior / (1 + prior));
      // Where speech is likely absent the gain settles on the floor instead of following the noise's
      // own flicker (what a VAD hears as speech starting): the Wiener gain weighted by speech presence.
      const presence = this.presence[k];
      const gain = k < LOWEST_VOICE_BIN || presence < 1e-3 ? MIN_GAIN : Math.exp(presence * Math.log(wiener) + (1 - presence) * LOG_MIN_GAIN);
      this.cleanPower[k] = gain * gain * power;
      spectrum[2 * k] *= gain;
      spectrum[2 * k + 1] *= gain;
    }
    this.fft.completeSpectrum(spectrum);
    this.fft.inverseTransform(time, spectrum);
    for (let n = 0; n < WINDOW; n++) overlap[n] += time[2 * n] * ROOT_HANN[n];
  }

  /** The window's power into each band's smoothed power, its running minimum, speech presence and noise estimate. */
  private trackNoise(powers: Float64Array): void {
    // A stream's first window is half silence before it: the second starts the estimates over.
    const first = this.warmup > 0;
    if (first) this.warmup--;
    // Over the first windows the estimate is their mean, not an average still half its start.
    const memory = Math.min(NOISE_SMOOTHING, this.windowsHeard / (this.windowsHeard + 1));
    this.windowsHeard++;
    for (let k = 0; k < BINS; k++) {
      const power = powers[k];
      const smoothed = first ? power : SMOOTHING * this.smoothed[k] + (1 - SMOOTHING) * power;
      this.smoothed[k] = smoothed;
      if (first || smoothed < this.stretchMin[k]) this.stretchMin[k] = smoothed;
      const present = smoothed > Math.min(this.stretchMin[k], this.pastMin[k]) * PRESENCE_RATIO ? 1 : 0;
      const presence = (this.presence[k] = PRESENCE_SMOOTHING * this.presence[k] + (1 - PRESENCE_SMOOTHING) * present);
      const keep = memory + (1 - memory) * presence;
      this.noise[k] = first ? power : keep * this.noise[k] + (1 - keep) * power;
    }
    if (++this.stretchFrames < SUB_WINDOW_FRAMES) return;
    this.stretchFrames = 0;
    const done = this.stretchMins.length === SUB_WINDOWS ? this.stretchMins.shift()! : new Float64Array(BINS);
    done.set(this.stretchMin);
    this.stretchMins.push(done);
    this.stretchMin.fill(Infinity);
    this.pastMin.fill(Infinity);
    for (const mins of this.stretchMins) for (let k = 0; k < BINS; k++) if (mins[k] < this.pastMin[k]) this.pastMin[k] = mins[k];
  }

  private forgetNoise(): void {
    this.stretchMins.length = 0;
    this.stretchFrames = 0;
    this.stretchMin.fill(Infinity);
    this.pastMin.fill(Infinity);
    this.cleanPower.fill(0);
    this.presence.fill(0);
    this.warmup = WINDOW / HOP;
    this.windowsHeard = 0;
  }
}
