/**
 * A session's REST status: what the database knows (rows, job counts, transcript version, recordings,
 * upload), joined with the live view of a session loaded in this process. A completed session that is
 * not loaded is described from the store alone, so reading it never brings it back into memory.
 */
import type { EncounterType, SessionStatus, SttState, TrackInfo, UploadFormat, UploadWarningCode } from '../../client-sdk/src/protocol.ts';
import type { Archiver } from '../archive/archiver.ts';
import type { SessionState, SessionStore } from '../store/session-store.ts';

/** What only a loaded session knows. */
export interface LiveView {
  state: SessionState;
  stt: SttState;
  sttError: string | null;
  sttBacklog: { windows: number; audioMs: number };
  sttAudio: SessionStatus['sttAudio'];
  lastSeq: number;
  tracks: TrackInfo[];
}

/** undefined when the session does not exist. Without `live`, the stored state stands for it. */
export async function sessionStatus(store: SessionStore, archiver: Archiver | undefined, id: string, live?: LiveView): Promise<SessionStatus | undefined> {
  const [row, windows, transcript, recordings, upload] = await Promise.all([
    store.getSession(id),
    store.jobCounts(id),
    store.latestTranscript(id),
    store.recordingsOf(id),
    store.getUpload(id),
  ]);
  if (!row) return undefined;
  const deadLetters = upload ? await store.failedJobs(id) : [];
  const backlog = archiver?.backlog(id) ?? { pendingUploads: 0, lastError: null };
  const view = live ?? (await storedView(store, id, row.state));
  return {
    id,
    state: view.state,
    encounterRef: row.encounterRef,
    encounterType: (row.encounterType as EncounterType | null) ?? null,
    language: row.language,
    vocabulary: row.vocabulary,
    createdAt: row.createdAt.toISOString(),
    endedAt: row.endedAt?.toISOString() ?? null,
    completedAt: row.completedAt?.toISOString() ?? null,
    stt: view.stt,
    sttError: view.sttError,
    sttBacklog: view.sttBacklog,
    sttAudio: view.sttAudio,
    lastSeq: view.lastSeq,
    tracks: view.tracks,
    progress: { windows },
    transcriptVersion: transcript?.version ?? null,
    upload: upload
      ? {
          state: upload.state, format: upload.format as UploadFormat, fileName: upload.fileName, sizeBytes: upload.sizeBytes, durationMs: upload.durationMs, sampleRate: upload.sampleRate,
          meanDbfs: Math.round(upload.meanDbfs * 10) / 10, warnings: upload.warnings as { code: UploadWarningCode; message: string }[], priority: upload.priority,
          windows: { total: upload.windows.length, ...windows },
          deadLetters: deadLetters.map((j) => ({ startMs: j.startMs, endMs: j.endMs, attempts: j.attempts, error: j.lastError })),
        }
      : null,
    webhook: { state: row.webhookState, attempts: row.webhookAttempts, lastError: row.webhookLastError },
    archive: {
      enabled: archiver !== undefined,
      behind: backlog.pendingUploads > 0,
      pendingUploads: backlog.pendingUploads,
      lastError: backlog.lastError,
      recordings: recordings.map((r) => ({
        trackId: r.trackId, epoch: r.epoch, kind: r.kind, state: r.state, objectKey: r.objectKey, sizeBytes: r.sizeBytes,
        plaintextSha256: r.plaintextSha256, durationMs: r.durationMs, recipientFingerprints: r.recipientFingerprints, note: r.lastError,
      })),
    },
  };
}

async function storedView(store: SessionStore, id: string, state: SessionState): Promise<LiveView> {
  const tracks = await store.listTracks(id);
  return {
    state,
    stt: 'ok',
    sttError: null,
    sttBacklog: { windows: 0, audioMs: 0 },
    sttAudio: null,
    lastSeq: await store.lastSeq(id),
    tracks: tracks.map((t) => ({ trackId: t.trackId, role: t.role, participant: t.participant, format: t.format as TrackInfo['format'], state: t.state, receivedMs: t.receivedMs })),
  };
}
