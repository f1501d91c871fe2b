/**
 * A track's tail (fast-check): units of random kinds and lengths, with `durableMs` moving forward at
 * random points, then encoded, sealed and read back from a given time:
 *  - what is read back is exactly the units from the first one kept on, in order, byte for byte;
 *  - no unit reaching past the latest `durableMs` is ever dropped (the audio no stored final covers);
 *  - `fromMs` leaves out exactly the units starting before it;
 *  - a sealed tail opened under another name or key fails, and bytes that are not a tail are refused.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AudioUnit } from '../../src/demux/packet-source.ts';
import { openBytes, sealBytes } from '../../src/archive/data-keys.ts';
import { decodeTail, TailBuffer } from '../../src/session/track-tail.ts';

/** A 20 ms CELT fullband Opus packet (TOC config 31, one frame) with `size` bytes in all. */
function opusPacket(size: number, fill: number): Buffer {
  const packet = Buffer.alloc(size, fill);
  packet[0] = 31 << 3;
  return packet;
}

const unitArbitrary = fc.oneof(
  fc.record({ kind: fc.constant('opus' as const), size: fc.integer({ min: 1, max: 300 }), fill: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('pcm' as const), size: fc.integer({ min: 1, max: 960 }), fill: fc.integer({ min: -32768, max: 32767 }) }),
);

type Step = { unit: AudioUnit; atMs: number; ms: number; durableAfter: number | undefined };

const stepsArbitrary = fc.array(fc.tuple(unitArbitrary, fc.option(fc.integer({ min: 0, max: 2000 }), { nil: undefined })), { minLength: 0, maxLength: 400 }).map((raw) => {
  let atMs = 0;
  let durable = 0;
  const steps: Step[] = [];
  for (const [spec, advance] of raw) {
    const unit: AudioUnit = spec.kind === 'opus' ? { kind: 'opus', packet: opusPacket(spec.size, spec.fill) } : { kind: 'pcm', samples: new Int16Array(spec.size).fill(spec.fill) };
    const ms = spec.kind === 'opus' ? 20 : spec.size / 16;
    if (advance !== undefined) durable = Math.min(atMs + ms, durable + advance);
    steps.push({ unit, atMs, ms, durableAfter: advance === undefined ? undefined : durable });
    atMs += ms;
  }
  return steps;
});

function bytesOf(unit: AudioUnit): Buffer {
  if (unit.kind === 'opus') return unit.packet;
  if (unit.kind === 'pcm') return Buffer.from(unit.samples.buffer, unit.samples.byteOffset, unit.samples.byteLength);
  return Buffer.alloc(0);
}

test('a tail keeps every unit past the stored finals, and reads back exactly from where it is asked', () => {
  fc.assert(
    fc.property(stepsArbitrary, fc.integer({ min: 0, max: 10000 }), (steps, fromOffset) => {
      const buffer = new TailBuffer();
      let durable = 0;
      for (const step of steps) {
        buffer.add(step.atMs, step.unit, step.ms);
        if (step.durableAfter !== undefined) {
          durable = step.durableAfter;
          buffer.keepFrom(durable);
        }
      }
      const key = randomBytes(32);
      const sealed = sealBytes(key, buffer.encode(), 'helssa:tail:s:t:1');
      const bytes = openBytes(key, sealed, 'helssa:tail:s:t:1');
      const all = decodeTail(bytes, 0);
      const kept = steps.slice(steps.length - buffer.length);
      assert.is(all?.units.length ?? 0, kept.length);
      // Every unit ending after the latest durableMs is kept.
      for (const step of steps) if (step.atMs + step.ms > durable) assert.ok(kept.includes(step), `unit at ${step.atMs} ms (to ${step.atMs + step.ms}) past durable ${durable} was dropped`);
      for (const [i, step] of kept.entries()) {
        assert.equal(bytesOf(all!.units[i]), bytesOf(step.unit));
        assert.is(all!.units[i].kind, step.unit.kind);
      }
      if (kept.length > 0) {
        assert.is(all!.startMs, kept[0].atMs);
        assert.is(all!.endMs, kept.at(-1)!.atMs + kept.at(-1)!.ms);
      }
      const fromMs = kept.length > 0 ? kept[0].atMs + fromOffset : fromOffset;
      const from = decodeTail(bytes, fromMs);
      const expected = kept.filter((s) => s.atMs >= fromMs);
      assert.is(from?.units.length ?? 0, expected.length);
      if (from) assert.is(from.startMs, expected[0].atMs);
      assert.throws(() => openBytes(key, sealed, 'helssa:tail:s:t:2'));
      assert.throws(() => openBytes(randomBytes(32), sealed, 'helssa:tail:s:t:1'));
    }),
    { numRuns: 300 },
  );
});

test('bytes that are not a tail, or cut short, are refused', () => {
  const buffer = new TailBuffer();
  buffer.add(0, { kind: 'opus', packet: opusPacket(40, 1) }, 20);
  buffer.add(20, { kind: 'opus', packet: opusPacket(40, 2) }, 20);
  const bytes = buffer.encode();
  assert.throws(() => decodeTail(Buffer.from('not a tail at all'), 0), /not a track tail/);
  assert.throws(() => decodeTail(bytes.subarray(0, bytes.length - 5), 0), /cut short|corrupt/);
  assert.is(decodeTail(bytes, 1000), undefined, 'nothing from there on');
});

test.run();
