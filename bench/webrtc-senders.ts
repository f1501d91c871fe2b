/**
 * The sending side of bench/webrtc.ts, in its own process: N werift peers, each publishing the corpus
 * doctor track over WHIP and sending its Opus packets at real time (one 20 ms packet per 20 ms, paced
 * from the clock, not from timer callbacks). Prints a JSON line when every peer is connected and the
 * packets start, and one when done: packets sent and peers connected.
 *   BASE_URL, COUNT, SECONDS, SESSION_PREFIX
 */
import { readFile } from 'node:fs/promises';
import opus from '@discordjs/opus';
import { RtpHeader, RtpPacket } from 'werift';
import { ensureCorpus } from '../scripts/make-corpus.ts';
import { decodeWav } from '../src/audio/wav.ts';
import { signToken } from '../test/support/tokens.ts';
import { publishOverWhip, type WhipPublisher } from '../test/support/whip-publisher.ts';

const baseUrl = process.env.BASE_URL!;
const count = Number(process.env.COUNT);
const seconds = Number(process.env.SECONDS);
const prefix = process.env.SESSION_PREFIX!;

const { samples } = decodeWav(await readFile(`${await ensureCorpus()}/en/doctor-48k.wav`));
const encoder = new opus.OpusEncoder(48000, 1);
const packets: Buffer[] = [];
for (let i = 0; i + 960 <= samples.length && packets.length < seconds * 50; i += 960) packets.push(encoder.encode(Buffer.from(samples.buffer, samples.byteOffset + i * 2, 1920)));

const connect = async (index: number) => {
  const sessionId = `${prefix}-${index}`;
  return publishOverWhip(baseUrl, sessionId, 'mic', 'role=doctor&language=en', await signToken({ role: 'producer', session: sessionId }));
};

const senders: WhipPublisher[] = [];
for (let i = 0; i < count; i++) senders.push(await connect(i));
let sent = 0;
process.stdout.write(`${JSON.stringify({ phase: 'streaming' })}\n`);
const started = performance.now();
await new Promise<void>((resolve) => {
  let next = 0;
  const timer = setInterval(() => {
    const due = Math.min(packets.length, Math.floor((performance.now() - started) / 20) + 1);
    for (; next < due; next++) {
      for (const sender of senders) {
        sender.track.writeRtp(new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: next & 0xffff, timestamp: (next * 960) >>> 0 }), packets[next]));
        sent++;
      }
    }
    if (next >= packets.length) {
      clearInterval(timer);
      resolve();
    }
  }, 5);
});
// The last packets are on the wire before the tracks are ended.
await new Promise((r) => setTimeout(r, 300));
for (const sender of senders) await sender.close();
process.stdout.write(`${JSON.stringify({ sent, connected: senders.length, packetsPerPeer: packets.length })}\n`);
process.exit(0);
