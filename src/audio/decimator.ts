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
