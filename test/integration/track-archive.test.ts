/** One track's encrypted spool, read back with the age library: X25519 and post-quantum hybrid recipients. */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import opus from '@discordjs/opus';
import { Decrypter, generateHybridIdentity, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TrackArchive } from '../../src/archive/track-archive.ts';

const encoder = new opus.OpusEncoder(48000, 1);
const packets = Array.from({ length: 250 }, (_, n) => encoder.encode(Buffer.from(Int16Array.from({ length: 960 }, (_, i) => Math.round(5000 * Math.sin((n * 960 + i) / 20))).buffer)));

test('full file and one-second slices decrypt (X25519 and hybrid recipients) to the same Ogg stream', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'helssa-track-'));
  try {
    const classic = await generateX25519Identity();
    const hybrid = await generateHybridIdentity();
    const archive = await TrackArchive.open({ dir, recipients: [await identityToRecipient(classic), await identityToRecipient(hybrid)], inputSampleRate: 48000, serial: 42 });
    for (const p of packets) archive.packet(p);
    const completed = await archive.close();
    assert.equal(completed.durationMs, 5000);
    for (const identity of [classic, hybrid]) {
      const decrypter = new Decrypter();
      decrypter.addIdentity(identity);
      const full = Buffer.from(await decrypter.decrypt(await readFile(completed.file)));
      const sliceNames = (await readdir(join(dir, 'slices'))).sort();
      assert.equal(sliceNames.length, 6, 'five one-second slices and the closing page');
      const slices = Buffer.concat(await Promise.all(sliceNames.map(async (n) => Buffer.from(await decrypter.decrypt(await readFile(join(dir, 'slices', n)))))));
      assert.ok(full.equals(slices), 'the slices concatenate to the full stream');
      assert.equal(full.subarray(0, 4).toString('ascii'), 'OggS');
    }
    assert.throws(() => archive.packet(packets[0]), /after close/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
