/**
 * Turns the binary messages of one ingest connection, in its declared format, into audio units for the
 * decoder: Opus packets (demuxed from WebM or Ogg, or sent raw with sequence numbers), lost-packet
 * markers, or 16 kHz PCM. Bytes that do not parse in the declared format become an IngestError carrying
 * the WebSocket close code to answer with.
 */
import { once } from 'node:events';
import type { Transform } from 'node:stream';
import prism from 'prism-media';
import { CloseCode, type IngestFormat } from '../../client-sdk/src/protocol.ts';
import { Decimator48To16 } from '../audio/decimator.ts';
import { PacketSequencer } from '../audio/packet-sequencer.ts';
import { IngestError } from '../errors.ts';

export type AudioUnit =
  | { kind: 'opus'; packet: Buffer }
  | { kind: 'lost'; count: number }
  | { kind: 'pcm'; samples: Int16Array };

export interface PacketSink {
  unit(unit: AudioUnit): void;
  error(error: IngestError): void;
}

export interface PacketSource {
  readonly format: IngestFormat;
  write(message: Buffer): void;
  /** Flushes what the container still holds. */
  end(): Promise<void>;
  readonly lostPackets: number;
}

export function createPacketSource(format: IngestFormat, sampleRate: number, sink: PacketSink): PacketSource {
  switch (format) {
    case 'webm':
      return new ContainerSource(format, new prism.opus.WebmDemuxer(), sink);
    case 'ogg':
      return new ContainerSource(format, new prism.opus.OggDemuxer(), sink);
    case 'opus':
      return new SequencedOpusSource(sink);
    case 'pcm16':
      return new PcmSource(sampleRate, sink);
  }
}

/**
 * Most a demuxer may hold while it waits for the rest of an element. An Ogg page is at most 64 KiB and a
 * WebM Opus block a few KiB; a header that declares more (a SimpleBlock of 2^31 bytes, a page whose
 * lacing never ends) would otherwise make the demuxer concatenate every later frame.
 */
const MAX_DEMUX_BUFFER_BYTES = 1 << 20;

class ContainerSource implements PacketSource {
  readonly format: IngestFormat;
  readonly lostPackets = 0;
  private readonly demuxer: Transform;
  private readonly sink: PacketSink;
  private failed = false;

  constructor(format: IngestFormat, demuxer: Transform, sink: PacketSink) {
    this.format = format;
    this.demuxer = demuxer;
    this.sink = sink;
    demuxer.on('data', (packet: Buffer) => sink.unit({ kind: 'opus', packet }));
    demuxer.on('error', (error: Error) => {
      if (this.failed) return;
      this.failed = true;
      const container = format === 'webm' ? 'WebM/Opus' : 'Ogg/Opus';
      sink.error(new IngestError(CloseCode.invalidPayload, `not a valid ${container} stream: ${error.message}`));
    });
  }

  write(message: Buffer): void {
    if (this.failed) return;
    this.demuxer.write(message);
    // prism-media (pinned) keeps an element's bytes in `_remainder` until it is whole.
    const held = (this.demuxer as unknown as { _remainder: Buffer | null })._remainder?.length ?? 0;
    if (held > MAX_DEMUX_BUFFER_BYTES && !this.failed) {
      this.failed = true;
      this.demuxer.destroy();
      this.sink.error(new IngestError(CloseCode.invalidPayload, `not a valid ${this.format === 'webm' ? 'WebM/Opus' : 'Ogg/Opus'} stream: an element declares more than ${MAX_DEMUX_BUFFER_BYTES} bytes`));
    }
  }

  async end(): Promise<void> {
    if (this.failed || this.demuxer.readableEnded) return;
    this.demuxer.end();
    await once(this.demuxer, 'end').catch(() => undefined);
  }
}

/** `opus` format: each message is a 16-bit big-endian sequence number followed by one Opus packet. */
class SequencedOpusSource implements PacketSource {
  readonly format: IngestFormat = 'opus';
  private readonly sequencer = new PacketSequencer<Buffer>();
  private readonly sink: PacketSink;

  constructor(sink: PacketSink) {
    this.sink = sink;
  }

  get lostPackets(): number {
    return this.sequencer.stats.lost;
  }

  write(message: Buffer): void {
    if (message.length < 3) {
      this.sink.error(new IngestError(CloseCode.invalidPayload, `opus frame of ${message.length} bytes: expected a 2-byte sequence number and a packet`));
      return;
    }
    for (const item of this.sequencer.push(message.readUInt16BE(0), message.subarray(2))) {
      this.sink.unit(item.kind === 'packet' ? { kind: 'opus', packet: item.packet } : item);
    }
  }

  async end(): Promise<void> {}
}

class PcmSource implements PacketSource {
  readonly format: IngestFormat = 'pcm16';
  readonly lostPackets = 0;
  private readonly sink: PacketSink;
  private readonly decimator: Decimator48To16 | undefined;
  private oddByte: Buffer | undefined;

  constructor(sampleRate: number, sink: PacketSink) {
    this.sink = sink;
    this.decimator = sampleRate === 48000 ? new Decimator48To16() : undefined;
  }

  write(message: Buffer): void {
    let bytes = this.oddByte ? Buffer.concat([this.oddByte, message]) : message;
    this.oddByte = bytes.length % 2 ? Buffer.from(bytes.subarray(bytes.length - 1)) : undefined;
    if (this.oddByte) bytes = bytes.subarray(0, bytes.length - 1);
    if (bytes.length === 0) return;
    const aligned = Buffer.from(bytes);
    const samples = new Int16Array(aligned.buffer, aligned.byteOffset, aligned.length / 2);
    this.sink.unit({ kind: 'pcm', samples: this.decimator ? this.decimator.process(samples) : samples });
  }

  async end(): Promise<void> {}
}
