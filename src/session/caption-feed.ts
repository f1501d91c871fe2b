/**
 * The caption feed of one session on this gateway: stores each final under the session's next seq (one
 * counter in the database for every gateway of a fleet) before it is sent, sends every final to this
 * gateway's viewers once and in seq order whichever gateway produced it (held back over a gap, which the
 * store fills), replays what a late or reconnecting viewer missed (`?after=`), and sends every event to
 * every viewer, each in isolation: a viewer whose send throws is dropped, and the others still get it.
 */
import pRetry from 'p-retry';
import type { CaptionEvent, FinalEvent } from '../../client-sdk/src/protocol.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SessionStore, UnnumberedFinal } from '../store/session-store.ts';
import { joinWords } from '../transcript/words.ts';
import type { BusMessage, CaptionBus } from './caption-bus.ts';
import type { SpokenPart } from './track-speakers.ts';

export interface Viewer {
  send(event: CaptionEvent): void;
  /** Ends the viewer's connection (the session was deleted). */
  close?(code: number, reason: string): void;
}

/** What the feed needs of the store: finals are numbered and written before they are sent, and read back over a gap. */
export type SegmentWriter = Pick<SessionStore, 'appendSegment' | 'listSegments'>;

/** A final that arrives past a gap waits this long for the missing ones before the store is read. */
const GAP_WAIT_MS = 250;
/** Store attempts before viewers are told the finals wait for the database (the attempts go on). */
const STORE_ATTEMPTS_BEFORE_ALERT = 6;

export class CaptionFeed {
  readonly sessionId: string;
  /** Every final of the session this gateway has sent (its own and other gateways'), in seq order. */
  readonly finals: FinalEvent[];
  private readonly viewers = new Set<Viewer>();
  private readonly store: SegmentWriter;
  private readonly bus: CaptionBus;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  /** This gateway's finals are stored one at a time, in the order its tracks produced them. */
  private publishing: Promise<void> = Promise.resolve();
  /** Finals received past a gap, by seq, until the ones before them arrive or are read from the store. */
  private readonly held = new Map<number, FinalEvent>();
  private gapTimer: NodeJS.Timeout | undefined;
  private catchingUp: Promise<void> | undefined;
  private readonly unsubscribe: () => void;
  /** Messages of other gateways that are not finals (track states, the request to end). */
  private readonly onRemote: (message: BusMessage) => void;

  constructor(sessionId: string, finals: FinalEvent[], store: SegmentWriter, bus: CaptionBus, log: Logger, metrics: Metrics, onRemote: (message: BusMessage) => void = () => undefined) {
    this.sessionId = sessionId;
    this.finals = finals;
    this.store = store;
    this.bus = bus;
    this.log = log;
    this.metrics = metrics;
    this.onRemote = onRemote;
    const unsubscribe = bus.subscribe(sessionId, (message) => this.receive(message));
    const stopCatchingUp = bus.onReconnect(() => void this.catchUp());
    this.unsubscribe = () => (unsubscribe(), stopCatchingUp());
    // What was stored between the session's loading and the subscription.
    void this.catchUp();
  }

  /** Highest seq sent to this gateway's viewers (every lower one was sent too). */
  get lastSeq(): number {
    return this.finals.at(-1)?.seq ?? 0;
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  /** Resolves once every final this gateway published so far is stored and sent. */
  settled(): Promise<void> {
    return this.publishing;
  }

  /** Numbers a final of one speaker, stores it and sends it; resolves once it is sent. Nothing is published for no words. */
  async publish(trackId: string, utteranceId: string, { speaker, role, roleSource, words }: SpokenPart, latencyMs?: number): Promise<void> {
    if (words.length === 0) return;
    const unnumbered: UnnumberedFinal = {
      type: 'final',
      sessionId: this.sessionId,
      trackId,
      role,
      roleSource,
      speaker,
      utteranceId,
      text: joinWords(words),
      words,
      startMs: words[0].startMs,
      endMs: words[words.length - 1].endMs,
    };
    const confidences = words.flatMap((w) => (w.confidence === undefined ? [] : [w.confidence]));
    if (confidences.length > 0) this.metrics.segmentConfidence.observe(confidences.reduce((a, b) => a + b, 0) / confidences.length);
    const published = this.publishing.then(async () => {
      const final = await this.storeFinal(unnumbered, latencyMs);
      this.deliver(final);
      this.bus.publish({ origin: this.bus.instanceId, sessionId: this.sessionId, kind: 'event', event: final });
    });
    this.publishing = published;
    await published;
  }

  /** Sends `preamble` (the session's state), then every final after `afterSeq`, then what comes next. */
  addViewer(viewer: Viewer, afterSeq: number, preamble: CaptionEvent[]): void {
    for (const event of preamble) this.sendTo(viewer, event);
    for (const final of this.finals) if (final.seq > afterSeq) this.sendTo(viewer, final);
    this.viewers.add(viewer);
    this.metrics.viewers.inc();
  }

  removeViewer(viewer: Viewer): void {
    if (this.viewers.delete(viewer)) this.metrics.viewers.dec();
  }

  /** Closes every viewer's connection (the session was deleted). */
  closeViewers(code: number, reason: string): void {
    for (const viewer of this.viewers) {
      this.removeViewer(viewer);
      viewer.close?.(code, reason);
    }
  }

  /** Sends an event (not a final) to this gateway's viewers and to the other gateways'. */
  broadcast(event: CaptionEvent): void {
    this.sendLocally(event);
    this.publishToOthers(event);
  }

  /** Sends an event to the other gateways' viewers only. */
  publishToOthers(event: CaptionEvent): void {
    this.bus.publish({ origin: this.bus.instanceId, sessionId: this.sessionId, kind: 'event', event });
  }

  /** Sends an event to this gateway's viewers only. */
  sendLocally(event: CaptionEvent): void {
    for (const viewer of this.viewers) this.sendTo(viewer, event);
  }

  /** Tells the gateway that held the track at `epoch` that this one has taken it over. */
  release(trackId: string, epoch: number): void {
    this.bus.publish({ origin: this.bus.instanceId, sessionId: this.sessionId, kind: 'release', trackId, epoch });
  }

  /** Asks the other gateways holding the session to end their part of it. */
  requestEnd(): void {
    this.bus.publish({ origin: this.bus.instanceId, sessionId: this.sessionId, kind: 'end' });
  }

  /** Reads from the store every final after the last one sent (after a gap, a reconnection, or to end). */
  catchUp(): Promise<void> {
    this.catchingUp ??= (async () => {
      try {
        for (const final of await this.store.listSegments(this.sessionId, this.lastSeq)) this.deliver(final);
      } catch (error) {
        this.log.warn({ err: error }, 'finals of other gateways could not be read; retried at the next gap');
      } finally {
        this.catchingUp = undefined;
      }
    })();
    return this.catchingUp;
  }

  /** The session leaves this gateway's memory. */
  close(): void {
    this.unsubscribe();
    clearTimeout(this.gapTimer);
  }

  private receive(message: BusMessage): void {
    if (message.origin === this.bus.instanceId) return;
    if (message.kind === 'event' && message.event.type === 'final') this.deliver(message.event);
    else if (message.kind === 'event' && message.event.type !== 'session') this.sendLocally(message.event);
    else {
      // A gateway that has sent finals this one has not seen (their messages were lost): read them.
      if (message.kind === 'event' && message.event.type === 'session' && message.event.lastSeq > this.lastSeq) void this.catchUp();
      this.onRemote(message);
    }
  }

  /** Sends a numbered final to this gateway's viewers in seq order, each once. */
  private deliver(final: FinalEvent): void {
    if (final.seq <= this.lastSeq) return;
    this.held.set(final.seq, final);
    for (let next = this.held.get(this.lastSeq + 1); next; next = this.held.get(this.lastSeq + 1)) {
      this.held.delete(next.seq);
      this.finals.push(next);
      this.sendLocally(next);
    }
    if (this.held.size === 0) {
      clearTimeout(this.gapTimer);
      this.gapTimer = undefined;
    } else {
      this.gapTimer ??= setTimeout(() => {
        this.gapTimer = undefined;
        void this.catchUp();
      }, GAP_WAIT_MS);
    }
  }

  private sendTo(viewer: Viewer, event: CaptionEvent): void {
    try {
      viewer.send(event);
    } catch (error) {
      this.log.warn({ err: error }, 'a caption viewer failed; it is dropped, the others go on');
      this.removeViewer(viewer);
    }
  }

  /**
   * Stores a final, retrying as long as the database is unreachable (a final is never sent unnumbered
   * nor dropped); viewers hear that finals are waiting once the outage lasts.
   */
  private async storeFinal(unnumbered: UnnumberedFinal, latencyMs?: number): Promise<FinalEvent> {
    return pRetry(() => this.store.appendSegment(unnumbered, latencyMs), {
      retries: Number.POSITIVE_INFINITY,
      minTimeout: 200,
      maxTimeout: 5000,
      onFailedAttempt: ({ error, attemptNumber }) => {
        if (attemptNumber !== STORE_ATTEMPTS_BEFORE_ALERT) return;
        this.log.error({ err: error, trackId: unnumbered.trackId, utteranceId: unnumbered.utteranceId }, 'a final cannot be stored yet; it is kept and retried');
        this.sendLocally({ type: 'error', sessionId: this.sessionId, code: 'storage_unavailable', message: `a final of track ${unnumbered.trackId} waits for the database: ${error.message}`, trackId: unnumbered.trackId });
      },
    });
  }
}
