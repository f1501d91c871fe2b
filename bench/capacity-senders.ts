/**
 * The capacity bench's load, made to cost almost nothing: COUNT tracks of pre-encoded Opus (the corpus's
 * two-person visit, looped: continuous speech) replayed from this one process on one 1 ms timer at real time,
 * as WebSocket `opus` frames (PATH=ws), plain RTP datagrams from one UDP socket (PATH=rtp) or WebRTC peers
 * publishing over WHIP (PATH=whip: werift peers, whose SRTP and ICE cost this process far more than the
 * others; the bench counts this process's CPU apart), each track at its own phase of the packet period
 * (PHASES=together: all at once). Packets of 20 ms (the corpus's Ogg)
 * or, with PACKET_MS=60, of 60 ms (its WebM: fewer, larger messages for the same audio). Each track
 * streams from the moment it is open, as a phone does (opening 200 WebRTC peers takes longer than the
 * gateway waits for a silent track). Prints one line when every track is open, then, after SECONDS more
 * of audio from all of them, one JSON line: packets sent, the sender's own CPU seconds since every track
 * was open, and the timer's worst lateness then (a sender that falls behind would be measuring itself);
 * then closes the tracks and prints `closed`.
 */
import { createSocket } from 'node:dgram';
import { RtpHeader, RtpPacket } from 'werift';
import { WebSocket } from 'ws';
import { oggPackets, webmPackets } from '../test/support/producer.ts';
import { signToken } from '../test/support/tokens.ts';
import { publishOverWhip } from '../test/support/whip-publisher.ts';

const baseUrl = process.env.BASE_URL!;
const count = Number(process.env.COUNT);
const seconds = Number(process.env.SECONDS);
const path = process.env.PATH_KIND === 'rtp' || process.env.PATH_KIND === 'whip' ? process.env.PATH_KIND : 'ws';
const prefix = process.env.SESSION_PREFIX ?? 'capacity';
const FRAME_MS = Number(process.env.PACKET_MS ?? 20);
if (FRAME_MS !== 20 && FRAME_MS !== 60) throw new Error(`PACKET_MS=${FRAME_MS}: the corpus has 20 ms (Ogg) and 60 ms (WebM) packets`);
/** Tracks per session: a visit's two people. */
const TRACKS_PER_SESSION = 2;

const packets = FRAME_MS === 60 ? await webmPackets('corpus/en/mix.webm') : await oggPackets('corpus/en/mix.ogg');
const token = await signToken({ role: 'service' });
const auth = { authorization: `Bearer ${token}` };

interface Sender {
  /** Sends the track's `index`th packet (each track starts at its own place in the file). */
  send(index: number): void;
  close(): Promise<void>;
}

/** Each message: the 16-bit sequence number, then the packet; built once per packet and track offset. */
const wsMessages = packets.map((packet) => {
  const message = Buffer.alloc(packet.length + 2);
  packet.copy(message, 2);
  return message;
});

/**
 * Where track `n` starts in the file: spread over it, so that the tracks' utterances (and the windows they
 * close) do not all fall on the same instant, as in a clinic's many independent visits.
 */
const startOf = (n: number) => Math.floor((n * packets.length * 0.618) % packets.length);

async function openWebSocket(session: string, track: string, start: number): Promise<Sender> {
  const url = `${baseUrl.replace('http', 'ws')}/v1/sessions/${session}/tracks/${track}/ingest?format=opus&role=${track === 't0' ? 'doctor' : 'patient'}&language=en&access_token=${token}`;
  const socket = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    socket.once('message', () => resolve());
    socket.once('error', reject);
    socket.once('close', (code, reason) => reject(new Error(`closed ${code} ${reason}`)));
  });
  return {
    send(index) {
      const message = wsMessages[(start + index) % packets.length];
      message.writeUInt16BE(index & 0xffff, 0);
      socket.send(message);
    },
    close: () => new Promise<void>((resolve) => (socket.once('close', () => resolve()), socket.close(1000))),
  };
}

const udp = createSocket('udp4');
await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));

async function openRtp(session: string, track: string, ssrc: number, start: number): Promise<Sender> {
  const response = await fetch(`${baseUrl}/v1/sessions/${session}/tracks/${track}/rtp?role=${track === 't0' ? 'doctor' : 'patient'}&language=en&ssrc=${ssrc}`, { method: 'POST', headers: auth });
  if (response.status !== 201) throw new Error(`rtp ${response.status} ${await response.text()}`);
  const { port } = (await response.json()) as { port: number };
  return {
    send(index) {
      // A header per datagram: a send is asynchronous, a shared one could change before it leaves.
      const header = Buffer.allocUnsafe(12);
      header[0] = 0x80;
      header[1] = 111;
      header.writeUInt16BE(index & 0xffff, 2);
      header.writeUInt32BE((index * 48 * FRAME_MS) >>> 0, 4);
      header.writeUInt32BE(ssrc, 8);
      udp.send([header, packets[(start + index) % packets.length]], port, '127.0.0.1');
    },
    close: async () => void (await fetch(`${baseUrl}/v1/sessions/${session}/tracks/${track}/rtp`, { method: 'DELETE', headers: auth })),
  };
}

async function openWhip(session: string, track: string, start: number): Promise<Sender> {
  const publisher = await publishOverWhip(baseUrl, session, track, `role=${track === 't0' ? 'doctor' : 'patient'}&language=en`, await signToken({ role: 'producer', session }));
  return {
    send(index) {
      publisher.track.writeRtp(new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: index & 0xffff, timestamp: (index * 48 * FRAME_MS) >>> 0 }), packets[(start + index) % packets.length]));
    },
    close: () => publisher.close(),
  };
}

/**
 * When in its packet period each track sends: spread over the period (phones in different visits are not in step),
 * or, with PHASES=together, all on the same instant (one burst of every track's packet each period: the
 * worst case for the gateway's event loop, which no clinic's independent phones produce).
 */
const phaseMs = (n: number) => (process.env.PHASES === 'together' ? 0 : ((n * 0.618) % 1) * FRAME_MS);

/** A track that streams from the moment it is open, as a producer does (a gateway ends a track silent for 10 s). */
interface Streaming {
  sender: Sender;
  phaseMs: number;
  /** The period of the shared clock its packet 0 went in. */
  firstPeriod: number;
  next: number;
}

const streaming: Streaming[] = [];
const clockStart = performance.now();
/** The periods of the shared clock due by `at` for a track of this phase. */
const periodsBy = (at: number, phase: number) => Math.floor((at - clockStart - phase) / FRAME_MS) + 1;
/** Every track stops here: SECONDS after the last one opened, so that all of them stream that long together. */
let endAt = Infinity;
let measuring = false;
let sent = 0;
let worstLateMs = 0;
const finished = new Promise<void>((resolve) => {
  const timer = setInterval(() => {
    // Every packet due by now goes: a late timer catches up, never drifts.
    const now = Math.min(performance.now(), endAt);
    for (const track of streaming) {
      const due = periodsBy(now, track.phaseMs) - track.firstPeriod;
      if (measuring && due - track.next > 1) worstLateMs = Math.max(worstLateMs, (due - track.next - 1) * FRAME_MS);
      for (; track.next < due; track.next++) (track.sender.send(track.next), sent++);
    }
    if (now === endAt) (clearInterval(timer), resolve());
  }, 1);
});

for (let i = 0; i < count; i += 8) {
  await Promise.all(
    Array.from({ length: Math.min(8, count - i) }, async (_, j) => {
      const n = i + j;
      const session = `${prefix}-${Math.floor(n / TRACKS_PER_SESSION)}`;
      const track = `t${n % TRACKS_PER_SESSION}`;
      const sender = await (path === 'whip' ? openWhip(session, track, startOf(n)) : path === 'rtp' ? openRtp(session, track, 0x1000 + n, startOf(n)) : openWebSocket(session, track, startOf(n)));
      streaming.push({ sender, phaseMs: phaseMs(n), firstPeriod: periodsBy(performance.now(), phaseMs(n)), next: 0 });
    }),
  );
}
console.log('open');

const cpuBefore = process.cpuUsage();
measuring = true;
endAt = performance.now() + seconds * 1000;
await finished;
const cpu = process.cpuUsage(cpuBefore);
// Reported at the last packet, before the tracks close (closing a hundred WebRTC peers takes a while,
// and is no part of streaming): the bench's measured stretch ends here.
console.log(JSON.stringify({ sent, senderCpuSeconds: (cpu.user + cpu.system) / 1e6, worstLateMs }));
await Promise.all(streaming.map((track) => track.sender.close()));
udp.close();
console.log('closed');
