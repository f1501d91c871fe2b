/**
 * Noise suppression on a streaming track, RNNoise and the spectral suppressor alike (fast-check, fixed
 * seed), over random signals and random chunkings:
 *  - output sample i is input sample i: nothing is shifted, dropped or added (after a flush every input
 *    sample is out, and at any point what is out plus what is held is what went in, the hold bounded by
 *    the chain's lag and one 10 ms block);
 *  - the output does not depend on how the input is chunked;
 *  - flushing mid-stream (a hole in the audio) gives back exactly what is held, and the stream goes on;
 *  - silence stays (near) silence, and nothing leaves the 16-bit range;
 *  - the spectral suppressor never gives out more than came in (over a signal, within 0.5 dB: its gains
 *    are at most 1), so a tone or a hiss is never made louder; what the VAD hears of its output is that
 *    output sample for sample at a gain of at most 1, and the output itself where the model does not run;
 *    under a fan's hiss the VAD hears the pauses as pauses (the windows cut where the clean track's are).
 * And on the corpus: speech through it lines up with the speech that went in (the cross-correlation
 * peaks at lag 0), and a fan's hiss at 10 dB SNR comes out at least 10 dB lower in the pauses while the
 * speech keeps its level within 3 dB. Through VoiceWindows, the track time (receivedMs) stays that of the
 * audio pushed, with the denoiser's hold counted in. In `auto` mode the model runs over a track's first
 * seconds: on a clean recording (its pauses quiet) it lets go within 6 s, and from there the audio comes
 * out bit for bit as it went in; under a fan's hiss it keeps running; when the fan stops it lets go, and
 * when a fan starts on a quiet track it runs again within 10 s; a floor between the two thresholds (a
 * faint hiss at -55 dBFS) leaves it as it was, running or not.
 */
import { readFile } from 'node:fs/promises';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ensureCorpus, loadReference } from '../../scripts/make-corpus.ts';
import { DENOISER_LATENCY_SAMPLES, Rnnoise, denoiseWhole, streamOn, type BlockDenoiser, type DenoiserOptions } from '../../src/audio/noise-suppressor.ts';
import { SPECTRAL_LATENCY_SAMPLES, SpectralDenoiser } from '../../src/audio/spectral-denoiser.ts';
import { WebRtcVad } from '../../src/audio/vad.ts';
import { decodeWav } from '../../src/audio/wav.ts';
import { VoiceWindows } from '../../src/segmenter/voice-windows.ts';

const RUNS = { numRuns: 60, seed: 20261202 };
const rnnoise = await Rnnoise.load();

/** Each model: a track's denoiser, its lag and its block. */
const MODELS: { name: string; track(options?: DenoiserOptions): BlockDenoiser; latency: number; block: number }[] = [
  { name: 'RNNoise', track: (options) => rnnoise.track(options), latency: DENOISER_LATENCY_SAMPLES, block: 160 },
  { name: 'spectral', track: (options) => new SpectralDenoiser(options), latency: SPECTRAL_LATENCY_SAMPLES, block: 256 },
];

const signalArbitrary = fc.record({
  seconds: fc.double({ min: 0.01, max: 1.5, noNaN: true }),
  tone: fc.integer({ min: 80, max: 3000 }),
  level: fc.integer({ min: 0, max: 20000 }),
  noise: fc.integer({ min: 0, max: 3000 }),
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
});

function signal({ seconds, tone, level, noise, seed }: { seconds: number; tone: number; level: number; noise: number; seed: number }): Int16Array {
  const out = new Int16Array(Math.round(seconds * 16000));
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = Math.round(level * Math.sin((2 * Math.PI * tone * i) / 16000) + noise * ((s / 2 ** 32) * 2 - 1));
  }
  return out;
}

/** Cuts `x` into chunks of the given sizes (cycled), as a transport would. */
function chunks(x: Int16Array, sizes: number[]): Int16Array[] {
  const out: Int16Array[] = [];
  for (let at = 0, k = 0; at < x.length; k++) {
    const n = sizes[k % sizes.length];
    out.push(x.subarray(at, at + n));
    at += n;
  }
  return out;
}

function concat(parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}

/** A recording through an auto-mode denoiser in 20 ms chunks: its output and when the model started or stopped. */
function runAuto(model: (typeof MODELS)[number], x: Int16Array): { out: Int16Array; changes: { engaged: boolean; atS: number }[] } {
  const changes: { engaged: boolean; atS: number }[] = [];
  let pushed = 0;
  const denoiser = model.track({ auto: true, onEngaged: (engaged) => changes.push({ engaged, atS: pushed / 16000 }) });
  const parts: Int16Array[] = [];
  for (; pushed < x.length; ) {
    const chunk = x.subarray(pushed, pushed + 320);
    pushed += chunk.length;
    parts.push(denoiser.process(chunk));
  }
  parts.push(denoiser.flush());
  const before = changes.length;
  denoiser.close();
  return { out: concat(parts), changes: changes.slice(0, before) };
}

for (const model of MODELS) {
  test(`${model.name}: every sample comes out once, at its own index, whatever the chunking; the hold is bounded`, () => {
    fc.assert(
      fc.property(signalArbitrary, fc.array(fc.integer({ min: 1, max: 2000 }), { minLength: 1, maxLength: 8 }), (spec, sizes) => {
        const x = signal(spec);
        const whole = denoiseWhole(model.track(), x);
        assert.is(whole.length, x.length);
        const denoiser = model.track({ auto: spec.seed % 2 === 0 });
        const parts: Int16Array[] = [];
        let pushed = 0;
        let out = 0;
        for (const chunk of chunks(x, sizes)) {
          const part = denoiser.process(chunk);
          parts.push(part);
          pushed += chunk.length;
          out += part.length;
          assert.is(out + denoiser.heldSamples, pushed);
          assert.ok(denoiser.heldSamples < model.latency + model.block, `held ${denoiser.heldSamples}`);
        }
        parts.push(denoiser.flush());
        assert.is(denoiser.heldSamples, 0);
        denoiser.close();
        // Auto mode runs the model over a track's first seconds: the same output.
        assert.equal(concat(parts), whole);
      }),
      RUNS,
    );
  });

  test(`${model.name}: a flush mid-stream gives back what is held; the stream goes on after it`, () => {
    fc.assert(
      fc.property(fc.array(signalArbitrary, { minLength: 1, maxLength: 4 }), (specs) => {
        const denoiser = model.track();
        for (const spec of specs) {
          const x = signal(spec);
          const held = denoiser.heldSamples;
          const head = denoiser.process(x);
          const rest = denoiser.flush();
          assert.is(held, 0);
          assert.is(head.length + rest.length, x.length);
          for (const part of [head, rest]) for (const v of part) assert.ok(Number.isInteger(v) && v >= -32768 && v <= 32767);
        }
        denoiser.close();
      }),
      RUNS,
    );
  });

  test(`${model.name}: silence stays silence`, () => {
    const out = denoiseWhole(model.track(), new Int16Array(16000));
    assert.ok(out.every((v) => Math.abs(v) <= 1), `peak ${Math.max(...out.map(Math.abs))}`);
  });

  test(`${model.name}: speech lines up with what went in; a fan\'s hiss goes down in the pauses, the speech keeps its level`, async () => {
    const corpusDir = await ensureCorpus();
    const clean = decodeWav(await readFile(`${corpusDir}/en/doctor.wav`)).samples.subarray(0, 16000 * 20);
    const noisy = decodeWav(await readFile(`${corpusDir}/en/doctor-fan10.wav`)).samples.subarray(0, 16000 * 20);
    const words = (await loadReference('en')).tracks.doctor.filter((w) => w.endMs < 20000);
    const out = denoiseWhole(model.track(), clean);
    let best = -Infinity;
    let bestLag = 0;
    for (let lag = -40; lag <= 40; lag++) {
      let sum = 0;
      for (let i = 1000; i < 16000 * 10; i++) sum += clean[i] * out[i + lag];
      if (sum > best) [best, bestLag] = [sum, lag];
    }
    assert.is(bestLag, 0);
    const denoised = denoiseWhole(model.track(), noisy);
    const inWords = (i: number) => words.some((w) => i >= w.startMs * 16 - 1600 && i < w.endMs * 16 + 1600);
    const level = (x: Int16Array, speech: boolean) => {
      let sum = 0;
      let n = 0;
      for (let i = 0; i < x.length; i++) if (inWords(i) === speech) (sum += x[i] * x[i]), n++;
      return 10 * Math.log10(sum / n + 1);
    };
    assert.ok(level(noisy, false) - level(denoised, false) >= 10, `pauses ${level(noisy, false).toFixed(1)} → ${level(denoised, false).toFixed(1)} dB`);
    assert.ok(Math.abs(level(denoised, true) - level(clean, true)) <= 3, `speech ${level(clean, true).toFixed(1)} (clean) vs ${level(denoised, true).toFixed(1)} dB`);
  });

  test(`${model.name}: auto: quiet recordings let the model go within seconds and pass untouched; a fan keeps it running`, async () => {
    const corpusDir = await ensureCorpus();
    const clean = decodeWav(await readFile(`${corpusDir}/en/doctor.wav`)).samples;
    const fan = decodeWav(await readFile(`${corpusDir}/en/doctor-fan10.wav`)).samples;
    const cleanRun = runAuto(model, clean);
    assert.equal(cleanRun.changes.map((c) => c.engaged), [true, false]);
    assert.ok(cleanRun.changes[1].atS <= 6, `let go at ${cleanRun.changes[1].atS} s`);
    const from = Math.ceil(cleanRun.changes[1].atS * 16000) + 16000;
    assert.equal(cleanRun.out.subarray(from), clean.subarray(from));
    // The fan for 30 s, then the clean recording's own quiet (the fan switched off), then the fan again.
    const run = runAuto(model, concat([fan.subarray(0, 16000 * 30), clean.subarray(16000 * 30, 16000 * 60), fan.subarray(16000 * 60, 16000 * 90)]));
    const changes = run.changes;
    assert.equal(changes.map((c) => c.engaged), [true, false, true], JSON.stringify(changes));
    assert.ok(changes[1].atS > 30 && changes[1].atS <= 40, `let go at ${changes[1].atS} s`);
    assert.ok(changes[2].atS > 60 && changes[2].atS <= 70, `ran again at ${changes[2].atS} s`);
    console.log(`${model.name} auto: clean track let go at ${cleanRun.changes[1].atS} s; fan off at 30 s → let go at ${changes[1].atS} s; on at 60 s → ran again at ${changes[2].atS} s`);
  });

  test(`${model.name}: auto: a floor between the thresholds (a faint hiss at -55 dBFS) keeps the model as it was, running or not`, async () => {
    const corpusDir = await ensureCorpus();
    const clean = decodeWav(await readFile(`${corpusDir}/en/doctor.wav`)).samples;
    const fan = decodeWav(await readFile(`${corpusDir}/en/doctor-fan10.wav`)).samples;
    // Gaussian hiss at -55 dBFS RMS (sum of four uniforms): its quietest 10 ms stay within about 2 dB of it.
    const faint = (x: Int16Array) => {
      const rms = 32768 * 10 ** (-55 / 20);
      let s = 7;
      const uniform = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
      return x.map((v) => Math.max(-32768, Math.min(32767, Math.round(v + rms * Math.sqrt(3 / 4) * (uniform() + uniform() + uniform() + uniform())))));
    };
    const part = (x: Int16Array, fromS: number) => x.subarray(fromS * 16000, (fromS + 20) * 16000);
    // The fan, then the faint hiss (stays on), the room's own quiet (let go), the faint hiss (stays off), the fan (on again).
    const run = runAuto(model, concat([part(fan, 0), faint(part(clean, 20)), part(clean, 40), faint(part(clean, 60)), fan.subarray(80 * 16000, 99 * 16000)]));
    const changes = run.changes;
    assert.equal(changes.map((c) => c.engaged), [true, false, true], JSON.stringify(changes));
    assert.ok(changes[1].atS > 40 && changes[1].atS <= 50, `let go at ${changes[1].atS} s`);
    assert.ok(changes[2].atS > 80 && changes[2].atS <= 90, `ran again at ${changes[2].atS} s`);
  });

  test(`${model.name}: through VoiceWindows the track time is the audio pushed, the hold counted in`, () => {
    fc.assert(
      fc.property(signalArbitrary, fc.array(fc.integer({ min: 1, max: 1500 }), { minLength: 1, maxLength: 5 }), (spec, sizes) => {
        const x = signal(spec);
        const voice = new VoiceWindows(new WebRtcVad(16000, 2), { sampleRate: 16000 }, { window: () => undefined }, streamOn(model.track()));
        let pushed = 0;
        for (const chunk of chunks(x, sizes)) {
          voice.push(chunk);
          pushed += chunk.length;
          assert.ok(Math.abs(voice.receivedMs - pushed / 16) < 1e-9, `${voice.receivedMs} ms vs ${pushed / 16} ms pushed`);
        }
        voice.close();
        assert.is(voice.positionMs, Math.ceil(x.length / 320) * 20);
      }),
      RUNS,
    );
  });
}

test('spectral: never more out than in, so a tone or a hiss is never made louder', () => {
  fc.assert(
    fc.property(signalArbitrary, fc.boolean(), (spec, auto) => {
      const x = signal({ ...spec, seconds: spec.seconds + 0.5 });
      const y = denoiseWhole(new SpectralDenoiser({ auto }), x);
      const energy = (v: Int16Array) => v.reduce((sum, s) => sum + s * s, 0);
      assert.ok(energy(y) <= energy(x) * 10 ** (0.5 / 10) + y.length, `${energy(y)} out vs ${energy(x)} in`);
    }),
    RUNS,
  );
});

test('spectral: the VAD hears the output at a gain of at most 1, the output itself where the model does not run', () => {
  fc.assert(
    fc.property(signalArbitrary, fc.array(fc.integer({ min: 1, max: 2000 }), { minLength: 1, maxLength: 8 }), (spec, sizes) => {
      const x = signal({ ...spec, seconds: spec.seconds * 4 });
      const denoiser = new SpectralDenoiser({ auto: spec.seed % 2 === 0 });
      let ratio = 0;
      const check = (out: Int16Array) => {
        const heard = denoiser.lastHeard!;
        assert.is(heard.length, out.length);
        for (let i = 0; i < out.length; i++) {
          assert.ok(Math.abs(heard[i]) <= Math.abs(out[i]), `heard ${heard[i]} louder than ${out[i]}`);
          if (out[i] !== 0) ratio = Math.max(ratio, heard[i] / out[i]);
        }
      };
      for (const chunk of chunks(x, sizes)) check(denoiser.process(chunk));
      check(denoiser.flush());
      denoiser.close();
    }),
    RUNS,
  );
  const quiet = new SpectralDenoiser({ auto: true });
  // A tone with pauses of silence: the floor says quiet, the model lets go at 4 s.
  const clean = signal({ seconds: 8, tone: 300, level: 3000, noise: 0, seed: 5 }).map((v, i) => (Math.floor(i / 8000) % 2 === 0 ? v : 0));
  const out = quiet.process(clean);
  const from = 16000 * 7;
  assert.equal(quiet.lastHeard!.subarray(from), out.subarray(from), 'let go, the VAD hears the audio as it comes out');
  quiet.close();
});

test('spectral: under a fan\'s hiss the VAD hears the pauses: the windows are cut where the clean track\'s are, none on the hiss alone', async () => {
  const corpusDir = await ensureCorpus();
  const words = (await loadReference('en')).tracks.doctor;
  const cut = async (file: string) => {
    const samples = decodeWav(await readFile(`${corpusDir}/en/${file}.wav`)).samples;
    const windows: { startMs: number; endMs: number }[] = [];
    const voice = new VoiceWindows(new WebRtcVad(16000, 2), { sampleRate: 16000 }, { window: (w) => void (w.kind === 'final' && windows.push(w)) }, streamOn(new SpectralDenoiser({ auto: true })));
    for (let i = 0; i < samples.length; i += 320) voice.push(samples.subarray(i, i + 320));
    await voice.close();
    return windows;
  };
  const clean = await cut('doctor');
  for (const variant of ['fan10', 'fan5']) {
    const noisy = await cut(`doctor-${variant}`);
    const speech = noisy.filter((w) => words.some((word) => word.endMs > w.startMs && word.startMs < w.endMs));
    const onNoise = noisy.length - speech.length;
    assert.is(speech.length, clean.length, `${variant}: ${speech.length} windows with speech, ${clean.length} clean`);
    for (let i = 0; i < clean.length; i++) assert.ok(Math.abs(speech[i].startMs - clean[i].startMs) <= 300 && Math.abs(speech[i].endMs - clean[i].endMs) <= 300, `${variant}: window ${i} ${speech[i].startMs}–${speech[i].endMs} vs ${clean[i].startMs}–${clean[i].endMs} ms`);
    assert.ok(onNoise <= 2, `${variant}: ${onNoise} windows on the hiss alone`);
  }
});

test.run();
