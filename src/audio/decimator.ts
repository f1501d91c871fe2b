/**
 * 48 kHz → 16 kHz for PCM ingest (pure, streaming): a windowed-sinc low-pass at 7.2 kHz, then every
 * third sample. State carries across calls, so chunk boundaries leave no clicks. The same low-pass takes
 * a track to RNNoise's 48 kHz and back (noise-suppressor.ts).
 */
const FACTOR = 3;
const TAPS = 63;

function designLowPass(): Float64Array {
  const cutoff = 7200 / 48000;
  const taps = new Float64Array(TAPS);
  const mid = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const blackman = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (TAPS - 1));
    taps[i] = sinc * blackman;
    sum += taps[i];
  }
  for (let i = 0; i < TAPS; i++) taps[i] /= sum;
  return taps;
}

/** The windowed-sinc low-pass at 7.2 kHz for 48 kHz (63 taps, delay 31 samples). */
export const LOW_PASS = designLowPass();

/**
 * Streaming 48 → 16 kHz: output n is the low-pass over the 63 input samples ending at input sample
 * `phase + 3n` (those before the first are zeros), rounded to 16 bits. Nothing is allocated per call but
 * the output `process` returns; `processInto` writes into the caller's array.
 */
export class Decimator48To16 {
  /**
   * The last TAPS − 1 samples seen (the next outputs' filter spans reach back into them), then the input
   * being decimated: one buffer kept across calls, grown when an input is longer than any before.
   */
  private work = new Float64Array(TAPS - 1 + 960);
  /** Where the next output's span ends, counted from the next input sample. */
  private phase: number;

  /** `phase` (0–2): the input sample the first output's span ends at (the denoiser's chain uses it to land on whole 16 kHz samples). */
  constructor(phase = 0) {
    this.phase = phase;
  }

  /** How many samples the next `inputLength` input samples give. */
  outputsFor(inputLength: number): number {
    return inputLength > this.phase ? Math.floor((inputLength - 1 - this.phase) / FACTOR) + 1 : 0;
  }

  process(input: Int16Array): Int16Array {
    const out = new Int16Array(this.outputsFor(input.length));
    this.processInto(input, out, 0);
    return out;
  }

  /** Writes the outputs of `input` into `out` from `at`; returns how many (`outputsFor(input.length)`). */
  processInto(input: Int16Array | Float32Array, out: Int16Array, at: number): number {
    const keep = TAPS - 1;
    const length = keep + input.length;
    if (this.work.length < length) {
      const grown = new Float64Array(length);
      grown.set(this.work.subarray(0, keep));
      this.work = grown;
    }
    const work = this.work;
    work.set(input, keep);
    let written = 0;
    let position = this.phase;
    for (; position + TAPS <= length; position += FACTOR) {
      let acc = 0;
      for (let k = 0; k < TAPS; k++) acc += work[position + k] * LOW_PASS[k];
      out[at + written++] = Math.max(-32768, Math.min(32767, Math.round(acc)));
    }
    this.phase = position - input.length;
    work.copyWithin(0, input.length, length);
    return written;
  }
}
