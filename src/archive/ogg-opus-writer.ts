/**
 * Muxes Opus packets into an Ogg Opus stream (RFC 3533, RFC 7845) without re-encoding (pure). Pages are
 * returned as bytes when asked for, so the caller decides how much audio a page (and a crash-safe slice)
 * holds. Granule positions count 48 kHz samples from each packet's TOC.
 */
import { opusPacketSamples48k } from '../audio/opus-packet.ts';

/** The CRC of Ogg pages: polynomial 0x04C11DB7, not reflected, initial value 0 (not zlib's CRC-32). */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let k = 0; k < 8; k++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    table[i] = r >>> 0;
  }
  return table;
})();

function oggCrc(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ b) & 0xff]) >>> 0;
  return crc;
}

const HEADER_TYPE = { continued: 0x01, first: 0x02, last: 0x04 };
/** libopus's usual encoder delay at 48 kHz; received streams do not carry theirs. */
const PRE_SKIP = 312;

export interface OggOpusWriterOptions {
  serial: number;
  /** Sample rate of the audio before encoding (informational in OpusHead). */
  inputSampleRate: number;
  vendor?: string;
}

export class OggOpusWriter {
  private readonly options: OggOpusWriterOptions;
  private sequence = 0;
  private granule = 0n;
  private pending: Buffer[] = [];
  private headerWritten = false;
  private ended = false;

  constructor(options: OggOpusWriterOptions) {
    this.options = options;
  }

  /** 48 kHz samples of audio muxed so far. */
  get samples(): number {
    return Number(this.granule);
  }

  /** The two header pages (OpusHead, OpusTags); returned once, by the first call. */
  header(): Buffer {
    if (this.headerWritten) return Buffer.alloc(0);
    this.headerWritten = true;
    const head = Buffer.alloc(19);
    head.write('OpusHead', 0, 'ascii');
    head.writeUInt8(1, 8);
    head.writeUInt8(1, 9);
    head.writeUInt16LE(PRE_SKIP, 10);
    head.writeUInt32LE(this.options.inputSampleRate, 12);
    head.writeInt16LE(0, 16);
    head.writeUInt8(0, 18);
    const vendor = Buffer.from(this.options.vendor ?? 'helssa-live', 'utf8');
    const tags = Buffer.alloc(8 + 4 + vendor.length + 4);
    tags.write('OpusTags', 0, 'ascii');
    tags.writeUInt32LE(vendor.length, 8);
    vendor.copy(tags, 12);
    tags.writeUInt32LE(0, 12 + vendor.length);
    return Buffer.concat([this.page([head], 0n, HEADER_TYPE.first), this.page([tags], 0n, 0)]);
  }

  /** Queues a packet for the next page. */
  packet(packet: Buffer): void {
    if (this.ended) throw new Error('OggOpusWriter: packet after end');
    this.pending.push(packet);
    this.granule += BigInt(opusPacketSamples48k(packet));
  }

  /** The queued packets as page(s); empty when nothing is queued. */
  flush(): Buffer {
    return Buffer.concat([this.header(), ...this.pagesOfPending(0)]);
  }

  /** The last page, flagged end-of-stream. */
  end(): Buffer {
    if (this.ended) return Buffer.alloc(0);
    const header = this.header();
    const pages = this.pagesOfPending(HEADER_TYPE.last);
    this.ended = true;
    // A stream must end with an EOS page even when no packet is left for it.
    if (pages.length === 0) pages.push(this.page([], this.granule, HEADER_TYPE.last));
    return Buffer.concat([header, ...pages]);
  }

  /** Packs pending packets into pages of at most 255 lacing values; the last page gets `lastFlags`. */
  private pagesOfPending(lastFlags: number): Buffer[] {
    const pages: Buffer[] = [];
    let batch: Buffer[] = [];
    let lacing = 0;
    let granule = this.granule - this.pending.reduce((sum, p) => sum + BigInt(opusPacketSamples48k(p)), 0n);
    for (const packet of this.pending) {
      const needed = Math.floor(packet.length / 255) + 1;
      if (lacing + needed > 255 && batch.length > 0) {
        pages.push(this.page(batch, granule, 0));
        batch = [];
        lacing = 0;
      }
      batch.push(packet);
      lacing += needed;
      granule += BigInt(opusPacketSamples48k(packet));
    }
    if (batch.length > 0) pages.push(this.page(batch, granule, lastFlags));
    this.pending = [];
    return pages;
  }

  private page(packets: Buffer[], granule: bigint, flags: number): Buffer {
    const lacing: number[] = [];
    for (const p of packets) {
      for (let left = p.length; ; left -= 255) {
        lacing.push(Math.min(left, 255));
        if (left < 255) break;
      }
    }
    const header = Buffer.alloc(27 + lacing.length);
    header.write('OggS', 0, 'ascii');
    header.writeUInt8(0, 4);
    header.writeUInt8(flags, 5);
    header.writeBigUInt64LE(granule, 6);
    header.writeUInt32LE(this.options.serial, 14);
    header.writeUInt32LE(this.sequence++, 18);
    header.writeUInt32LE(0, 22);
    header.writeUInt8(lacing.length, 26);
    Buffer.from(lacing).copy(header, 27);
    const page = Buffer.concat([header, ...packets]);
    page.writeUInt32LE(oggCrc(page), 22);
    return page;
  }
}
