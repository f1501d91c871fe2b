/**
 * A producer client for tests, the demo and benchmarks: streams a corpus file over the ingest
 * WebSocket in any ingest format, at real time (speed 1), faster, or as fast as possible (speed 0).
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import prism from 'prism-media';
import { WebSocket } from 'ws';
import type { IngestFormat } from '../../client-sdk/src/protocol.ts';
import { OPUS_FRAMES, pcm16Frames, type FrameFormat } from '../../client-sdk/src/resumable-ingest.ts';
import { opusPacketSamples48k } from '../../src/audio/opus-packet.ts';
import { decodeWav } from '../../src/audio/wav.ts';

export interface StreamOptions {
  url: string;
  format: IngestFormat;
  /** Corpus file without extension, e.g. corpus/en/doctor. */
  file: string;
  /** 1 = real time, 10 = ten times faster, 0 = no pacing. */
  speed: number;
  /** Only for pcm16: 16000 or 48000. */
  sampleRate?: number;
  /** Only for opus: sequence numbers to skip, to simulate lost packets. */
  dropSequences?: Set<number>;
  /** Resolve once the socket is closed by the server (default: close it ourselves after sending). */
  onOpen?(socket: WebSocket): void;
}

export interface StreamedChunk {
  data: Buffer;
  /** Audio time at the end of this chunk, ms. */
  atMs: number;
}

/** The Opus packets of an Ogg file (the corpus's are 20 ms each). */
export const oggPackets = (path: string) => demuxedPackets(path, new prism.opus.OggDemuxer());

/** The Opus packets of a WebM file (the corpus's are 60 ms each). */
export const webmPackets = (path: string) => demuxedPackets(path, new prism.opus.WebmDemuxer());

async function demuxedPackets(path: string, demuxer: prism.opus.OggDemuxer | prism.opus.WebmDemuxer): Promise<Buffer[]> {
  const packets: Buffer[] = [];
  demuxer.on('data', (p: Buffer) => packets.push(p));
  demuxer.end(await readFile(path));
  await new Promise((resolve) => demuxer.on('end', resolve));
  return packets;
}

/** The file cut into the messages a real producer of that format would send. */
export async function chunksFor(options: Pick<StreamOptions, 'format' | 'file' | 'sampleRate' | 'dropSequences'>): Promise<StreamedChunk[]> {
  const { format, file } = options;
  if (format === 'pcm16') {
    const rate = options.sampleRate ?? 16000;
    const { samples } = decodeWav(await readFile(rate === 48000 ? `${file}-48k.wav` : `${file}.wav`));
    const step = rate / 50;
    const chunks: StreamedChunk[] = [];
    for (let i = 0; i < samples.length; i += step) {
      const part = samples.subarray(i, Math.min(samples.length, i + step));
      chunks.push({ data: Buffer.from(part.buffer, part.byteOffset, part.byteLength), atMs: ((i + part.length) / rate) * 1000 });
    }
    return chunks;
  }
  if (format === 'opus') {
    const packets = await oggPackets(`${file}.ogg`);
    const chunks: StreamedChunk[] = [];
    packets.forEach((packet, seq) => {
      if (options.dropSequences?.has(seq)) return;
      const header = Buffer.alloc(2);
      header.writeUInt16BE(seq % 0x10000);
      chunks.push({ data: Buffer.concat([header, packet]), atMs: (seq + 1) * 20 });
    });
    return chunks;
  }
  // Containers: MediaRecorder-style 250 ms slices, paced by byte position.
  const bytes = await readFile(`${file}.${format}`);
  const { samples } = decodeWav(await readFile(`${file}.wav`));
  const durationMs = (samples.length / 16000) * 1000;
  const slices = Math.ceil(durationMs / 250);
  const size = Math.ceil(bytes.length / slices);
  const chunks: StreamedChunk[] = [];
  for (let i = 0; i < slices; i++) chunks.push({ data: bytes.subarray(i * size, (i + 1) * size), atMs: Math.min(durationMs, (i + 1) * 250) });
  return chunks.filter((c) => c.data.length > 0);
}

export function ingestUrl(base: string, sessionId: string, trackId: string, query: Record<string, string | number | undefined>): string {
  const url = new URL(`${base.replace(/^http/, 'ws')}/v1/sessions/${encodeURIComponent(sessionId)}/tracks/${encodeURIComponent(trackId)}/ingest`);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value));
  return url.toString();
}

export interface StreamResult {
  closeCode: number;
  closeReason: string;
  sentMs: number;
}

/** Speed 0 ("as fast as the gateway takes it"): audio sent ahead of the gateway's last ack, at most, ms. */
const AHEAD_OF_ACK_MS = 10000;

/**
 * Streams the chunks, then closes normally; resolves with how the socket closed. `speed` 0 sends as fast
 * as the gateway acknowledges (a producer dumping a whole file and closing would see its close unanswered
 * for as long as the gateway takes to read up to it, and ws gives up on a close after 30 s).
 */
export async function streamChunks(url: string, chunks: StreamedChunk[], speed: number): Promise<StreamResult> {
  const socket = new WebSocket(url);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  socket.on('error', () => {});
  let ackedMs = 0;
  socket.on('message', (data, isBinary) => {
    if (isBinary) return;
    const event = JSON.parse(data.toString()) as { type: string; receivedMs?: number };
    if ((event.type === 'ack' || event.type === 'ready') && event.receivedMs !== undefined) ackedMs = Math.max(ackedMs, event.receivedMs);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    socket.once('close', () => resolve());
  });
  const started = performance.now();
  let sentMs = 0;
  for (const chunk of chunks) {
    if (socket.readyState !== WebSocket.OPEN) break;
    if (speed > 0) {
      const due = started + chunk.atMs / speed - performance.now();
      if (due > 0) await sleep(due);
    } else {
      while (socket.readyState === WebSocket.OPEN && (chunk.atMs - ackedMs > AHEAD_OF_ACK_MS || socket.bufferedAmount > 1 << 20)) await sleep(2);
    }
    socket.send(chunk.data);
    sentMs = chunk.atMs;
  }
  if (socket.readyState === WebSocket.OPEN) socket.close(1000, 'done');
  const { code, reason } = await closed;
  return { closeCode: code, closeReason: reason, sentMs };
}

export interface ResumableFrame {
  payload: Uint8Array;
  durationMs: number;
}

/** The corpus file as frames for the SDK's ResumableIngest (20 ms of PCM, or one Opus packet), with the format that writes them. */
export async function resumableFrames(format: 'opus' | 'webm' | 'pcm16', file: string): Promise<{ frames: ResumableFrame[]; format: FrameFormat }> {
  if (format === 'pcm16') {
    const { samples } = decodeWav(await readFile(`${file}.wav`));
    const frames: ResumableFrame[] = [];
    for (let i = 0; i < samples.length; i += 320) {
      const part = samples.slice(i, i + 320);
      frames.push({ payload: new Uint8Array(part.buffer), durationMs: part.length / 16 });
    }
    return { frames, format: pcm16Frames(16000) };
  }
  const timed = (packets: Buffer[]) => packets.map((payload) => ({ payload, durationMs: opusPacketSamples48k(payload) / 48 }));
  if (format === 'opus') {
    return { frames: timed(await oggPackets(`${file}.ogg`)), format: OPUS_FRAMES };
  }
  // WebM: each connection is a new container stream: the file's header (EBML, Segment, Tracks), a Cluster
  // of unknown size, then one SimpleBlock per packet (its timecode is not read by the gateway's demuxer).
  const bytes = await readFile(`${file}.webm`);
  const header = bytes.subarray(0, bytes.indexOf(Buffer.from([0x1f, 0x43, 0xb6, 0x75])));
  const clusterStart = Buffer.from([0x1f, 0x43, 0xb6, 0x75, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xe7, 0x81, 0x00]);
  const packets = await webmPackets(`${file}.webm`);
  return {
    frames: timed(packets),
    format: {
      format: 'webm',
      preamble: () => Buffer.concat([header, clusterStart]),
      message: (payload) => {
        const body = Buffer.concat([Buffer.from([0x81, 0x00, 0x00, 0x80]), payload]);
        return Buffer.concat([Buffer.from([0xa3, 0x40 | (body.length >> 8), body.length & 0xff]), body]);
      },
    },
  };
}
