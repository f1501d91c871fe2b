/**
 * The Opus timeline a track keeps without decoding (fast-check, fixed seed): for any bytes, and for real
 * packets broken at random, `opusPacketWellFormed` is what libopus accepts, and a packet's samples by the
 * timeline are what the codec decodes it to; an OpusTimeline fed the same units as an OpusDecoder counts
 * the same samples and the same refused packets, unit by unit.
 */
import fc from 'fast-check';
import opus from '@discordjs/opus';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { opusPacketWellFormed } from '../../src/audio/opus-packet.ts';
import { OpusDecoder, OpusTimeline } from '../../src/audio/opus-decoder.ts';

const codec = new opus.OpusEncoder(16000, 1);
const encoder = new opus.OpusEncoder(48000, 1);
const realPackets = [10, 20, 40, 60].map((ms) => {
  const pcm = new Int16Array((48000 * ms) / 1000).map((_, i) => Math.round(8000 * Math.sin(i / 7)));
  return encoder.encode(Buffer.from(pcm.buffer));
});

function libopus(packet: Buffer): number | undefined {
  try {
    return codec.decode(packet).length / 2;
  } catch {
    return undefined;
  }
}

const anyBytes = fc.uint8Array({ minLength: 0, maxLength: 400 }).map((bytes) => Buffer.from(bytes));
/** Real packets with bytes overwritten, cut or extended, and code-3 headers forced: where the framing rules bite. */
const brokenPacket = fc
  .record({
    packet: fc.constantFrom(...realPackets),
    writes: fc.array(fc.tuple(fc.nat(300), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
    length: fc.integer({ min: 0, max: 500 }),
    code: fc.constantFrom(undefined, 0, 1, 2, 3),
  })
  .map(({ packet, writes, length, code }) => {
    const out = Buffer.alloc(length);
    packet.copy(out, 0, 0, Math.min(length, packet.length));
    for (const [at, value] of writes) if (at < out.length) out[at] = value;
    if (code !== undefined && out.length > 0) out[0] = (out[0] & 0xfc) | code;
    return out;
  });

test('a packet is well formed exactly when libopus decodes it, to the samples its TOC says', () => {
  fc.assert(
    fc.property(fc.oneof(anyBytes, brokenPacket), (packet) => {
      const decoded = packet.length === 0 ? undefined : libopus(packet);
      assert.is(opusPacketWellFormed(packet), decoded !== undefined);
      if (decoded !== undefined) assert.is(new OpusTimeline().packet(packet), decoded);
    }),
    { seed: 14, numRuns: 20000 },
  );
});

test('a timeline counts what the decoder decodes, unit by unit', () => {
  const unit = fc.oneof(
    fc.oneof(fc.constantFrom(...realPackets), brokenPacket).map((packet) => ({ packet })),
    fc.integer({ min: 1, max: 4 }).map((lost) => ({ lost })),
  );
  fc.assert(
    fc.property(fc.array(unit, { maxLength: 60 }), (units) => {
      const decoder = new OpusDecoder();
      const timeline = new OpusTimeline();
      for (const u of units) {
        if ('lost' in u) assert.is(timeline.lost(u.lost), decoder.conceal(u.lost).length);
        else assert.is(timeline.packet(u.packet), decoder.decode(u.packet).length);
        assert.is(timeline.consecutiveCorrupt, decoder.consecutiveCorrupt);
        assert.is(timeline.packetMs, decoder.packetMs);
      }
      assert.is(timeline.corruptPackets, decoder.corruptPackets);
    }),
    { seed: 15, numRuns: 300 },
  );
});

test.run();
