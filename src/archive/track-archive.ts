/**
 * The encrypted recording of one track connection, written while it streams. Only ciphertext touches
 * disk, encrypted to the clinic's age recipients (public keys: the gateway cannot read it back).
 *
 * Two files grow side by side in the track's spool directory:
 *  - `full.ogg.age`: the whole Ogg Opus stream as one age file, encrypted as it streams. age seals
 *    64 KiB chunks, so up to 64 KiB of the newest audio only exists in memory until the track ends.
 *  - `slices/NNNNNN.ogg.age`: the same bytes cut every second of audio into separate age files, each
 *    created and filled in one step, then fsynced. They are the crash guarantee: after a SIGKILL at
 *    most the last second is missing, and decrypting the slices in order and concatenating them gives the Ogg stream so far.
 * On a clean end `complete.json` records size, plaintext SHA-256 and duration, and the full file is what
 * gets uploaded; the slices are deleted with the spool once the upload has succeeded.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsync, openSync, writeSync } from 'node:fs';
import { mkdir, open, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import opus from '@discordjs/opus';
import { Encrypter } from 'age-encryption';
import { ageRecipient } from './age-recipient.ts';
import { Framer } from '../audio/framer.ts';
import { OggOpusWriter } from './ogg-opus-writer.ts';

const SLICE_SAMPLES_48K = 48000;
const PCM_FRAME_SAMPLES = 320; // 20 ms at 16 kHz

export interface CompletedArchive {
  dir: string;
  file: string;
  sizeBytes: number;
  plaintextSha256: string;
  durationMs: number;
}

export interface TrackArchiveOptions {
  dir: string;
  recipients: readonly string[];
  /** Sample rate the producer captured at (informational in the Ogg header). */
  inputSampleRate: number;
  serial: number;
}

/** A track connection's recording as it streams: what the pipeline writes to and the archiver seals. */
export interface TrackSpool {
  /** A received Opus packet, archived as is. */
  packet(packet: Buffer): void;
  /** 16 kHz PCM (PCM ingest), encoded to Opus for the archive. */
  pcm(samples: Int16Array): void;
  /** A gap in the track, as Opus silence. */
  silence(ms: number): void;
  /** Ends the stream and seals the spool. */
  close(): Promise<CompletedArchive>;
}

/** Where spools are written: in this thread (TrackArchive.open), or in a worker thread (ArchiveThread). */
export interface TrackSpools {
  open(options: TrackArchiveOptions): Promise<TrackSpool>;
  close?(): Promise<void>;
}

/** 16 kHz PCM → 20 ms Opus packets, for the archive of a PCM track. */
export class PcmToOpus {
  private readonly encoder = new opus.OpusEncoder(16000, 1);
  private readonly framer = new Framer(PCM_FRAME_SAMPLES);

  encode(samples: Int16Array, packet: (packet: Buffer) => void): void {
    for (const frame of this.framer.push(samples)) packet(this.encoder.encode(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)));
  }
}

export const IN_PROCESS_SPOOLS: TrackSpools = { open: (options) => TrackArchive.open(options) };

/** A 20 ms fullband CELT frame that decodes to digital silence (TOC 0xf8, then an all-silence frame). */
export const OPUS_SILENCE_FRAME = Buffer.from([0xf8, 0xff, 0xfe]);

/**
 * Creates and fills a slice in one step (a few kilobytes to the page cache: a process killed afterwards
 * leaves it whole, killed before leaves none), then flushes it to disk without blocking. Synchronous on
 * purpose: it runs in the archive's worker thread, beside the event loop that carries the audio, and a
 * slice written asynchronously stays in flight longer (a kill then loses it too).
 */
async function writeDurably(path: string, bytes: Uint8Array): Promise<void> {
  const fd = openSync(path, 'wx');
  try {
    writeSync(fd, bytes);
    await new Promise<void>((resolve, reject) => fsync(fd, (error) => (error ? reject(error) : resolve())));
  } finally {
    closeSync(fd);
  }
}

export class TrackArchive implements TrackSpool {
  private readonly options: TrackArchiveOptions;
  private readonly encrypter = new Encrypter();
  private readonly writer: OggOpusWriter;
  private readonly sha256 = createHash('sha256');
  private plaintext!: ReadableStreamDefaultController<Uint8Array>;
  private fullWritten!: Promise<number>;
  private slices: Promise<void> = Promise.resolve();
  private sliceCount = 0;
  private samplesInSlices = 0;
  private pcmEncoder: PcmToOpus | undefined;
  private failure: Error | undefined;
  private sealed = false;

  private constructor(options: TrackArchiveOptions) {
    this.options = options;
    this.writer = new OggOpusWriter({ serial: options.serial, inputSampleRate: options.inputSampleRate });
    for (const recipient of options.recipients) this.encrypter.addRecipient(ageRecipient(recipient));
  }

  static async open(options: TrackArchiveOptions): Promise<TrackArchive> {
    await mkdir(join(options.dir, 'slices'), { recursive: true });
    const archive = new TrackArchive(options);
    await archive.startFullFile();
    return archive;
  }

  /** Failure of a disk write, if any (the stream goes on; the caller reports it). */
  get error(): Error | undefined {
    return this.failure;
  }

  /** A received Opus packet, archived as is. */
  packet(packet: Buffer): void {
    if (this.sealed) throw new Error('TrackArchive: packet after close');
    this.writer.packet(packet);
    if (this.writer.samples - this.samplesInSlices >= SLICE_SAMPLES_48K) this.emit(this.writer.flush());
  }

  /** A gap of `ms` in the track, as 20 ms Opus silence frames (to the nearest frame). */
  silence(ms: number): void {
    for (let frames = Math.round(ms / 20); frames > 0; frames--) this.packet(OPUS_SILENCE_FRAME);
  }

  /** 16 kHz PCM (PCM ingest): encoded to Opus once, for the archive only. */
  pcm(samples: Int16Array): void {
    this.pcmEncoder ??= new PcmToOpus();
    this.pcmEncoder.encode(samples, (packet) => this.packet(packet));
  }

  /** Ends the stream and seals both files. */
  async close(): Promise<CompletedArchive> {
    this.sealed = true;
    this.emit(this.writer.end());
    this.plaintext.close();
    const sizeBytes = await this.fullWritten;
    await this.slices;
    if (this.failure) throw this.failure;
    const file = join(this.options.dir, 'full.ogg.age');
    await rename(`${file}.partial`, file);
    const completed = { dir: this.options.dir, file, sizeBytes, plaintextSha256: this.sha256.digest('hex'), durationMs: Math.round(this.writer.samples / 48) };
    await writeFile(join(this.options.dir, 'complete.json'), JSON.stringify(completed));
    return completed;
  }

  private async startFullFile(): Promise<void> {
    const input = new ReadableStream<Uint8Array>({ start: (controller) => void (this.plaintext = controller) });
    const ciphertext = await this.encrypter.encrypt(input);
    const file = await open(join(this.options.dir, 'full.ogg.age.partial'), 'wx');
    this.fullWritten = (async () => {
      let size = 0;
      try {
        const reader = ciphertext.getReader();
        for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
          await file.write(chunk.value);
          size += chunk.value.length;
        }
        await file.sync();
      } catch (error) {
        this.failure ??= error as Error;
      } finally {
        await file.close();
      }
      return size;
    })();
  }

  private emit(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.samplesInSlices = this.writer.samples;
    this.sha256.update(bytes);
    this.plaintext.enqueue(new Uint8Array(bytes));
    const name = join(this.options.dir, 'slices', `${String(++this.sliceCount).padStart(6, '0')}.ogg.age`);
    this.slices = this.slices
      .then(async () => writeDurably(name, await this.encrypter.encrypt(new Uint8Array(bytes))))
      .catch((error: Error) => void (this.failure ??= error));
  }
}
