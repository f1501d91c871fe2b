/**
 * What a track's pipeline reports, turned into the session's caption events and job records: partials
 * and finals to the feed, window jobs and positions to the store (in order, off the audio path), the
 * recognizer's health (degraded while it fails, and the backlog of finals waiting for it), and a stream
 * that cannot go on.
 */
import type { TrackInfo, Word } from '../../client-sdk/src/protocol.ts';
import { RecognizerRefused } from '../stt/transcriber.ts';
import { SttUsage } from '../stt/stt-cost.ts';
import type { IngestError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { SessionStore } from '../store/session-store.ts';
import { joinWords } from '../transcript/words.ts';
import type { CaptionFeed } from './caption-feed.ts';
import type { TrackListener } from './track-pipeline.ts';
import type { TrackSpeakers } from './track-speakers.ts';

/** Store writes kept in order (queued before finished) without holding up the audio path. */
export class OrderedWrites {
  private chain: Promise<void> = Promise.resolve();
  private readonly log: Logger;

  constructor(log: Logger) {
    this.log = log;
  }

  add(write: () => Promise<void>): void {
    this.chain = this.chain.then(write).catch((error) => this.log.warn({ err: error }, 'could not record a job or track position'));
  }

  settled(): Promise<void> {
    return this.chain;
  }
}

/** The recognizer as this session sees it: failing or not, the finals waiting for it, and the audio it was sent. */
export class SttHealth {
  degraded = false;
  readonly backlog = { windows: 0, audioMs: 0 };
  readonly usage = new SttUsage();

  changeBacklog(windows: number, audioMs: number): void {
    this.backlog.windows += windows;
    this.backlog.audioMs += audioMs;
  }
}

export interface TrackEventContext {
  feed: CaptionFeed;
  store: SessionStore;
  writes: OrderedWrites;
  stt: SttHealth;
  metrics: Metrics;
  log: Logger;
  /** The track's current connection count (for its position records). */
  epochOf(trackId: string): number;
  /** The session's state changed in a way viewers see (STT degraded or recovered). */
  stateChanged(): void;
}

export function trackListener(ctx: TrackEventContext, info: TrackInfo, onFailed: (error: IngestError) => void, speakers: TrackSpeakers): TrackListener {
  const { feed, store, writes, stt, metrics, log } = ctx;
  const sessionId = feed.sessionId;
  const misconfigured = (error: Error) => ({ type: 'error' as const, sessionId, code: 'stt_misconfigured' as const, message: `speech-to-text refuses the gateway's requests; windows are kept until its configuration is fixed: ${error.message}`, trackId: info.trackId });
  return {
    partial: (utteranceId, stable, unstable, startMs, turns) => {
      feed.broadcast({ type: 'partial', sessionId, trackId: info.trackId, ...speakers.partial(info, turns), utteranceId, stable: joinWords(stable), unstable: joinWords(unstable), startMs });
    },
    queued: (utteranceId, window) => {
      stt.changeBacklog(1, window.endMs - window.startMs);
      writes.add(() => store.jobQueued(sessionId, info.trackId, utteranceId, window));
    },
    final: async (utteranceId, words: Word[], window, timing, turns) => {
      stt.changeBacklog(-1, window.startMs - window.endMs);
      writes.add(() => store.jobFinished(sessionId, utteranceId, 'done', timing.sttMs));
      if (words.length === 0) {
        // Still tell viewers the utterance is over, so a partial caption does not linger. No final is
        // published: no latency to count (a window without speech has no end of speech).
        feed.broadcast({ type: 'partial', sessionId, trackId: info.trackId, role: info.role, speaker: info.participant, utteranceId, stable: '', unstable: '', startMs: window.startMs });
        return;
      }
      // One final per speaker where a diarized track's speaker changes within the utterance.
      const latencyMs = Math.max(0, performance.now() - timing.speechEndAt - timing.sttMs);
      for (const part of speakers.parts(info, words, turns)) await feed.publish(info.trackId, utteranceId, part, latencyMs);
      const now = performance.now();
      metrics.finalLatency.observe(Math.max(0, now - timing.speechEndAt - timing.sttMs) / 1000);
      metrics.finalProcessing.observe(Math.max(0, now - timing.closedAt - timing.sttMs) / 1000);
    },
    refused: (error) => feed.broadcast(misconfigured(error)),
    sttFailed: (error, utteranceId) => {
      log.warn({ err: error, trackId: info.trackId }, 'STT failed; window kept for retry');
      writes.add(() => store.jobFailedAttempt(sessionId, utteranceId, error.message));
      const wasDegraded = stt.degraded;
      stt.degraded = true;
      feed.broadcast(
        error instanceof RecognizerRefused
          ? misconfigured(error)
          : { type: 'error', sessionId, code: 'stt_unavailable', message: `speech-to-text failed, retrying: ${error.message}`, trackId: info.trackId },
      );
      if (!wasDegraded) ctx.stateChanged();
    },
    progress: (durableMs) => {
      writes.add(() => store.saveTrack(sessionId, { ...info, receivedMs: durableMs, epoch: ctx.epochOf(info.trackId) }));
    },
    sttRecovered: () => {
      if (!stt.degraded) return;
      stt.degraded = false;
      log.info('STT recovered');
      ctx.stateChanged();
    },
    abandoned: (utteranceId, window, error) => {
      stt.changeBacklog(-1, window.startMs - window.endMs);
      const reason = error instanceof RecognizerRefused ? `the recognizer refused this window (its audio is in the recording): ${error.message}` : `gateway shut down: ${error.message}`;
      log.error({ trackId: info.trackId, ...window, reason }, 'final window not transcribed');
      writes.add(() => store.jobFinished(sessionId, utteranceId, 'failed', null, reason));
    },
    failed: (error) => {
      log.warn({ trackId: info.trackId, reason: error.message }, 'track stream rejected');
      // Part of the session state, for viewers and the REST status, whatever the transport.
      info.failure = error.message;
      feed.broadcast({ type: 'error', sessionId, code: 'track_failed', message: error.message, trackId: info.trackId });
      onFailed(error);
    },
  };
}
