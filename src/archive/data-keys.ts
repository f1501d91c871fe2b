/**
 * Encryption at rest of the audio the gateway must read back itself (upload originals while they are
 * checked, upload windows waiting for a worker, final windows spilled while STT is down). The archive's
 * age recipients cannot serve here: the gateway holds no age identity, by design.
 *
 * Envelope encryption, as a KMS does it: each session gets a random 256-bit data key; only its wrapped
 * form (encrypted under the key-encryption key, `AT_REST_KEY`) is stored, beside the session and in the
 * jobs that need it. Destroying a session's wrapped key makes whatever it sealed unreadable. The
 * key-encryption key sits behind a small interface so that a KMS client can replace the local one.
 *
 * Blobs are AES-256-GCM with the blob's name as additional data (a blob moved under another name fails
 * to open). Files are written 0600 in 0700 directories.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** What a KMS offers: wrap and unwrap data keys; the key itself never leaves it. */
export interface KeyEncryptionKey {
  wrap(dataKey: Buffer): Promise<Buffer>;
  unwrap(wrapped: Buffer): Promise<Buffer>;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;
const BLOB_MAGIC = Buffer.from('HLA1');

export class DecryptionError extends Error {
  override name = 'DecryptionError';
}

/** AES-256-GCM over one buffer: MAGIC | iv | tag | ciphertext. */
export function sealBytes(key: Buffer, plaintext: Uint8Array, aad: string): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([BLOB_MAGIC, iv, cipher.getAuthTag(), body]);
}

export function openBytes(key: Buffer, blob: Uint8Array, aad: string): Buffer {
  const bytes = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (bytes.length < BLOB_MAGIC.length + IV_BYTES + TAG_BYTES || !bytes.subarray(0, 4).equals(BLOB_MAGIC)) throw new DecryptionError('not a sealed blob');
  const iv = bytes.subarray(4, 4 + IV_BYTES);
  const tag = bytes.subarray(4 + IV_BYTES, 4 + IV_BYTES + TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(bytes.subarray(4 + IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch {
    throw new DecryptionError(`blob ${aad} does not decrypt: wrong key, or altered`);
  }
}

/** The key-encryption key held in this process (from `AT_REST_KEY`). */
export class LocalKeyEncryptionKey implements KeyEncryptionKey {
  private readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new RangeError('the key-encryption key must be 32 bytes');
    this.key = key;
  }

  async wrap(dataKey: Buffer): Promise<Buffer> {
    return sealBytes(this.key, dataKey, 'data-key');
  }

  async unwrap(wrapped: Buffer): Promise<Buffer> {
    return openBytes(this.key, wrapped, 'data-key');
  }
}

/**
 * `AT_REST_KEY` when configured (base64 of 32 bytes, shared with `npm run worker`); otherwise a key made
 * once and kept in `path` (0600), for a single gateway without a secret store.
 */
export async function localKeyEncryptionKey(configured: string | undefined, path: string): Promise<{ kek: LocalKeyEncryptionKey; generated: boolean }> {
  if (configured) return { kek: new LocalKeyEncryptionKey(Buffer.from(configured, 'base64')), generated: false };
  const existing = await readFile(path, 'utf8').catch(() => undefined);
  if (existing) return { kek: new LocalKeyEncryptionKey(Buffer.from(existing.trim(), 'base64')), generated: false };
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  await writeFile(path, key.toString('base64'), { mode: 0o600, flag: 'wx' });
  await chmod(path, 0o600);
  return { kek: new LocalKeyEncryptionKey(key), generated: true };
}

/** Opens and seals blobs under wrapped data keys, unwrapping each key once (a small cache). */
export class AudioSealer {
  private readonly kek: KeyEncryptionKey;
  private readonly keys = new Map<string, Promise<Buffer>>();

  constructor(kek: KeyEncryptionKey) {
    this.kek = kek;
  }

  /** A new random data key, wrapped (base64): what sessions and jobs carry. */
  async newDataKey(): Promise<string> {
    return (await this.kek.wrap(randomBytes(32))).toString('base64');
  }

  async seal(wrappedKey: string, plaintext: Uint8Array, aad: string): Promise<Buffer> {
    return sealBytes(await this.key(wrappedKey), plaintext, aad);
  }

  async open(wrappedKey: string, blob: Uint8Array, aad: string): Promise<Buffer> {
    return openBytes(await this.key(wrappedKey), blob, aad);
  }

  /** The plaintext data key (for streaming ciphers); cached. */
  key(wrappedKey: string): Promise<Buffer> {
    let key = this.keys.get(wrappedKey);
    if (!key) {
      if (this.keys.size >= 256) this.keys.delete(this.keys.keys().next().value!);
      key = this.kek.unwrap(Buffer.from(wrappedKey, 'base64'));
      key.catch(() => this.keys.delete(wrappedKey));
      this.keys.set(wrappedKey, key);
    }
    return key;
  }

  /** The key is destroyed: forget its plaintext here too. */
  forget(wrappedKey: string): void {
    this.keys.delete(wrappedKey);
  }
}
