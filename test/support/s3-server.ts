/** A real S3 server process for tests (the `s3rver` package), stoppable and restartable on one port. */
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

export const S3_BUCKET = 'recordings';
export const S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export class S3Server {
  private server: S3rver | undefined;
  private directory = '';
  private port = 0;

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Gateway configuration for this server. */
  get env(): Record<string, string> {
    return {
      ARCHIVE_STORE: 's3',
      S3_ENDPOINT: this.endpoint,
      S3_BUCKET,
      S3_FORCE_PATH_STYLE: 'true',
      S3_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
      S3_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
    };
  }

  async start(): Promise<this> {
    this.directory ||= await mkdtemp(join(tmpdir(), 'helssa-s3-'));
    this.server = new S3rver({ address: '127.0.0.1', port: this.port, directory: this.directory, silent: true, configureBuckets: [{ name: S3_BUCKET, configs: [] }] });
    const address = (await this.server.run()) as { port: number };
    this.port = address.port;
    return this;
  }

  /** An outage: the port stops answering, open connections are cut. Objects stay on disk. */
  async stop(): Promise<void> {
    const http = (this.server as unknown as { httpServer?: Server }).httpServer;
    http?.closeAllConnections();
    await this.server?.close();
    this.server = undefined;
  }

  async destroy(): Promise<void> {
    if (this.server) await this.stop();
    await rm(this.directory, { recursive: true, force: true });
  }
}
