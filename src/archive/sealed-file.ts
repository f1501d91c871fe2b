/**
 * A file encrypted at rest in 64 KiB AES-256-GCM chunks, so it can be written as it streams in and read
 * back at any offset (ffprobe and ffmpeg seek: an MP4 keeps its index at the end). Each chunk's nonce is
 * the file's random prefix and the chunk number; the additional data names the file, the chunk and
 * whether it is the last, so chunks cannot be reordered, moved to another file, or the file cut short.
 *   layout: "HLF1" | nonce prefix (8) | chunk 0 ciphertext | tag | chunk 1 … | last chunk | tag
 *
 * ffprobe and ffmpeg read such a file through `serveOnLoopback`: a one-file HTTP server on 127.0.0.1
 * behind a random path, answering range requests with decrypted bytes, so no plaintext touches disk.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { DecryptionError } from './data-keys.ts';

const MAGIC = Buffer.from('HLF1');
const PREFIX_BYTES = 8;
const HEADER_BYTES = MAGIC.length + PREFIX_BYTES;
const TAG_BYTES = 16;
export const SEALED_CHUNK_BYTES = 64 * 1024;

function iv(prefix: Buffer, index: number): Buffer {
  const out = Buffer.alloc(12);
  prefix.copy(out, 0);
  out.writeUInt32BE(index, 8);
  return out;
}

const aad = (name: string, index: number, last: boolean) => Buffer.from(`${name}:${index}:${last ? 1 : 0}`);

export class SealedFileWriter {
  private readonly file: FileHandle;
  private readonly key: Buffer;
  private readonly name: string;
  private readonly prefix: Buffer;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private chunks = 0;

  private constructor(file: FileHandle, key: Buffer, name: string, prefix: Buffer) {
    this.file = file;
    this.key = key;
    this.name = name;
    this.prefix = prefix;
  }

  static async create(path: string, key: Buffer, name: string): Promise<SealedFileWriter> {
    const file = await open(path, 'wx', 0o600);
    const prefix = randomBytes(PREFIX_BYTES);
    await file.write(Buffer.concat([MAGIC, prefix]));
    return new SealedFileWriter(file, key, name, prefix);
  }

  async write(bytes: Buffer): Promise<void> {
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    // Strictly more than one chunk: the last chunk is only known at end().
    while (this.pendingBytes > SEALED_CHUNK_BYTES) {
      const all = Buffer.concat(this.pending);
      await this.writeChunk(all.subarray(0, SEALED_CHUNK_BYTES), false);
      this.pending = [all.subarray(SEALED_CHUNK_BYTES)];
      this.pendingBytes = all.length - SEALED_CHUNK_BYTES;
    }
  }

  async end(): Promise<void> {
    try {
      await this.writeChunk(Buffer.concat(this.pending), true);
      await this.file.sync();
    } finally {
      await this.file.close();
    }
  }

  /** Stops without sealing (the caller removes the file). */
  async abort(): Promise<void> {
    await this.file.close().catch(() => undefined);
  }

  private async writeChunk(plaintext: Buffer, last: boolean): Promise<void> {
    const cipher = createCipheriv('aes-256-gcm', this.key, iv(this.prefix, this.chunks));
    cipher.setAAD(aad(this.name, this.chunks, last));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    this.chunks++;
    await this.file.write(body);
  }
}

export class SealedFileReader {
  readonly size: number;
  private readonly path: string;
  private readonly key: Buffer;
  private readonly name: string;
  private readonly prefix: Buffer;
  private readonly chunkCount: number;

  private constructor(path: string, key: Buffer, name: string, prefix: Buffer, fileBytes: number) {
    this.path = path;
    this.key = key;
    this.name = name;
    this.prefix = prefix;
    this.chunkCount = Math.max(1, Math.ceil((fileBytes - HEADER_BYTES) / (SEALED_CHUNK_BYTES + TAG_BYTES)));
    this.size = fileBytes - HEADER_BYTES - this.chunkCount * TAG_BYTES;
  }

  static async open(path: string, key: Buffer, name: string): Promise<SealedFileReader> {
    const file = await open(path, 'r');
    try {
      const { size } = await file.stat();
      const header = Buffer.alloc(HEADER_BYTES);
      await file.read(header, 0, HEADER_BYTES, 0);
      if (size < HEADER_BYTES + TAG_BYTES || !header.subarray(0, 4).equals(MAGIC)) throw new DecryptionError(`${name} is not a sealed file`);
      return new SealedFileReader(path, key, name, header.subarray(4), size);
    } finally {
      await file.close();
    }
  }

  /** Plaintext bytes [start, end). */
  async read(start: number, end: number): Promise<Buffer> {
    end = Math.min(end, this.size);
    if (start >= end) return Buffer.alloc(0);
    const first = Math.floor(start / SEALED_CHUNK_BYTES);
    const last = Math.floor((end - 1) / SEALED_CHUNK_BYTES);
    const file = await open(this.path, 'r');
    try {
      const parts: Buffer[] = [];
      for (let index = first; index <= last; index++) parts.push(await this.chunk(file, index));
      const joined = Buffer.concat(parts);
      const offset = first * SEALED_CHUNK_BYTES;
      return joined.subarray(start - offset, end - offset);
    } finally {
      await file.close();
    }
  }

  /** The plaintext as a stream, chunk by chunk. */
  stream(): Readable {
    const reader = this;
    return Readable.from((async function* () {
      for (let start = 0; start < reader.size; start += SEALED_CHUNK_BYTES) yield await reader.read(start, start + SEALED_CHUNK_BYTES);
    })());
  }

  private async chunk(file: FileHandle, index: number): Promise<Buffer> {
    const isLast = index === this.chunkCount - 1;
    const plainBytes = isLast ? this.size - index * SEALED_CHUNK_BYTES : SEALED_CHUNK_BYTES;
    const stored = Buffer.alloc(plainBytes + TAG_BYTES);
    await file.read(stored, 0, stored.length, HEADER_BYTES + index * (SEALED_CHUNK_BYTES + TAG_BYTES));
    const decipher = createDecipheriv('aes-256-gcm', this.key, iv(this.prefix, index));
    decipher.setAAD(aad(this.name, index, isLast));
    decipher.setAuthTag(stored.subarray(plainBytes));
    try {
      return Buffer.concat([decipher.update(stored.subarray(0, plainBytes)), decipher.final()]);
    } catch {
      throw new DecryptionError(`chunk ${index} of ${this.name} does not decrypt: wrong key, altered or cut short`);
    }
  }
}

/** Serves the decrypted file to a local reader (ffprobe, ffmpeg) over HTTP with byte ranges. */
export async function serveOnLoopback(reader: SealedFileReader): Promise<{ url: string; close(): Promise<void> }> {
  const secret = randomBytes(24).toString('hex');
  const server = createServer((request, response) => {
    if (request.url !== `/${secret}` || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404).end();
      return;
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    const end = range && range[2] ? Math.min(Number(range[2]) + 1, reader.size) : reader.size;
    if (start > reader.size || end < start) {
      response.writeHead(416, { 'content-range': `bytes */${reader.size}` }).end();
      return;
    }
    response.writeHead(range ? 206 : 200, {
      'accept-ranges': 'bytes',
      'content-length': end - start,
      'content-type': 'application/octet-stream',
      ...(range ? { 'content-range': `bytes ${start}-${Math.max(start, end - 1)}/${reader.size}` } : {}),
    });
    if (request.method === 'HEAD') {
      response.end();
      return;
    }
    void (async () => {
      for (let at = start; at < end && !response.destroyed; at += SEALED_CHUNK_BYTES) {
        if (!response.write(await reader.read(at, Math.min(end, at + SEALED_CHUNK_BYTES)))) await once(response, 'drain').catch(() => undefined);
      }
      response.end();
    })().catch(() => response.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/${secret}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
