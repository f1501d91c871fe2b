/**
 * Audio at rest: sealed blobs and chunked sealed files round-trip at any size and any byte range, refuse
 * a wrong key, a blob under another name, an altered byte and a file cut at a chunk boundary; wrapped
 * data keys unwrap only under their key-encryption key.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AudioSealer, LocalKeyEncryptionKey, localKeyEncryptionKey, openBytes, sealBytes } from '../../src/archive/data-keys.ts';
import { SEALED_CHUNK_BYTES, SealedFileReader, SealedFileWriter } from '../../src/archive/sealed-file.ts';

const dir = await mkdtemp(join(tmpdir(), 'helssa-at-rest-'));

test('sealed blobs: round trip; wrong key, other name or an altered byte refuse to open', () => {
  const key = randomBytes(32);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 5000 }), fc.string(), (plain, name) => {
      const blob = sealBytes(key, plain, name);
      assert.ok(openBytes(key, blob, name).equals(Buffer.from(plain)));
      assert.throws(() => openBytes(randomBytes(32), blob, name), /does not decrypt/);
      assert.throws(() => openBytes(key, blob, `${name}x`), /does not decrypt/);
      const altered = Buffer.from(blob);
      altered[altered.length - 1] ^= 1;
      assert.throws(() => openBytes(key, altered, name));
    }),
    { numRuns: 200, seed: 11 },
  );
});

test('data keys: wrapped under the key-encryption key, opened only with it', async () => {
  const sealer = new AudioSealer(new LocalKeyEncryptionKey(randomBytes(32)));
  const other = new AudioSealer(new LocalKeyEncryptionKey(randomBytes(32)));
  const wrapped = await sealer.newDataKey();
  const blob = await sealer.seal(wrapped, Buffer.from('pcm'), 'w1');
  assert.is((await sealer.open(wrapped, blob, 'w1')).toString(), 'pcm');
  await other.open(wrapped, blob, 'w1').then(() => assert.unreachable('another KEK opened it'), () => undefined);
});

test('a generated key-encryption key is kept 0600 and reused', async () => {
  const path = join(dir, 'keys', 'at-rest.key');
  const first = await localKeyEncryptionKey(undefined, path);
  assert.ok(first.generated);
  assert.is((await stat(path)).mode & 0o777, 0o600);
  const second = await localKeyEncryptionKey(undefined, path);
  assert.not.ok(second.generated);
  const wrapped = await first.kek.wrap(Buffer.alloc(32, 1));
  assert.ok((await second.kek.unwrap(wrapped)).equals(Buffer.alloc(32, 1)));
});

test('sealed files: any size, any range, written in any slicing; cut or altered files refuse', async () => {
  const key = randomBytes(32);
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: SEALED_CHUNK_BYTES * 3 + 100 }), fc.array(fc.integer({ min: 1, max: 70000 }), { minLength: 1, maxLength: 8 }), fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 5 }), async (size, slices, ranges) => {
      const plain = randomBytes(size);
      const path = join(dir, `f${n++}`);
      const writer = await SealedFileWriter.create(path, key, 'original');
      for (let at = 0, i = 0; at < size; i++) {
        const len = slices[i % slices.length];
        await writer.write(plain.subarray(at, at + len));
        at += len;
      }
      await writer.end();
      assert.is((await stat(path)).mode & 0o077, 0);
      assert.not.ok(size > 64 && (await readFile(path)).includes(plain.subarray(0, 64)), 'plaintext on disk');
      const reader = await SealedFileReader.open(path, key, 'original');
      assert.is(reader.size, size);
      for (const [a, b] of ranges) {
        const start = size ? a % size : 0;
        const end = start + (size ? b % (size - start + 1) : 0);
        assert.ok((await reader.read(start, end)).equals(plain.subarray(start, end)));
      }
      const streamed: Buffer[] = [];
      for await (const chunk of reader.stream()) streamed.push(chunk as Buffer);
      assert.ok(Buffer.concat(streamed).equals(plain));
      await rm(path);
    }),
    { numRuns: 40, seed: 12 },
  );
  const path = join(dir, 'cut');
  const writer = await SealedFileWriter.create(path, key, 'original');
  await writer.write(randomBytes(SEALED_CHUNK_BYTES * 2 + 10));
  await writer.end();
  await truncate(path, 12 + (SEALED_CHUNK_BYTES + 16) * 2);
  const cut = await SealedFileReader.open(path, key, 'original');
  await cut.read(0, cut.size).then(() => assert.unreachable('a file cut at a chunk boundary read as whole'), (error) => assert.match(error.message, /does not decrypt/));
  const altered = join(dir, 'altered');
  const bytes = await readFile(join(dir, 'cut'));
  bytes[100] ^= 1;
  await writeFile(altered, bytes);
  await (await SealedFileReader.open(altered, key, 'original')).read(0, 10).then(() => assert.unreachable(), () => undefined);
  await (await SealedFileReader.open(join(dir, 'cut'), randomBytes(32), 'original')).read(0, 10).then(() => assert.unreachable(), () => undefined);
});

test.after(() => rm(dir, { recursive: true, force: true }));
test.run();
