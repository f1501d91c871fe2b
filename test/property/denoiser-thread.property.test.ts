/**
 * RNNoise in worker threads (DenoiserThreads), against the same model on this thread (fast-check, fixed
 * seed): several streams on two workers, random chunkings, flushes anywhere, the event loop turning at
 * random points. Each stream's output is sample for sample the one on this thread, its flushes end at the
 * same samples, and at every moment what came out plus what is held is what went in. A worker that dies
 * loses nothing: every stream's audio comes out whole (denoised up to where the worker stopped, as
 * received after), every flush is answered, and new audio passes through. A worker too slow for its
 * streams sheds some until it keeps up, with the same guarantee for those it lets go.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DenoiserThreads } from '../../src/audio/denoiser-thread.ts';
import { Rnnoise, type StreamDenoiser } from '../../src/audio/noise-suppressor.ts';

const rnnoise = await Rnnoise.load();
const threads = await DenoiserThreads.start(2);

type Step = { push: number } | { flush: true } | { turn: true };

interface Heard {
  audio: Int16Array[];
  /** Samples out when each flush ended. */
  flushedAt: number[];
  out: number;
}

function listen(denoiser: StreamDenoiser, pushed: () => number): Heard {
  const heard: Heard = { audio: [], flushedAt: [], out: 0 };
  denoiser.start({
    audio: (pcm) => {
      heard.audio.push(pcm.slice());
      heard.out += pcm.length;
      assert.is(heard.out + denoiser.heldSamples, pushed(), 'out + held = pushed, as audio comes out');
    },
    flushed: () => heard.flushedAt.push(heard.out),
  });
  return heard;
}

function concat(parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}

function signal(samples: number, seed: number): Int16Array {
  const out = new Int16Array(samples);
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = Math.round(6000 * Math.sin((2 * Math.PI * (200 + (seed % 900)) * i) / 16000) + 2500 * ((s / 2 ** 32) * 2 - 1));
  }
  return out;
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Runs each stream's steps, interleaved, on `make`'s denoisers; the event loop turns where a step says so. */
async function run(scripts: { steps: Step[]; seed: number; auto: boolean }[], make: (auto: boolean) => StreamDenoiser): Promise<{ heard: Heard[]; inputs: Int16Array[] }> {
  const streams = scripts.map(({ steps, seed, auto }) => {
    const denoiser = make(auto);
    const state = { denoiser, pushed: 0, input: signal(steps.reduce((n, s) => n + ('push' in s ? s.push : 0), 0), seed), steps, at: 0, flushes: [] as Promise<void>[] };
    return { ...state, heard: listen(denoiser, () => state.pushed), state };
  });
  for (let k = 0; streams.some((s) => s.state.at < s.steps.length); k++) {
    for (const { state, denoiser, heard } of streams) {
      const step = state.steps[state.at++];
      if (!step) continue;
      if ('push' in step) {
        state.pushed += step.push;
        denoiser.push(state.input.subarray(state.pushed - step.push, state.pushed));
        assert.is(heard.out + denoiser.heldSamples, state.pushed, 'out + held = pushed, after a push');
      } else if ('flush' in step) {
        const asked = heard.flushedAt.length;
        state.flushes.push(new Promise<void>((resolve) => {
          const check = () => (heard.flushedAt.length > asked ? resolve() : setImmediate(check));
          check();
        }));
        denoiser.flush();
      } else await turn();
    }
  }
  for (const s of streams) {
    s.denoiser.flush();
    const asked = s.state.flushes.length + 1;
    while (s.heard.flushedAt.length < asked) await turn();
    s.denoiser.close();
  }
  return { heard: streams.map((s) => s.heard), inputs: streams.map((s) => s.state.input) };
}

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 1200 }).map((push) => ({ push })) },
  { weight: 1, arbitrary: fc.constant({ flush: true as const }) },
  { weight: 3, arbitrary: fc.constant({ turn: true as const }) },
);
const scriptArbitrary = fc.record({ steps: fc.array(stepArbitrary, { minLength: 1, maxLength: 40 }), seed: fc.integer({ min: 1, max: 2 ** 30 }), auto: fc.boolean() });

test('in a worker, each stream comes out sample for sample as on this thread, its flushes where they were asked', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(scriptArbitrary, { minLength: 1, maxLength: 4 }), async (scripts) => {
      const threaded = await run(scripts, (auto) => threads.stream({ auto }));
      const inline = await run(scripts, (auto) => rnnoise.stream({ auto }));
      for (let i = 0; i < scripts.length; i++) {
        const a = concat(threaded.heard[i].audio);
        const b = concat(inline.heard[i].audio);
        assert.is(a.length, threaded.inputs[i].length, 'every sample pushed came out');
        assert.ok(a.every((v, k) => v === b[k]), `stream ${i}: the worker's output is the same as this thread's`);
        assert.equal(threaded.heard[i].flushedAt, inline.heard[i].flushedAt);
      }
    }),
    { numRuns: 40, seed: 20261202 },
  );
});

test('the model engaging and letting go is reported from the worker (auto), and once more at close', async () => {
  const changes: boolean[] = [];
  const denoiser = threads.stream({ auto: true, onEngaged: (engaged) => changes.push(engaged) });
  let pushed = 0;
  const heard = listen(denoiser, () => pushed);
  // 10 s of digital silence: engaged from the start, let go once the floor is known.
  const silence = new Int16Array(320);
  for (let i = 0; i < 500; i++) {
    pushed += silence.length;
    denoiser.push(silence);
    if (i % 25 === 0) await turn();
  }
  denoiser.flush();
  while (heard.flushedAt.length === 0) await turn();
  denoiser.close();
  assert.equal(changes, [true, false]);
});

test('a worker that dies loses nothing: audio comes out whole (denoised, then as received), flushes are answered, new audio passes through', async () => {
  const died: Error[] = [];
  const dying = await DenoiserThreads.start(1, { workerUrl: new URL('../support/dying-denoiser-worker.ts', import.meta.url), onDied: (error) => died.push(error) });
  const input = signal(16000 * 3, 7);
  const reference = rnnoise.stream();
  let pushed = 0;
  const expected = listen(reference, () => pushed);
  const denoiser = dying.stream();
  const heard = listen(denoiser, () => pushed);
  for (let at = 0; at < input.length; at += 320) {
    const chunk = input.subarray(at, at + 320);
    pushed += chunk.length;
    denoiser.push(chunk);
    reference.push(chunk);
    if (at === 320 * 60) {
      denoiser.flush();
      reference.flush();
    }
    if (at % 1600 === 0) await turn();
  }
  denoiser.flush();
  reference.flush();
  for (const until = Date.now() + 20_000; Date.now() < until && (heard.flushedAt.length < 2 || died.length === 0); ) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.is(died.length, 1, 'the worker died');
  assert.is(heard.flushedAt.length, 2, 'both flushes answered');
  const out = concat(heard.audio);
  assert.is(out.length, input.length, 'every sample came out');
  const denoised = concat(expected.audio);
  let k = 0;
  while (k < out.length && out[k] === denoised[k]) k++;
  assert.ok(k > 0, 'the worker denoised the start');
  assert.ok(out.subarray(k).every((v, i) => v === input[k + i]), `from sample ${k} on, the audio as received`);
  assert.is(heard.flushedAt[0], 320 * 61, 'the first flush ended where it was asked');
  // Gone with its worker: the next stream passes audio through at once.
  const after = dying.stream();
  const afterHeard = listen(after, () => 320);
  // Passing through, the audio comes out during the push.
  after.push(input.subarray(0, 320));
  assert.ok(concat(afterHeard.audio).every((v, i) => v === input[i]));
  after.close();
  denoiser.close();
  reference.close();
  await dying.close();
});

test('a worker that cannot keep up sheds streams until it does: nothing lost, the shed ones pass through from then on', async () => {
  const sheddings: number[] = [];
  const slow = await DenoiserThreads.start(1, { workerUrl: new URL('../support/slow-denoiser-worker.ts', import.meta.url), maxLagMs: 100, onShed: (streams) => sheddings.push(streams) });
  const STREAMS = 8;
  // Real time for 6 s, and on until it has kept up for a second after shedding (a loaded machine takes longer).
  const MIN_SECONDS = 6;
  const MAX_SECONDS = 20;
  const inputs = Array.from({ length: STREAMS }, (_, i) => signal(16000 * MAX_SECONDS, 11 + i));
  let pushed = 0;
  const streams = inputs.map(() => {
    const denoiser = slow.stream();
    const reference = rnnoise.stream();
    return { denoiser, reference, heard: listen(denoiser, () => pushed), expected: listen(reference, () => pushed) };
  });
  // Kept up: what each stream has in flight is a turn's worth, not the seconds an overloaded worker piles up.
  const keptUp = () => streams.every((s) => s.denoiser.heldSamples < 16000 / 2);
  let keptUpSince: number | undefined;
  const started = performance.now();
  for (let at = 0; at < 16000 * MAX_SECONDS; at += 320) {
    pushed += 320;
    for (const [i, s] of streams.entries()) (s.denoiser.push(inputs[i].subarray(at, at + 320)), s.reference.push(inputs[i].subarray(at, at + 320)));
    const now = performance.now();
    keptUpSince = sheddings.length > 0 && keptUp() ? (keptUpSince ?? now) : undefined;
    if (pushed >= 16000 * MIN_SECONDS && keptUpSince !== undefined && now - keptUpSince >= 1000) break;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + pushed / 16 - now)));
  }
  for (const s of streams) assert.ok(s.denoiser.heldSamples < 16000 / 2, `${s.denoiser.heldSamples} samples still in flight after ${(pushed / 16000).toFixed(1)} s`);
  const shed = sheddings.reduce((a, b) => a + b, 0);
  assert.ok(shed >= 1 && shed < STREAMS, `shed ${shed} of ${STREAMS} streams (${sheddings.join(', ')})`);
  let passing = 0;
  for (const [i, s] of streams.entries()) {
    s.denoiser.flush();
    s.reference.flush();
    while (s.heard.flushedAt.length < 1) await turn();
    const out = concat(s.heard.audio);
    assert.is(out.length, pushed, 'every sample came out');
    const denoised = concat(s.expected.audio);
    let k = 0;
    while (k < out.length && out[k] === denoised[k]) k++;
    assert.ok(k > 0, 'denoised from the start');
    if (k < out.length) {
      passing++;
      assert.ok(out.subarray(k).every((v, j) => v === inputs[i][k + j]), `stream ${i}: from sample ${k} on, the audio as received`);
    }
    s.denoiser.close();
    s.reference.close();
  }
  assert.is(passing, shed, "the streams shed are the ones passing through");
  console.log(`a worker at 160 % of its core: shed ${sheddings.join(" + ")} of ${STREAMS} streams, kept up after ${(pushed / 16000).toFixed(1)} s`);
  await slow.close();
});

test('a burst (an upload, a resent backlog) that puts a worker behind sheds nothing: it waits for its audio', async () => {
  const sheddings: number[] = [];
  const slow = await DenoiserThreads.start(1, { workerUrl: new URL('../support/slow-denoiser-worker.ts', import.meta.url), maxLagMs: 100, onShed: (streams) => sheddings.push(streams) });
  const input = signal(16000 * 8, 5);
  let pushed = 0;
  const denoiser = slow.stream();
  const reference = rnnoise.stream();
  const heard = listen(denoiser, () => pushed);
  const expected = listen(reference, () => pushed);
  // 8 s of audio in half a second: the worker needs 1.6 s for its blocking alone.
  const started = performance.now();
  for (let at = 0; at < input.length; at += 3200) {
    pushed += 3200;
    denoiser.push(input.subarray(at, at + 3200));
    reference.push(input.subarray(at, at + 3200));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  denoiser.flush();
  reference.flush();
  while (heard.flushedAt.length < 1) await turn();
  assert.equal(sheddings, [], `nothing shed (burst of 8 s in ${Math.round(performance.now() - started)} ms)`);
  const out = concat(heard.audio);
  const denoised = concat(expected.audio);
  assert.is(out.length, input.length);
  assert.ok(out.every((v, i) => v === denoised[i]), 'all of it denoised');
  denoiser.close();
  reference.close();
  await slow.close();
});

test.after(() => threads.close());
test.run();
