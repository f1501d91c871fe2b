/**
 * A live track's tail: its audio past what its stored finals cover (`durableMs`), kept where every
 * gateway of a fleet can read it. A producer that cannot resend (WHIP, plain RTP, a WebSocket client
 * without the SDK's resume) would otherwise lose, with its gateway, the utterance it was in and the
 * windows that were at STT; the gateway its next connection reaches (or the one ending the session)
 * takes the tail and transcribes it first. The SDK's producers resend that audio themselves: their tail
 * is discarded.
 *
 * The tail is written whole every `flushEveryMs` of wall time (so a gateway's death costs at most that
 * much), sealed with the session's data key (AES-GCM, as every audio the gateway reads back), with an
 * expiry; a track that ends normally deletes it once its last finals are stored.
 */
import type { AudioUnit } from '../demux/packet-source.ts';
import type { AudioSealer } from '../archive/data-keys.ts';
import type { Logger } from '../log.ts';
import { opusPacketSamples48k } from '../audio/opus-packet.ts';

/** Where tails are kept: shared by the fleet (Redis). `take` reads and deletes at once: one gateway gets a tail. */
export interface TailStore {
  put(key: string, blob: Buffer, ttlMs: number): Promise<void>;
  take(key: string): Promise<Buffer | undefined>;
  delete(key: string): Promise<void>;
}

/** What a track's pipeline tells its tail: each unit of audio it took, at its track time, and where its finals are stored to. */
export interface TailSink {
  audio(atMs: number, unit: AudioUnit, durableMs: number): void;
}

/** A tail read back: its units in order, the first at `startMs`. */
export interface RecoveredTail {
  startMs: number;
  endMs: number;
  units: AudioUnit[];
}

const MAGIC = 0x484c5431; // "HLT1"
const KIND_OPUS = 0;
const KIND_PCM = 1;
const HEADER_BYTES = 8;
const ENTRY_HEADER_BYTES = 13;

/** Units of audio with their track times, oldest first; those before `durableMs` are dropped as it moves. */
export class TailBuffer {
  private times: number[] = [];
  private kinds: number[] = [];
  private data: Uint8Array[] = [];
  private head = 0;
  /** Track time where the newest unit ends (the next unit's time). */
  private endMs = 0;

  /** An Opus packet (as received, `durationMs` long) or PCM samples (copied: a source may reuse them). */
  add(atMs: number, unit: AudioUnit, durationMs: number): void {
    if (unit.kind === 'opus') {
      this.kinds.push(KIND_OPUS);
      this.data.push(unit.packet);
    } else if (unit.kind === 'pcm') {
      this.kinds.push(KIND_PCM);
      this.data.push(new Uint8Array(unit.samples.slice().buffer));
    } else {
      return;
    }
    this.times.push(atMs);
    this.endMs = atMs + durationMs;
  }

  /** Drops the units that end before `durableMs` (a unit reaching past it is kept whole). */
  keepFrom(durableMs: number): void {
    while (this.head < this.times.length - 1 && this.times[this.head + 1] <= durableMs) this.head++;
    if (this.head < this.times.length && this.endMs <= durableMs) this.head = this.times.length;
    if (this.head > 256 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.kinds = this.kinds.slice(this.head);
      this.data = this.data.slice(this.head);
      this.head = 0;
    }
  }

  get length(): number {
    return this.times.length - this.head;
  }

  /** The units kept, as bytes: header, then per unit its time, kind, length and payload. */
  encode(): Buffer {
    let bytes = HEADER_BYTES;
    for (let i = this.head; i < this.times.length; i++) bytes += ENTRY_HEADER_BYTES + this.data[i].byteLength;
    const out = Buffer.allocUnsafe(bytes);
    out.writeUInt32BE(MAGIC, 0);
    out.writeUInt32BE(this.length, 4);
    let at = HEADER_BYTES;
    for (let i = this.head; i < this.times.length; i++) {
      out.writeDoubleBE(this.times[i], at);
      out.writeUInt8(this.kinds[i], at + 8);
      out.writeUInt32BE(this.data[i].byteLength, at + 9);
      out.set(this.data[i], at + ENTRY_HEADER_BYTES);
      at += ENTRY_HEADER_BYTES + this.data[i].byteLength;
    }
    return out;
  }
}

/**
 * A tail's bytes back as units, keeping those that start at or after `fromMs` (what stored finals
 * already cover is not transcribed twice). Throws on bytes that are not a tail.
 */
export function decodeTail(bytes: Buffer, fromMs: number): RecoveredTail | undefined {
  if (bytes.length < HEADER_BYTES || bytes.readUInt32BE(0) !== MAGIC) throw new Error('not a track tail');
  const count = bytes.readUInt32BE(4);
  const units: AudioUnit[] = [];
  let startMs = Number.NaN;
  let endMs = Number.NaN;
  let at = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (at + ENTRY_HEADER_BYTES > bytes.length) throw new Error('track tail cut short');
    const atMs = bytes.readDoubleBE(at);
    const kind = bytes.readUInt8(at + 8);
    const length = bytes.readUInt32BE(at + 9);
    const payload = bytes.subarray(at + ENTRY_HEADER_BYTES, at + ENTRY_HEADER_BYTES + length);
    if (payload.length !== length || (kind !== KIND_OPUS && kind !== KIND_PCM)) throw new Error('track tail corrupt');
    at += ENTRY_HEADER_BYTES + length;
    if (atMs < fromMs) continue;
    const unit: AudioUnit = kind === KIND_OPUS ? { kind: 'opus', packet: Buffer.from(payload) } : { kind: 'pcm', samples: new Int16Array(Uint8Array.from(payload).buffer) };
    if (units.length === 0) startMs = atMs;
    units.push(unit);
    endMs = atMs + unitMs(unit);
  }
  return units.length > 0 ? { startMs, endMs, units } : undefined;
}

export interface TrackTailsOptions {
  store: TailStore;
  sealer: AudioSealer;
  /** The session's wrapped data key (created on first use). */
  dataKey(sessionId: string): Promise<string>;
  /** How often a live track's tail is written (wall time): the most a gateway's death costs a producer that cannot resend. */
  flushEveryMs: number;
  /** How long a tail nobody took stays (a track whose producer never came back, ended with its session). */
  ttlMs: number;
  log: Logger;
}

interface TailKey {
  sessionId: string;
  trackId: string;
  epoch: number;
}

/** The tails of this gateway's live tracks, and the way to take another gateway's. */
export class TrackTails {
  private readonly options: TrackTailsOptions;

  constructor(options: TrackTailsOptions) {
    this.options = options;
  }

  /** The tail of one connection of a track (its epoch), written while it is live. */
  open(key: TailKey): TrackTail {
    return new TrackTail(this.options, key);
  }

  /**
   * Takes a stopped connection's tail (the one gateway that gets it transcribes it), its audio from
   * `fromMs` on; undefined when there is none or it cannot be read (logged: its words are lost, as
   * they were before tails).
   */
  async take(key: TailKey, fromMs: number): Promise<RecoveredTail | undefined> {
    const name = tailKey(key);
    try {
      const blob = await this.options.store.take(name);
      if (!blob) return undefined;
      const bytes = await this.options.sealer.open(await this.options.dataKey(key.sessionId), blob, name);
      return decodeTail(bytes, fromMs);
    } catch (error) {
      this.options.log.error({ err: error, ...key }, "a stopped connection's tail could not be read: its last words are lost");
      return undefined;
    }
  }

  /** A producer that resends its audio itself came back: the stopped connection's tail is not needed. */
  discard(key: TailKey): void {
    this.options.store.delete(tailKey(key)).catch((error: Error) => this.options.log.debug({ err: error, ...key }, 'tail not deleted (it expires)'));
  }
}

/** One live connection's tail: units kept from its stored finals on, written every `flushEveryMs`. */
export class TrackTail implements TailSink {
  private readonly options: TrackTailsOptions;
  private readonly sessionId: string;
  private readonly key: string;
  private readonly buffer = new TailBuffer();
  private lastFlushAt = performance.now();
  private writing: Promise<void> | undefined;
  private closed = false;

  constructor(options: TrackTailsOptions, key: TailKey) {
    this.options = options;
    this.sessionId = key.sessionId;
    this.key = tailKey(key);
  }

  audio(atMs: number, unit: AudioUnit, durableMs: number): void {
    if (this.closed) return;
    this.buffer.add(atMs, unit, unitMs(unit));
    const now = performance.now();
    if (now - this.lastFlushAt < this.options.flushEveryMs || this.writing) return;
    this.lastFlushAt = now;
    this.buffer.keepFrom(durableMs);
    const bytes = this.buffer.encode();
    this.writing = this.write(bytes).finally(() => (this.writing = undefined));
  }

  private async write(bytes: Buffer): Promise<void> {
    try {
      const blob = await this.options.sealer.seal(await this.options.dataKey(this.sessionId), bytes, this.key);
      if (!this.closed) await this.options.store.put(this.key, blob, this.options.ttlMs);
    } catch (error) {
      this.options.log.debug({ err: error, key: this.key }, 'tail not written (retried with the next flush)');
    }
  }

  /** The connection ended and its finals are stored: its tail goes (after a write in flight, which would bring it back). */
  async close(): Promise<void> {
    this.closed = true;
    await this.writing;
    await this.options.store.delete(this.key).catch((error: Error) => this.options.log.debug({ err: error, key: this.key }, 'tail not deleted (it expires)'));
  }
}

/** A unit's length in track time: an Opus packet's own duration (20 ms if unreadable), PCM at 16 kHz. */
function unitMs(unit: AudioUnit): number {
  if (unit.kind === 'pcm') return unit.samples.length / 16;
  if (unit.kind === 'opus') return opusPacketSamples48k(unit.packet) / 48 || 20;
  return unit.count * 20;
}

function tailKey({ sessionId, trackId, epoch }: TailKey): string {
  return `helssa:tail:${sessionId}:${trackId}:${epoch}`;
}
