/**
 * Archives every track connection: opens its encrypted spool (TrackArchive) when the track starts,
 * streams its one-second slices to the object store while it is live (every `streamEveryMs`), seals it
 * when the track ends, and uploads it — retrying for as long as storage is down, while audio keeps being
 * spooled. At start it recovers spools a killed process left: a sealed one is
 * uploaded as usual; an unsealed one uploads its one-second slices and a manifest. A spool is deleted
 * only after its upload succeeded.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { Encrypter } from 'age-encryption';
import pRetry from 'p-retry';
import type { Logger } from '../log.ts';
import type { SessionStore } from '../store/session-store.ts';
import { ageRecipient } from './age-recipient.ts';
import type { ObjectStore } from './object-store.ts';
import { insideRoot, pathSegment } from './safe-path.ts';
import { IN_PROCESS_SPOOLS, type CompletedArchive, type TrackSpool, type TrackSpools } from './track-archive.ts';

export interface ArchiverOptions {
  spoolDir: string;
  recipients: readonly string[];
  objects: ObjectStore;
  /** Key prefix in the bucket, e.g. `clinic-a/`. */
  prefix: string;
  store: SessionStore;
  log: Logger;
  /** Where track spools are written while they stream (default: in this thread). */
  spools?: TrackSpools;
  /** First pause after a failed upload; doubles up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
  /**
   * Every this often, the one-second slices written since are uploaded as they are (each an age file),
   * with a manifest, so a machine that never comes back costs at most this plus a second of recording.
   * 0: only at the end of each track (and by the same machine's recovery after a crash).
   */
  streamEveryMs?: number;
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

/**
 * The slices of a spool a killed process left, in order: an empty one (created, not yet written when the
 * process died, or a machine that lost power before the page cache reached the disk) is left out.
 */
async function writtenSlices(dir: string): Promise<string[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.ogg.age')).sort();
  const sizes = await Promise.all(names.map((name) => stat(join(dir, name)).then((s) => s.size, () => 0)));
  return names.filter((_, i) => sizes[i] > 0);
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
  /** Sessions deleted while this process runs: an upload of theirs still queued or in flight is dropped. */
  private readonly erased = new Set<string>();
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly stopping = new AbortController();
  private readonly worker: Promise<void>;
  /** Slices of each open spool already streamed to the object store, in order. */
  private readonly streamed = new Map<string, string[]>();
  private streaming: Promise<void> | undefined;
  /** Per open spool, its slices being streamed now (a round's part for that track). */
  private readonly streamingTrack = new Map<string, Promise<void>>();
  /** Spools being sealed: a round in progress does not start them any more. */
  private readonly sealing = new Set<string>();
  private readonly streamTimer: NodeJS.Timeout | undefined;

  constructor(options: ArchiverOptions) {
    this.options = { retryMs: 1000, maxRetryMs: 30000, spools: IN_PROCESS_SPOOLS, streamEveryMs: 0, ...options };
    this.log = options.log.child({ component: 'archive' });
    this.worker = this.uploadLoop();
    if (this.options.streamEveryMs > 0) this.streamTimer = setInterval(() => void this.streamSlices(), this.options.streamEveryMs).unref();
  }

  get description(): string {
    return this.options.objects.description;
  }

  /**
   * Deletes every recording of a session (a privacy officer's erasure): its objects, under the session's
   * prefix, its queued uploads and its spools. An upload in flight is deleted as soon as it lands.
   * Throws while object storage is unreachable (nothing is then reported deleted); returns the objects deleted.
   */
  async deleteSession(sessionId: string): Promise<number> {
    this.erased.add(sessionId);
    const inFlight = this.queue[0];
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i].sessionId === sessionId && this.queue[i] !== inFlight) this.queue.splice(i, 1);
    }
    // A streaming round still writing one of its slices would put it back after the deletion.
    await this.streaming;
    const deleted = await this.options.objects.deletePrefix(`${this.options.prefix}sessions/${pathSegment(sessionId)}/`);
    if (inFlight?.sessionId !== sessionId) await rm(insideRoot(this.options.spoolDir, pathSegment(sessionId)), { recursive: true, force: true });
    return deleted;
  }

  /** Deletes one recording's objects (retention: the recording goes, the transcript stays). */
  async deleteRecording(key: TrackKey): Promise<number> {
    return this.options.objects.deletePrefix(this.recordingPrefix(key));
  }

  /** Recordings waiting to be uploaded, all sessions. */
  get pendingUploads(): number {
    return this.queue.length;
  }

  /** Uploads waiting (storage down or slow) per session: the archive is behind. */
  backlog(sessionId: string): { pendingUploads: number; lastError: string | null } {
    const pending = this.queue.filter((j) => j.sessionId === sessionId).length;
    return { pendingUploads: pending, lastError: pending ? (this.lastErrors.get(sessionId) ?? null) : null };
  }

  async openTrack(key: TrackKey, inputSampleRate: number): Promise<TrackSpool> {
    const dir = this.spoolFor(key);
    this.open.add(dir);
    const archive = await this.options.spools.open({ dir, recipients: this.options.recipients, inputSampleRate, serial: (Date.now() ^ (key.epoch << 20)) >>> 0 });
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
  async completeTrack(key: TrackKey, archive: TrackSpool): Promise<CompletedArchive> {
    const dir = this.spoolFor(key);
    // This track's part of a streaming round ends first (after the slice it is sending): it must not
    // write its figures over the sealed file's. Other tracks' parts are not waited for.
    this.sealing.add(dir);
    await this.streamingTrack.get(dir);
    const completed = await archive.close().finally(() => (this.open.delete(dir), this.streamed.delete(dir), this.sealing.delete(dir)));
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
    for (const recipient of this.options.recipients) encrypter.addRecipient(ageRecipient(recipient));
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

  /**
   * The track's connection was held by a gateway that stopped (another took the track over, or ended it
   * for the dead one): its recording is what that gateway streamed, if it is not uploaded whole already.
   */
  async abandoned(key: TrackKey): Promise<void> {
    const row = (await this.options.store.recordingsOf(key.sessionId)).find((r) => r.trackId === key.trackId && r.epoch === key.epoch);
    if (!row || row.state !== 'spooled' || this.open.has(this.spoolFor(key))) return;
    const streamedMs = row.durationMs ?? 0;
    await this.options.store.updateRecording(key, {
      kind: 'slices',
      state: 'uploaded',
      objectKey: `${this.objectKey(key, 'recovered')}/manifest.json`,
      lastError: streamedMs > 0 ? `the gateway holding this connection stopped; its recording ends with the last slice streamed (${streamedMs / 1000} s)` : 'the gateway holding this connection stopped before any of its recording was streamed',
    });
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
        const slices = (await writtenSlices(join(dir, 'slices'))).length;
        this.log.warn({ ...key, slices }, 'recovering the spool of a track cut off by a crash');
        await this.options.store.updateRecording(key, { kind: 'slices', objectKey: `${this.objectKey(key, 'recovered')}/manifest.json`, durationMs: slices * 1000 });
      }
      this.enqueue({ ...key, dir, kind });
      recovered++;
    }
    return recovered;
  }

  /** Stops uploading (spools left are recovered at the next start); the tracks are closed before this. */
  async close(): Promise<void> {
    clearInterval(this.streamTimer);
    await this.streaming;
    this.closed = true;
    this.stopping.abort();
    this.wake?.();
    await this.worker;
    await this.options.spools.close?.();
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

  /** Every object of one recording (`<epoch>.ogg.age`, or `<epoch>.recovered/…`). */
  private recordingPrefix(key: TrackKey): string {
    return `${this.options.prefix}sessions/${pathSegment(key.sessionId)}/tracks/${pathSegment(key.trackId)}/${key.epoch}.`;
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
    if (this.erased.has(job.sessionId)) {
      await this.removeSpool(job.dir);
      return;
    }
    let uploaded: { kind: 'full'; objectKey: string } | undefined;
    if (job.kind === 'full') {
      const completed = JSON.parse(await readFile(join(job.dir, 'complete.json'), 'utf8')) as CompletedArchive;
      uploaded = { kind: 'full', objectKey: this.objectKey(job, basename(completed.file).replace(/^full\./, '')) };
      await objects.putFile(uploaded.objectKey, completed.file, {
        'plaintext-sha256': completed.plaintextSha256,
        'duration-ms': String(completed.durationMs),
        'recipients': this.options.recipients.map(recipientFingerprint).join(','),
      });
      // The whole file supersedes the slices streamed while the track was live (none is in flight: the
      // seal waited for the track's part of the round, and no round starts a sealed spool).
      if (this.options.streamEveryMs > 0) await objects.deletePrefix(`${this.objectKey(job, 'recovered')}/`);
    } else {
      const names = await writtenSlices(join(job.dir, 'slices'));
      const base = this.objectKey(job, 'recovered');
      for (const name of names) await objects.putFile(`${base}/${name}`, join(job.dir, 'slices', name), {});
      await this.putManifest(base, names);
    }
    // Erased while it was being uploaded: what just arrived goes too.
    if (this.erased.has(job.sessionId)) await objects.deletePrefix(this.recordingPrefix(job));
    // Whole: it is the recording, even where another gateway took it for lost meanwhile (a partition).
    else await store.updateRecording(job, { state: 'uploaded', uploadedAt: new Date(), lastError: null, ...uploaded });
    await this.removeSpool(job.dir);
    this.log.info({ sessionId: job.sessionId, trackId: job.trackId, epoch: job.epoch, kind: job.kind }, 'recording uploaded');
  }

  private async putManifest(base: string, names: string[]): Promise<void> {
    const manifest = {
      note: 'The recording of a track connection cut off (its gateway stopped). Decrypt each slice with age, in order, and concatenate: the result is the Ogg Opus stream up to the last second stored (scripts/decrypt-recording.ts does this).',
      slices: names.map((n) => `${base}/${n}`),
      recipients: this.options.recipients.map(recipientFingerprint),
    };
    await this.options.objects.putBytes(`${base}/manifest.json`, new TextEncoder().encode(JSON.stringify(manifest, null, 1)), 'application/json');
  }

  /**
   * One round of streaming: every open spool's slices written since the last round, then its manifest,
   * one track after another. Side by side (32 or 8 tracks at once, their starts spread over the period)
   * the requests and their answers bunched: with S3 on the same machine, 150 tracks' event-loop delay p99
   * went from 11–24 ms to 35–49 ms (`BENCH_CAPACITY_ARCHIVE=s3 npm run bench:capacity`).
   */
  private streamSlices(): Promise<void> {
    this.streaming ??= (async () => {
      for (const dir of this.open) {
        if (this.sealing.has(dir)) continue;
        const streaming = this.streamTrack(dir);
        this.streamingTrack.set(dir, streaming.catch(() => undefined));
        try {
          await streaming;
        } finally {
          this.streamingTrack.delete(dir);
        }
      }
    })()
      .catch((error) => this.log.warn({ err: error }, 'streaming recording slices failed; retried at the next round (the spool keeps them)'))
      .finally(() => (this.streaming = undefined));
    return this.streaming;
  }

  /** A track's part of a round: its slices written since the last round, then its manifest. */
  private async streamTrack(dir: string): Promise<void> {
    const key = this.keyOf(dir);
    const names = await writtenSlices(join(dir, 'slices'));
    const shipped = this.streamed.get(dir) ?? [];
    if (names.length <= shipped.length) return;
    const base = this.objectKey(key, 'recovered');
    for (const name of names.slice(shipped.length)) {
      // A track being sealed waits for this: it stops at once (its whole file supersedes the slices).
      if (this.sealing.has(dir)) return;
      await this.options.objects.putFile(`${base}/${name}`, join(dir, 'slices', name), {});
      shipped.push(name);
    }
    this.streamed.set(dir, shipped);
    await this.putManifest(base, shipped);
    await this.options.store.updateRecording(key, { durationMs: shipped.length * 1000 });
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
