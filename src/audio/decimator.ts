/**
 * 48 kHz → 16 kHz for PCM ingest (pure, streaming): a windowed-sinc low-pass at 7.2 kHz, then every
 * third sample. State carries across calls, so chunk boundaries leave no clicks. And both ways over whole
 * buffers, delay taken out, for a model that runs at 48 kHz (RNNoise): up, each sample followed by two
 * zeros through the same low-pass; down, the low-pass and every third sample.
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

const LOW_PASS = designLowPass();

export class Decimator48To16 {
  private history = new Float64Array(TAPS - 1);
  private phase = 0;

  process(input: Int16Array): Int16Array {
    const buffer = new Float64Array(this.history.length + input.length);
    buffer.set(this.history);
    for (let i = 0; i < input.length; i++) buffer[this.history.length + i] = input[i];
    const out: number[] = [];
    let position = this.phase;
    for (; position + TAPS <= buffer.length; position += FACTOR) {
      let acc = 0;
      for (let k = 0; k < TAPS; k++) acc += buffer[position + k] * LOW_PASS[k];
      out.push(Math.max(-32768, Math.min(32767, Math.round(acc))));
    }
    const keepFrom = buffer.length - (TAPS - 1);
    this.phase = position - keepFrom;
    this.history = buffer.slice(keepFrom);
    return Int16Array.from(out);
  }
}

/**
 * 16 kHz → 48 kHz of a whole buffer (pure): the same low-pass over the zero-stuffed signal, its delay
 * taken out, so output sample 3i is input sample i.
 */
export function upsample16To48(input: Int16Array): Float32Array {
  const out = new Float32Array(input.length * FACTOR);
  const delay = (TAPS - 1) / 2;
  for (let m = 0; m < out.length; m++) {
    const at = m + delay;
    let acc = 0;
    // Taps j with (at − j) a multiple of 3 meet an input sample; the others meet the stuffed zeros.
    for (let j = at % FACTOR; j < TAPS; j += FACTOR) {
      const i = (at - j) / FACTOR;
      if (i >= 0 && i < input.length) acc += input[i] * LOW_PASS[j];
    }
    out[m] = acc * FACTOR;
  }
  return out;
}

/** 48 kHz → 16 kHz of a whole buffer (pure): the low-pass, every third sample, its delay taken out. */
export function downsample48To16(input: Float32Array): Int16Array {
  const out = new Int16Array(Math.floor(input.length / FACTOR));
  const delay = (TAPS - 1) / 2;
  for (let k = 0; k < out.length; k++) {
    const from = k * FACTOR - delay;
    let acc = 0;
    for (let j = Math.max(0, -from); j < TAPS && from + j < input.length; j++) acc += input[from + j] * LOW_PASS[j];
    out[k] = Math.max(-32768, Math.min(32767, Math.round(acc)));
  }
  return out;
}
