/**
 * Where archived recordings end up: S3-compatible object storage (AWS S3, MinIO…) through the AWS SDK,
 * with streaming multipart uploads, or a local directory (the embedded default).
 */
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { insideRoot } from './safe-path.ts';
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

export interface ObjectStore {
  readonly description: string;
  putFile(key: string, path: string, metadata: Record<string, string>): Promise<void>;
  putBytes(key: string, bytes: Uint8Array, contentType: string): Promise<void>;
  /** Deletes every object whose key starts with `prefix`; resolves with how many there were. */
  deletePrefix(prefix: string): Promise<number>;
}

export interface S3Options {
  endpoint?: string;
  bucket: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  forcePathStyle: boolean;
  /**
   * A request that makes no progress this long (connecting, or its socket idle) fails and is retried like
   * any failure: storage that stalls, its connections open and nothing answered, holds no streaming round,
   * seal or upload for ever.
   */
  timeoutMs: number;
}

export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;

  constructor(options: S3Options) {
    this.bucket = options.bucket;
    this.description = `s3://${options.bucket}${options.endpoint ? ` at ${options.endpoint}` : ''}`;
    this.client = new S3Client({
      region: options.region,
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle,
      credentials: options.accessKeyId && options.secretAccessKey ? { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey } : undefined,
      // The uploader retries whole uploads for as long as storage is down; the SDK need not wait long.
      maxAttempts: 2,
      requestHandler: { connectionTimeout: options.timeoutMs, socketTimeout: options.timeoutMs },
    });
  }

  async putFile(key: string, path: string, metadata: Record<string, string>): Promise<void> {
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: createReadStream(path), ContentType: 'application/octet-stream', Metadata: metadata },
      partSize: 8 * 1024 * 1024,
      queueSize: 2,
      leavePartsOnError: false,
    });
    await upload.done();
  }

  async putBytes(key: string, bytes: Uint8Array, contentType: string): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: bytes, ContentType: contentType }));
  }

  async deletePrefix(prefix: string): Promise<number> {
    let deleted = 0;
    // A page of keys at a time (at most 1000, what one DeleteObjects takes), until none is left.
    for (;;) {
      const listed = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: 1000 }));
      const keys = (listed.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length === 0) return deleted;
      const result = await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys, Quiet: true } }));
      if (result.Errors?.length) throw new Error(`could not delete ${result.Errors.length} objects under ${prefix}: ${result.Errors[0].Message ?? result.Errors[0].Code}`);
      deleted += keys.length;
    }
  }

  /** For tests and the recovery script. */
  async getBytes(key: string): Promise<Uint8Array> {
    const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    return response.Body!.transformToByteArray();
  }

  destroy(): void {
    this.client.destroy();
  }
}

export class LocalObjectStore implements ObjectStore {
  readonly description: string;
  private readonly root: string;

  constructor(root: string) {
    this.root = root;
    this.description = `directory ${root}`;
  }

  async putFile(key: string, path: string, metadata: Record<string, string>): Promise<void> {
    const target = insideRoot(this.root, key);
    await mkdir(dirname(target), { recursive: true });
    await copyFile(path, `${target}.partial`);
    await rename(`${target}.partial`, target);
    // A streamed slice has none: no file for it (a live track puts a slice a second).
    if (Object.keys(metadata).length > 0) await writeFile(`${target}.meta.json`, JSON.stringify(metadata));
  }

  async putBytes(key: string, bytes: Uint8Array): Promise<void> {
    const target = insideRoot(this.root, key);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(`${target}.partial`, bytes);
    await rename(`${target}.partial`, target);
  }

  async deletePrefix(prefix: string): Promise<number> {
    // The keys under a prefix: a directory's files (with their metadata files), or a name's beginning.
    const base = insideRoot(this.root, prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
    const dir = prefix.endsWith('/') ? base : dirname(base);
    const start = prefix.endsWith('/') ? '' : base.slice(dir.length + 1);
    const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
    const matching = entries.filter((e) => e.isFile() && !e.name.endsWith('.meta.json') && join(e.parentPath, e.name).slice(dir.length + 1).startsWith(start));
    for (const entry of matching) {
      const file = join(entry.parentPath, entry.name);
      await rm(file, { force: true });
      await rm(`${file}.meta.json`, { force: true });
    }
    if (prefix.endsWith('/')) await rm(dir, { recursive: true, force: true });
    return matching.length;
  }
}
