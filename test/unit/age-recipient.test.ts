/** The archive's X25519 age recipient on node:crypto: files it encrypts open with the library and the age CLI. */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bech32 } from '@scure/base';
import { Decrypter, Encrypter, generateHybridIdentity, identityToRecipient } from 'age-encryption';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ageRecipient } from '../../src/archive/age-recipient.ts';
import { createTestIdentity, decryptWithAgeCli } from '../support/age.ts';

const identity = await createTestIdentity();

async function encrypt(plaintext: Uint8Array, recipient: string): Promise<Uint8Array> {
  const encrypter = new Encrypter();
  encrypter.addRecipient(ageRecipient(recipient));
  return encrypter.encrypt(plaintext);
}

test('an X25519 recipient is wrapped here; what it encrypts opens with the identity, whatever the payload', async () => {
  const wrapped = ageRecipient(identity.recipient);
  assert.type(wrapped, 'object', 'an age1… X25519 recipient gets the node:crypto wrap');
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 70000 }), async (plaintext) => {
      const decrypter = new Decrypter();
      decrypter.addIdentity(identity.identity);
      assert.equal(await decrypter.decrypt(await encrypt(plaintext, identity.recipient)), plaintext);
    }),
    { numRuns: 40, seed: 20261207 },
  );
});

test('its stanza is the spec\'s: X25519, a 32-byte share in unpadded base64, a 32-byte body; a fresh share each file', async () => {
  const wrapped = ageRecipient(identity.recipient);
  if (typeof wrapped === 'string') throw new Error('not wrapped here');
  const fileKey = new Uint8Array(16).fill(7);
  const [first, second] = [await wrapped.wrapFileKey(fileKey), await wrapped.wrapFileKey(fileKey)];
  for (const stanzas of [first, second]) {
    assert.is(stanzas.length, 1);
    const [type, share] = stanzas[0].args;
    assert.is(type, 'X25519');
    assert.match(share, /^[A-Za-z0-9+/]{43}$/);
    assert.is(stanzas[0].body.length, 32, '16-byte file key and a 16-byte tag');
  }
  assert.is.not(first[0].args[1], second[0].args[1], 'an ephemeral key per file');
});

test('Debian\'s age CLI opens what it encrypts', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'helssa-age-recipient-'));
  const plaintext = new TextEncoder().encode('a consultation, sealed slice by slice');
  await writeFile(join(dir, 'slice.age'), await encrypt(plaintext, identity.recipient));
  await decryptWithAgeCli(identity.file, join(dir, 'slice.age'), join(dir, 'slice'));
  assert.equal(new Uint8Array(await readFile(join(dir, 'slice'))), plaintext);
});

test('other recipient kinds and malformed strings go to the library as given (it checks them)', async () => {
  const hybrid = await identityToRecipient(await generateHybridIdentity());
  for (const other of [hybrid, 'age1notbech32', 'ssh-ed25519 AAAA', identity.recipient.toUpperCase(), '']) assert.is(ageRecipient(other), other);
  assert.throws(() => new Encrypter().addRecipient('age1notbech32'));
});

test('a low-order recipient key (all zeros) wraps nothing', async () => {
  const zero = bech32.encodeFromBytes('age', new Uint8Array(32));
  const wrapped = ageRecipient(zero);
  if (typeof wrapped === 'string') throw new Error('not wrapped here');
  assert.throws(() => wrapped.wrapFileKey(new Uint8Array(16)));
});

test.run();
