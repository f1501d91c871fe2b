/**
 * werift's SRTP as patched here (patches/werift+*.patch: session keys as KeyObjects, made once): packets
 * of both profiles WebRTC negotiates still open on the other side, tampered ones are still refused, and the
 * patch is in place (the keys a fresh install's ciphers hold are KeyObjects). Chromium publishing over WHIP
 * (test/integration/browser.test.ts) checks the same against another SRTP implementation.
 */
import { KeyObject, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ProtectionProfileAeadAes128Gcm, ProtectionProfileAes128CmHmacSha1_80, RtpHeader, SrtcpSession, SrtpSession } from 'werift';

const PROFILES = { 'AES-CM-128 HMAC-SHA1-80': ProtectionProfileAes128CmHmacSha1_80, 'AEAD-AES-128-GCM': ProtectionProfileAeadAes128Gcm } as const;

/** Two ends of one SRTP session: what the sender's local keys encrypt, the receiver's remote keys open. */
function ends<T extends typeof SrtpSession | typeof SrtcpSession>(Session: T, profile: number): [InstanceType<T>, InstanceType<T>] {
  const sender = { masterKey: randomBytes(16), masterSalt: randomBytes(profile === ProtectionProfileAeadAes128Gcm ? 12 : 14) };
  const receiver = { masterKey: randomBytes(16), masterSalt: randomBytes(sender.masterSalt.length) };
  const session = (local: typeof sender, remote: typeof sender) =>
    new Session({ keys: { localMasterKey: local.masterKey, localMasterSalt: local.masterSalt, remoteMasterKey: remote.masterKey, remoteMasterSalt: remote.masterSalt }, profile: profile as 1 }) as InstanceType<T>;
  return [session(sender, receiver), session(receiver, sender)];
}

for (const [name, profile] of Object.entries(PROFILES)) {
  test(`${name}: RTP packets open on the other end, in order and across a sequence wrap; a changed byte is refused`, () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 400 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 0, max: 0xffff }), fc.nat(), (payloads, firstSequence, tamperAt) => {
        const [sender, receiver] = ends(SrtpSession, profile);
        payloads.forEach((payload, i) => {
          const header = new RtpHeader({ payloadType: 111, sequenceNumber: (firstSequence + i) & 0xffff, timestamp: i * 960, ssrc: 0x1234 });
          const protectedPacket = sender.encrypt(Buffer.from(payload), header);
          const tampered = Buffer.from(protectedPacket);
          tampered[12 + (tamperAt % (tampered.length - 12))] ^= 0x01;
          assert.throws(() => receiver.decrypt(tampered));
          assert.equal(receiver.decrypt(protectedPacket).subarray(12), Buffer.from(payload));
        });
      }),
      { numRuns: 60 },
    );
  });

  test(`${name}: RTCP packets open on the other end; a changed byte is refused`, () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), fc.nat(), (body, tamperAt) => {
        const [sender, receiver] = ends(SrtcpSession, profile);
        // A receiver report's first 8 bytes (version, count, type 201, length in words, SSRC), then a body.
        const padded = Buffer.concat([Buffer.from(body), Buffer.alloc((4 - (body.length % 4)) % 4)]);
        const rtcp = Buffer.concat([Buffer.from([0x80, 201, 0, padded.length / 4 + 1, 0, 0, 0x12, 0x34]), padded]);
        const protectedPacket = sender.encrypt(rtcp);
        const tampered = Buffer.from(protectedPacket);
        tampered[8 + (tamperAt % (tampered.length - 8))] ^= 0x01;
        assert.throws(() => receiver.decrypt(tampered));
        assert.equal(receiver.decrypt(protectedPacket), rtcp);
      }),
      { numRuns: 60 },
    );
  });
}

test('the patch is in place: every session key a cipher holds is a KeyObject, made once', () => {
  for (const profile of Object.values(PROFILES)) {
    const [sender] = ends(SrtpSession, profile);
    const cipher = (sender.localContext as unknown as { cipher: Record<string, unknown> }).cipher;
    const keys = ['srtpSessionKey', 'srtcpSessionKey', ...(profile === ProtectionProfileAes128CmHmacSha1_80 ? ['srtpSessionAuthTag', 'srtcpSessionAuthTag'] : [])];
    for (const key of keys) assert.instance(cipher[key], KeyObject, `${key} (profile ${profile})`);
  }
});

test.run();
