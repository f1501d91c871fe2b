/**
 * The archive's age recipients. An X25519 recipient (`age1…`, the kind `age-keygen` makes) wraps each
 * file key on node:crypto (OpenSSL): the archive seals a slice of every track each second, and
 * age-encryption's own X25519 wrap (two WebCrypto round trips, HKDF and ChaCha20-Poly1305 in
 * JavaScript) was most of the archive thread's time per slice. The stanza is the one the age spec
 * defines for X25519 (https://age-encryption.org/v1); any other recipient kind goes to the library as
 * given, which checks it.
 */
import { createCipheriv, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto';
import { bech32 } from '@scure/base';
import { Stanza, type Recipient } from 'age-encryption';

const WRAP_LABEL = Buffer.from('age-encryption.org/v1/X25519');
/** DER SubjectPublicKeyInfo of an X25519 key up to its 32 raw bytes (RFC 8410). */
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const ZERO_NONCE = Buffer.alloc(12);

class X25519Recipient implements Recipient {
  private readonly raw: Buffer;
  private readonly publicKey: KeyObject;

  constructor(raw: Buffer) {
    this.raw = raw;
    this.publicKey = createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  }

  wrapFileKey(fileKey: Uint8Array): Stanza[] {
    const ephemeral = generateKeyPairSync('x25519');
    const share = ephemeral.publicKey.export({ format: 'der', type: 'spki' }).subarray(X25519_SPKI_PREFIX.length);
    // OpenSSL refuses the all-zero secret of a low-order recipient key, as the spec requires.
    const secret = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: this.publicKey });
    const key = Buffer.from(hkdfSync('sha256', secret, Buffer.concat([share, this.raw]), WRAP_LABEL, 32));
    const cipher = createCipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: 16 });
    const body = Buffer.concat([cipher.update(fileKey), cipher.final(), cipher.getAuthTag()]);
    return [new Stanza(['X25519', share.toString('base64').replace(/=+$/, '')], body)];
  }
}

/** The recipient to give an age `Encrypter` for `recipient` (a recipient string from the configuration). */
export function ageRecipient(recipient: string): Recipient | string {
  // The library takes lower-case recipients only; bech32 would read an upper-case one too.
  if (!recipient.startsWith('age1')) return recipient;
  try {
    const { prefix, bytes } = bech32.decodeToBytes(recipient);
    return prefix === 'age' && bytes.length === 32 ? new X25519Recipient(Buffer.from(bytes)) : recipient;
  } catch {
    return recipient;
  }
}
