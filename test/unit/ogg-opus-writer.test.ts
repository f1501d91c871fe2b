import opus from '@discordjs/opus';
import prism from 'prism-media';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OggOpusWriter } from '../../src/archive/ogg-opus-writer.ts';
import { opusPacketSamples48k } from '../../src/audio/opus-packet.ts';

function encodedPackets(count: number, frameMs: 20 | 60): Buffer[] {
  const encoder = new opus.OpusEncoder(48000, 1);
  const samples = 48 * frameMs;
  return Array.from({ length: count }, (_, n) => {
    const pcm = Int16Array.from({ length: samples }, (_, i) => Math.round(6000 * Math.sin(((n * samples + i) * 2 * Math.PI * 220) / 48000)));
    return encoder.encode(Buffer.from(pcm.buffer));
  });
}

async function demux(bytes: Buffer): Promise<{ packets: Buffer[]; head?: Buffer }> {
  const demuxer = new prism.opus.OggDemuxer();
  const packets: Buffer[] = [];
  let head: Buffer | undefined;
  demuxer.on('head', (h: Buffer) => (head = h));
  demuxer.on('data', (p: Buffer) => packets.push(p));
  demuxer.end(bytes);
  await new Promise((resolve, reject) => (demuxer.on('end', resolve), demuxer.on('error', reject)));
  return { packets, head };
}

test('packet durations come from the TOC byte', () => {
  const [p20] = encodedPackets(1, 20);
  const [p60] = encodedPackets(1, 60);
  assert.equal(opusPacketSamples48k(p20), 960);
  assert.equal(opusPacketSamples48k(p60), 2880);
  assert.equal(opusPacketSamples48k(Buffer.alloc(0)), 0);
});

test('packets written in pages of any size come back identical from an independent demuxer', async () => {
  const packets = encodedPackets(230, 20);
  const writer = new OggOpusWriter({ serial: 7, inputSampleRate: 16000 });
  const parts: Buffer[] = [];
  packets.forEach((p, i) => {
    writer.packet(p);
    if (i % 37 === 0) parts.push(writer.flush());
  });
  parts.push(writer.end());
  const { packets: back, head } = await demux(Buffer.concat(parts));
  assert.equal(back.length, packets.length);
  assert.ok(back.every((p, i) => p.equals(packets[i])));
  assert.equal(head!.readUInt32LE(12), 16000, 'OpusHead carries the input rate');
  assert.equal(writer.samples, 230 * 960);
});

test('every page has a valid CRC, granule positions grow, the last page is flagged end-of-stream', () => {
  const writer = new OggOpusWriter({ serial: 9, inputSampleRate: 48000 });
  for (const p of encodedPackets(300, 60)) writer.packet(p);
  const bytes = Buffer.concat([writer.flush(), writer.end()]);
  const pages: { flags: number; granule: bigint }[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    assert.equal(bytes.toString('ascii', offset, offset + 4), 'OggS');
    const segments = bytes[offset + 26];
    const length = 27 + segments + [...bytes.subarray(offset + 27, offset + 27 + segments)].reduce((a, b) => a + b, 0);
    pages.push({ flags: bytes[offset + 5], granule: bytes.readBigUInt64LE(offset + 6) });
    offset += length;
  }
  assert.equal(pages[0].flags, 0x02, 'first page begins the stream');
  assert.equal(pages.at(-1)!.flags & 0x04, 0x04, 'last page ends it');
  for (let i = 3; i < pages.length; i++) assert.ok(pages[i].granule >= pages[i - 1].granule);
  assert.equal(pages.at(-1)!.granule, 300n * 2880n);
});

test('ending an empty stream still gives headers and an end-of-stream page; no packet after the end', () => {
  const writer = new OggOpusWriter({ serial: 1, inputSampleRate: 48000 });
  const bytes = writer.end();
  assert.ok(bytes.length > 0);
  assert.throws(() => writer.packet(Buffer.from([0xf8, 0xff, 0xfe])), /after end/);
});

test.run();
