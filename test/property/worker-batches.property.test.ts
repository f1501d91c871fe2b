/**
 * The batches the worker pools send both ways (BatchWriter, fast-check, fixed seed): any mix of operations,
 * byte strings, sample runs and floats of any length, taken out in batches of any size, reads back as written:
 * each op's numbers, each part's bytes or samples at the offset it was given (a multiple of 4, so Int16 and Float32 views fit),
 * and a run extended in place holds its sum. A batch holds only its own parts, and the writer is empty after it.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BATCH_OP_SIZE, BatchWriter } from '../../src/audio/worker-batches.ts';

const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const part = fc.oneof(
  fc.record({ kind: fc.constant('op' as const), numbers: fc.tuple(fc.nat(9), fc.nat(1000), int32, int32, int32) }),
  fc.record({ kind: fc.constant('bytes' as const), data: fc.uint8Array({ maxLength: 3000 }) }),
  fc.record({ kind: fc.constant('samples' as const), data: fc.int16Array({ maxLength: 3000 }) }),
  fc.record({ kind: fc.constant('floats' as const), data: fc.float32Array({ maxLength: 40, noNaN: true }) }),
  fc.record({ kind: fc.constant('take' as const) }),
);

test('what is written reads back from its batch, at even offsets', () => {
  fc.assert(
    fc.property(fc.array(part, { maxLength: 120 }), (parts) => {
      const writer = new BatchWriter();
      let ops: number[][] = [];
      let data: { at: number; data: Uint8Array | Int16Array | Float32Array }[] = [];
      const check = () => {
        const batch = writer.take();
        assert.is(writer.empty, true);
        assert.is(batch.ops.length, ops.length * BATCH_OP_SIZE);
        ops.forEach((numbers, i) => assert.equal([...batch.ops.subarray(i * BATCH_OP_SIZE, (i + 1) * BATCH_OP_SIZE)], numbers));
        let end = 0;
        for (const { at, data: written } of data) {
          assert.is(at % 4, 0);
          assert.ok(at >= end, 'parts do not overlap');
          const read =
            written instanceof Int16Array
              ? new Int16Array(batch.bytes.buffer, at, written.length)
              : written instanceof Float32Array
                ? new Float32Array(batch.bytes.buffer, at, written.length)
                : batch.bytes.subarray(at, at + written.length);
          assert.equal([...read], [...written]);
          end = at + written.byteLength;
        }
        assert.is(batch.bytes.length, end, 'a batch holds its own parts only');
        ops = [];
        data = [];
      };
      for (const p of parts) {
        if (p.kind === 'op') {
          const [kind, stream, a, b, c] = p.numbers;
          const extendable = writer.last(kind, stream, 1) !== undefined;
          if (extendable && a === 0) {
            writer.extendLast(1, 1);
            ops.at(-1)![3] = (ops.at(-1)![3] + 1) | 0;
          } else {
            writer.op(kind, stream, a, b, c);
            ops.push([kind, stream, a, b, c]);
          }
        } else if (p.kind === 'bytes') data.push({ at: writer.bytesOf(p.data), data: p.data });
        else if (p.kind === 'samples') data.push({ at: writer.samplesOf(p.data), data: p.data });
        else if (p.kind === 'floats') data.push({ at: writer.floatsOf(p.data), data: p.data });
        else check();
      }
      check();
    }),
    { seed: 4242, numRuns: 300 },
  );
});

test('last finds only the last op, of its kind and stream', () => {
  const writer = new BatchWriter();
  assert.is(writer.last(0, 1, 0), undefined);
  writer.op(6, 1, 10, 2, 1);
  assert.is(writer.last(6, 1, 2), 1);
  assert.is(writer.last(6, 2, 2), undefined);
  assert.is(writer.last(7, 1, 2), undefined);
  writer.op(7, 1);
  assert.is(writer.last(6, 1, 0), undefined);
});

test.run();
