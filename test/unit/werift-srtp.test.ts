/**
 * werift as patched here (patches/werift+*.patch): SRTP with its session keys as KeyObjects, made once:
 * packets of both profiles WebRTC negotiates still open on the other side, tampered ones are still refused,
 * and the patch is in place (the keys a fresh install's ciphers hold are KeyObjects); a byte's bits read by
 * arithmetic: the same as werift's string form for every byte, and RTP headers still parse to what was
 * written. Chromium publishing over WHIP (test/e2e/browser.test.ts) checks the same against another SRTP
 * implementation.
 */
import { KeyObject, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getBit, ProtectionProfileAeadAes128Gcm, ProtectionProfileAes128CmHmacSha1_80, RtpHeader, RtpPacket, SrtcpSession, SrtpSession } from 'werift';

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

test("a byte's bits: werift's string form's answer for every byte, start and length", () => {
  const byString = (bits: number, start: number, length: number) => Number.parseInt(bits.toString(2).padStart(8, '0').slice(start, start + length), 2);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1, max: 8 }), (byte, start, length) => {
      fc.pre(start + length <= 8);
      assert.is(getBit(byte, start, length), byString(byte, start, length));
    }),
    { numRuns: 2000 },
  );
});

test('RTP headers parse to what was written: marker, payload type, sequence, timestamp, SSRC, CSRCs', () => {
  fc.assert(
    fc.property(
      fc.record({ marker: fc.boolean(), payloadType: fc.integer({ min: 0, max: 127 }), sequenceNumber: fc.integer({ min: 0, max: 0xffff }), timestamp: fc.integer({ min: 0, max: 0xffffffff }), ssrc: fc.integer({ min: 0, max: 0xffffffff }), csrc: fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 15 }) }),
      fc.uint8Array({ minLength: 1, maxLength: 200 }),
      (fields, payload) => {
        const written = new RtpPacket(new RtpHeader({ ...fields, csrcLength: fields.csrc.length }), Buffer.from(payload)).serialize();
        const parsed = RtpPacket.deSerialize(written);
        const { version, padding, extension, marker, payloadType, sequenceNumber, timestamp, ssrc, csrc } = parsed.header;
        assert.equal({ version, padding, extension, marker, payloadType, sequenceNumber, timestamp, ssrc, csrc }, { version: 2, padding: false, extension: false, ...fields });
        assert.equal(parsed.payload, Buffer.from(payload));
      },
    ),
    { numRuns: 500 },
  );
});

test.run();
