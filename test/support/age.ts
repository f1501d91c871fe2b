/** An age identity for tests: the gateway gets the recipient, tests decrypt with the identity. */
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';

export interface TestIdentity {
  identity: string;
  recipient: string;
  /** The identity in a file, for `age -d -i`. */
  file: string;
}

export async function createTestIdentity(): Promise<TestIdentity> {
  const identity = await generateX25519Identity();
  const file = join(await mkdtemp(join(tmpdir(), 'helssa-age-')), 'identity.txt');
  await writeFile(file, `${identity}\n`, { mode: 0o600 });
  return { identity, recipient: await identityToRecipient(identity), file };
}

/** Decrypts with Debian's stock `age` CLI, as a clinic would. */
export async function decryptWithAgeCli(identityFile: string, ciphertextFile: string, outputFile: string): Promise<void> {
  await promisify(execFile)('age', ['-d', '-i', identityFile, '-o', outputFile, ciphertextFile]);
}
