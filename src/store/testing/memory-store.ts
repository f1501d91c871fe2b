/**
 * The store operations the orchestration writes while audio flows (finals, window jobs, upload state),
 * kept in memory, for fast tests of the caption feed and uploads without PostgreSQL. The real store's
 * own tests run against PostgreSQL and PGlite.
 */
import type { FinalEvent } from '../../../client-sdk/src/protocol.ts';
import type { SegmentWriter } from '../../session/caption-feed.ts';
import type { UploadJobStore } from '../../session/upload-transcription.ts';
import type { UnnumberedFinal, UploadRow } from '../session-store.ts';

export interface MemoryJob {
  trackId: string;
  startMs: number;
  endMs: number;
  status: 'pending' | 'done' | 'failed';
  attempts: number;
  error: string | null;
}

export class MemoryStore implements SegmentWriter, UploadJobStore {
  readonly segments: FinalEvent[] = [];
  readonly jobs = new Map<string, MemoryJob>();
  readonly uploadStates: UploadRow['state'][] = [];
  /** Fails the next `n` segment writes (a database outage). */
  failNextSegments = 0;

  async appendSegment(unnumbered: UnnumberedFinal): Promise<FinalEvent> {
    if (this.failNextSegments > 0) {
      this.failNextSegments--;
      throw new Error('database unreachable');
    }
    const seq = this.segments.filter((f) => f.sessionId === unnumbered.sessionId).length + 1;
    const final: FinalEvent = { ...unnumbered, seq, segmentId: `${unnumbered.sessionId}.${seq}` };
    this.segments.push(final);
    return final;
  }

  async listSegments(sessionId: string, afterSeq = 0): Promise<FinalEvent[]> {
    return this.segments.filter((f) => f.sessionId === sessionId && f.seq > afterSeq);
  }

  async jobQueued(_sessionId: string, trackId: string, utteranceId: string, span: { startMs: number; endMs: number }): Promise<void> {
    this.jobs.set(utteranceId, { trackId, ...span, status: 'pending', attempts: 0, error: null });
  }

  async jobSettled(_sessionId: string, utteranceId: string, status: MemoryJob['status'], attempts: number, _sttMs: number | null, error: string | null): Promise<void> {
    const job = this.jobs.get(utteranceId);
    if (job) Object.assign(job, { status, attempts, error });
  }

  async setUploadState(_sessionId: string, state: UploadRow['state']): Promise<void> {
    this.uploadStates.push(state);
  }
}
