/**
 * The caption feed of one session: numbers finals (`seq`, one order across tracks), stores each before
 * it is sent, replays what a late or reconnecting viewer missed (`?after=`), and sends every event to
 * every viewer, each in isolation: a viewer whose send throws is dropped, and the others still get it.
 */
import pRetry from 'p-retry';
import type { CaptionEvent, FinalEvent, TrackInfo, Word } from '../../client-sdk/src/protocol.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SessionStore } from '../store/session-store.ts';
import { joinWords } from '../transcript/words.ts';

export interface Viewer {
  send(event: CaptionEvent): void;
}

/** What the feed needs of the store: a final is written before it is sent. */
export type SegmentWriter = Pick<SessionStore, 'insertSegment'>;

export class CaptionFeed {
  readonly sessionId: string;
  /** Every final of the session, stored or being stored, in seq order. */
  readonly finals: FinalEvent[];
  private readonly viewers = new Set<Viewer>();
  private readonly store: SegmentWriter;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  /** Finals are stored and sent one at a time, in seq order, whichever track produced them. */
  private publishing: Promise<void> = Promise.resolve();
  /** Highest seq already sent to viewers; later ones reach a new viewer through the broadcast. */
  private publishedSeq: number;

  constructor(sessionId: string, finals: FinalEvent[], store: SegmentWriter, log: Logger, metrics: Metrics) {
    this.sessionId = sessionId;
    this.finals = finals;
    this.publishedSeq = finals.length;
    this.store = store;
    this.log = log;
    this.metrics = metrics;
  }

  get lastSeq(): number {
    return this.publishedSeq;
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  /** Resolves once every final published so far is stored and sent. */
  settled(): Promise<void> {
    return this.publishing;
  }

  /** Numbers a final, stores it and sends it; resolves once it is sent. Nothing is published for no words. */
  async publish(track: Pick<TrackInfo, 'trackId' | 'role' | 'participant'>, utteranceId: string, words: Word[]): Promise<void> {
    if (words.length === 0) return;
    const seq = this.finals.length + 1;
    const final: FinalEvent = {
      type: 'final',
      sessionId: this.sessionId,
      seq,
      segmentId: `${this.sessionId}.${seq}`,
      trackId: track.trackId,
      role: track.role,
      speaker: track.participant,
      utteranceId,
      text: joinWords(words),
      words,
      startMs: words[0].startMs,
      endMs: words[words.length - 1].endMs,
    };
    this.finals.push(final);
    const published = this.publishing.then(async () => {
      await this.storeFinal(final);
      this.publishedSeq = final.seq;
      this.broadcast(final);
    });
    this.publishing = published;
    await published;
  }

  /** Sends `preamble` (the session's state), then every final after `afterSeq`, then what comes next. */
  addViewer(viewer: Viewer, afterSeq: number, preamble: CaptionEvent[]): void {
    for (const event of preamble) this.sendTo(viewer, event);
    for (const final of this.finals) if (final.seq > afterSeq && final.seq <= this.publishedSeq) this.sendTo(viewer, final);
    this.viewers.add(viewer);
    this.metrics.viewers.inc();
  }

  removeViewer(viewer: Viewer): void {
    if (this.viewers.delete(viewer)) this.metrics.viewers.dec();
  }

  broadcast(event: CaptionEvent): void {
    for (const viewer of this.viewers) this.sendTo(viewer, event);
  }

  private sendTo(viewer: Viewer, event: CaptionEvent): void {
    try {
      viewer.send(event);
    } catch (error) {
      this.log.warn({ err: error }, 'a caption viewer failed; it is dropped, the others go on');
      this.removeViewer(viewer);
    }
  }

  /** Stores a final, retrying while the database is unreachable; viewers hear about a lasting failure. */
  private async storeFinal(final: FinalEvent): Promise<void> {
    try {
      await pRetry(() => this.store.insertSegment(final), { retries: 6, minTimeout: 200, maxTimeout: 5000 });
    } catch (error) {
      this.log.error({ err: error, segmentId: final.segmentId }, 'final could not be stored');
      this.broadcast({ type: 'error', sessionId: this.sessionId, code: 'storage_unavailable', message: `segment ${final.segmentId} could not be stored: ${(error as Error).message}`, trackId: final.trackId });
    }
  }
}
