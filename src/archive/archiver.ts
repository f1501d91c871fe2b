/**
 * Archives every track connection: opens its encrypted spool (TrackArchive) when the track starts, seals
 * it when the track ends, and uploads it to the object store — retrying for as long as storage is down,
 * while audio keeps being spooled. At start it recovers spools a killed process left: a sealed one is
 * uploaded as usual; an unsealed one uploads its one-second slices and a manifest. A spool is deleted
 * only after its upload succeeded.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { Encrypter } from 'age-encryption';
import pRetry from 'p-retry';
import type { Logger } from '../log.ts';
import type { SessionStore } from '../store/session-store.ts';
import type { ObjectStore } from './object-store.ts';
import { insideRoot, pathSegment } from './safe-path.ts';
import { TrackArchive, type CompletedArchive } from './track-archive.ts';

export interface ArchiverOptions {
  spoolDir: string;
  recipients: readonly string[];
  objects: ObjectStore;
  /** Key prefix in the bucket, e.g. `clinic-a/`. */
  prefix: string;
  store: SessionStore;
  log: Logger;
  /** First pause after a failed upload; doubles up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
}

interface TrackKey {
  sessionId: string;
  trackId: string;
  epoch: number;
}

interface UploadJob extends TrackKey {
  dir: string;
  kind: 'full' | 'slices';
}

export function recipientFingerprint(recipient: string): string {
  return createHash('sha256').update(recipient).digest('hex').slice(0, 16);
}

export class Archiver {
  private readonly options: Required<ArchiverOptions>;
  private readonly log: Logger;
  private readonly queue: UploadJob[] = [];
  private readonly lastErrors = new Map<string, string>();
  /** Spools of tracks streaming in this process: never taken for a crash's leftovers. */
  private readonly open = new Set<string>();
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly stopping = new AbortController();
  private readonly worker: Promise<void>;

  constructor(options: ArchiverOptions) {
    this.options = { retryMs: 1000, maxRetryMs: 30000, ...options };
    this.log = options.log.child({ component: 'archive' });
    this.worker = this.uploadLoop();
  }

  get description(): string {
    return this.options.objects.description;
  }

  /** Uploads waiting (storage down or slow) per session: the archive is behind. */
  backlog(sessionId: string): { pendingUploads: number; lastError: string | null } {
    const pending = this.queue.filter((j) => j.sessionId === sessionId).length;
    return { pendingUploads: pending, lastError: pending ? (this.lastErrors.get(sessionId) ?? null) : null };
  }

  async openTrack(key: TrackKey, inputSampleRate: number): Promise<TrackArchive> {
    const dir = this.spoolFor(key);
    this.open.add(dir);
    const archive = await TrackArchive.open({ dir, recipients: this.options.recipients, inputSampleRate, serial: (Date.now() ^ (key.epoch << 20)) >>> 0 });
    await this.options.store.saveRecording({
      ...key,
      kind: 'full',
      state: 'spooled',
      objectKey: this.objectKey(key),
      recipientFingerprints: this.options.recipients.map(recipientFingerprint),
    });
    return archive;
  }

  /** Seals the spool and queues the upload (which the caller does not wait for). */
  async completeTrack(key: TrackKey, archive: TrackArchive): Promise<CompletedArchive> {
    const completed = await archive.close().finally(() => this.open.delete(this.spoolFor(key)));
    await this.options.store.updateRecording(key, { sizeBytes: completed.sizeBytes, plaintextSha256: completed.plaintextSha256, durationMs: completed.durationMs });
    this.enqueue({ ...key, dir: completed.dir, kind: 'full' });
    return completed;
  }

  /**
   * Archives an uploaded recording as it came (any container), encrypted while it is read, and queues
   * the upload. The object key ends in `<extension>.age`.
   */
  async archiveFile(key: TrackKey, source: Readable, extension: string, durationMs: number): Promise<CompletedArchive> {
    const dir = this.spoolFor(key);
    await mkdir(dir, { recursive: true });
    const encrypter = new Encrypter();
    for (const recipient of this.options.recipients) encrypter.addRecipient(recipient);
    const sha256 = createHash('sha256');
    const plaintext = Readable.toWeb(source) as ReadableStream<Uint8Array>;
    const hashed = plaintext.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({ transform: (chunk, out) => (sha256.update(chunk), out.enqueue(chunk)) }));
    const file = join(dir, `full.${extension}.age`);
    const output = await open(`${file}.partial`, 'w');
    let sizeBytes = 0;
    try {
      const reader = ((await encrypter.encrypt(hashed)) as ReadableStream<Uint8Array>).getReader();
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        await output.write(chunk.value);
        sizeBytes += chunk.value.length;
      }
      await output.sync();
    } finally {
      await output.close();
    }
    await rename(`${file}.partial`, file);
    const completed: CompletedArchive = { dir, file, sizeBytes, plaintextSha256: sha256.digest('hex'), durationMs };
    await writeFile(join(dir, 'complete.json'), JSON.stringify(completed));
    await this.options.store.saveRecording({
      ...key, kind: 'full', state: 'spooled', objectKey: this.objectKey(key, `${extension}.age`),
      sizeBytes, plaintextSha256: completed.plaintextSha256, durationMs, recipientFingerprints: this.options.recipients.map(recipientFingerprint),
    });
    this.enqueue({ ...key, dir, kind: 'full' });
    return completed;
  }

  /** At start, before accepting producers: queues every spool a previous process left behind. */
  async recover(): Promise<number> {
    let recovered = 0;
    for (const dir of await this.spoolDirectories()) {
      if (this.open.has(dir)) continue;
      const key = this.keyOf(dir);
      const kind = existsSync(join(dir, 'complete.json')) ? 'full' : 'slices';
      if (kind === 'slices' && !existsSync(join(dir, 'slices'))) {
        // An uploaded file whose encryption was cut off: the upload was never accepted, nothing to keep.
        this.log.warn({ ...key }, 'removing an uploaded file whose archiving was interrupted');
        await this.removeSpool(dir);
        continue;
      }
      if (kind === 'slices') {
        const slices = (await readdir(join(dir, 'slices')).catch(() => [])).length;
        this.log.warn({ ...key, slices }, 'recovering the spool of a track cut off by a crash');
        await this.options.store.updateRecording(key, { kind: 'slices', objectKey: `${this.objectKey(key, 'recovered')}/manifest.json`, durationMs: slices * 1000 });
      }
      this.enqueue({ ...key, dir, kind });
      recovered++;
    }
    return recovered;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopping.abort();
    this.wake?.();
    await this.worker;
  }

  private enqueue(job: UploadJob): void {
    this.queue.push(job);
    this.wake?.();
  }

  private spoolFor(key: TrackKey): string {
    return insideRoot(this.options.spoolDir, pathSegment(key.sessionId), pathSegment(key.trackId), String(key.epoch));
  }

  /** After an upload: the spool's track and session directories go too once empty. */
  private async removeSpool(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
    const root = resolve(this.options.spoolDir);
    for (let parent = dirname(dir); parent.startsWith(root + '/') && parent !== root; parent = dirname(parent)) {
      if (!(await rmdir(parent).then(() => true, () => false))) break;
    }
  }

  private keyOf(dir: string): TrackKey {
    const parts = dir.split('/').slice(-3);
    return { sessionId: decodeURIComponent(parts[0]), trackId: decodeURIComponent(parts[1]), epoch: Number(parts[2]) };
  }

  private objectKey(key: TrackKey, suffix = 'ogg.age'): string {
    return `${this.options.prefix}sessions/${pathSegment(key.sessionId)}/tracks/${pathSegment(key.trackId)}/${key.epoch}.${suffix}`;
  }

  private async spoolDirectories(): Promise<string[]> {
    const dirs: string[] = [];
    const list = async (dir: string) => (await readdir(dir, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
    for (const session of await list(this.options.spoolDir)) for (const track of await list(session)) dirs.push(...(await list(track)));
    return dirs;
  }

  private async upload(job: UploadJob): Promise<void> {
    const { objects, store } = this.options;
    if (job.kind === 'full') {
      const completed = JSON.parse(await readFile(join(job.dir, 'complete.json'), 'utf8')) as CompletedArchive;
      await objects.putFile(this.objectKey(job, basename(completed.file).replace(/^full\./, '')), completed.file, {
        'plaintext-sha256': completed.plaintextSha256,
        'duration-ms': String(completed.durationMs),
        'recipients': this.options.recipients.map(recipientFingerprint).join(','),
      });
    } else {
      const names = (await readdir(join(job.dir, 'slices'))).sort();
      const base = this.objectKey(job, 'recovered');
      for (const name of names) await objects.putFile(`${base}/${name}`, join(job.dir, 'slices', name), {});
      const manifest = {
        note: 'Recovered after the gateway stopped mid-track. Decrypt each slice with age, in order, and concatenate: the result is the Ogg Opus stream up to the last second received (scripts/decrypt-recording.ts does this).',
        slices: names.map((n) => `${base}/${n}`),
        recipients: this.options.recipients.map(recipientFingerprint),
      };
      await objects.putBytes(`${base}/manifest.json`, new TextEncoder().encode(JSON.stringify(manifest, null, 1)), 'application/json');
    }
    await store.updateRecording(job, { state: 'uploaded', uploadedAt: new Date(), lastError: null });
    await this.removeSpool(job.dir);
    this.log.info({ sessionId: job.sessionId, trackId: job.trackId, epoch: job.epoch, kind: job.kind }, 'recording uploaded');
  }

  private async uploadLoop(): Promise<void> {
    while (!this.closed) {
      const job = this.queue[0];
      if (!job) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      try {
        await pRetry(() => this.upload(job), {
          retries: Infinity,
          factor: 2,
          minTimeout: this.options.retryMs,
          maxTimeout: this.options.maxRetryMs,
          randomize: false,
          signal: this.stopping.signal,
          onFailedAttempt: async ({ error, retryDelay }) => {
            const message = error.message || String(error);
            this.lastErrors.set(job.sessionId, message);
            this.log.warn({ sessionId: job.sessionId, trackId: job.trackId, reason: message, retryInMs: retryDelay }, 'upload failed; the recording stays spooled (encrypted) and will be retried');
            await this.options.store.recordingAttemptFailed(job, message).catch(() => undefined);
          },
        });
      } catch {
        // Only a shutdown ends the retries; the spool stays and is recovered at the next start.
        return;
      }
      this.queue.shift();
      this.lastErrors.delete(job.sessionId);
    }
  }
}
