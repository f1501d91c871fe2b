/**
 * The streaming 48 → 16 kHz decimator (fast-check, fixed seed), over random signals, random chunkings and
 * each starting phase: output n is the low-pass over the 63 input samples ending at `phase + 3n` (zeros
 * before the first), computed here directly over the whole signal; the output does not depend on how the
 * input is chunked, nor on whether it comes from `process` or is written into a caller's array; each call
 * gives `outputsFor` samples; nothing leaves the 16-bit range.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Decimator48To16, LOW_PASS } from '../../src/audio/decimator.ts';

const RUNS = { numRuns: 200, seed: 20261204 };

const signalArbitrary = fc.oneof(
  fc.array(fc.integer({ min: -32768, max: 32767 }), { maxLength: 4000 }),
  // Full-scale square waves: sums that overshoot and must be clipped.
  fc.record({ length: fc.integer({ min: 0, max: 4000 }), period: fc.integer({ min: 2, max: 200 }) }).map(({ length, period }) => Array.from({ length }, (_, i) => (Math.floor(i / period) % 2 ? 32767 : -32768))),
);

/** The definition, over the whole signal at once. */
function reference(x: Int16Array, phase: number): Int16Array {
  const out: number[] = [];
  for (let end = phase; end < x.length; end += 3) {
    let acc = 0;
    for (let k = 0; k < LOW_PASS.length; k++) {
      const i = end - (LOW_PASS.length - 1) + k;
      if (i >= 0) acc += x[i] * LOW_PASS[k];
    }
    out.push(Math.max(-32768, Math.min(32767, Math.round(acc))));
  }
  return Int16Array.from(out);
}

test('any chunking, either call, each phase: the low-pass at every third sample, as defined', () => {
  fc.assert(
    fc.property(signalArbitrary, fc.array(fc.integer({ min: 1, max: 1500 }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 0, max: 2 }), fc.boolean(), (samples, sizes, phase, into) => {
      const x = Int16Array.from(samples);
      const decimator = new Decimator48To16(phase);
      const parts: Int16Array[] = [];
      for (let at = 0, k = 0; at < x.length; k++) {
        const chunk = x.subarray(at, at + sizes[k % sizes.length]);
        at += chunk.length;
        const expected = decimator.outputsFor(chunk.length);
        if (into) {
          // Written after an offset into a larger array: nothing outside its part is touched.
          const out = new Int16Array(expected + 4).fill(7);
          assert.is(decimator.processInto(chunk, out, 2), expected);
          assert.equal([...out.subarray(0, 2), ...out.subarray(2 + expected)], [7, 7, 7, 7]);
          parts.push(out.slice(2, 2 + expected));
        } else {
          const out = decimator.process(chunk);
          assert.is(out.length, expected);
          parts.push(out);
        }
      }
      const whole = Int16Array.from(parts.flatMap((p) => [...p]));
      assert.equal(whole, reference(x, phase));
    }),
    RUNS,
  );
});

test.run();
