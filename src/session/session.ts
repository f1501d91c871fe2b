/**
 * One consultation: its tracks (one per producer device), the finals published so far, and the caption
 * viewers watching it. Finals get a per-session sequence number so a viewer that reconnects can ask for
 * what it missed; a viewer that joins late is sent every final so far before live events.
 */
import type { CaptionEvent, FinalEvent, IngestFormat, SessionEvent, SpeakerRole, TrackInfo, Word } from '../../client-sdk/src/protocol.ts';
import { CloseCode } from '../../client-sdk/src/protocol.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { IngestError } from '../ingest/packet-source.ts';
import { joinWords } from '../transcript/words.ts';
import { TrackPipeline, type TrackListener } from './track-pipeline.ts';
import type { PipelineFactory } from './registry.ts';

export interface Viewer {
  send(event: CaptionEvent): void;
}

export interface ProducerRequest {
  trackId: string;
  role: SpeakerRole;
  participant: string;
  format: IngestFormat;
  sampleRate: number;
  language?: string;
  onFailed(error: IngestError): void;
}

export class TrackBusyError extends Error {
  override name = 'TrackBusyError';
  readonly closeCode = CloseCode.trackBusy;
}

export class SessionEndedError extends Error {
  override name = 'SessionEndedError';
  readonly closeCode = CloseCode.badParameters;
}

interface TrackState {
  info: TrackInfo;
  pipeline: TrackPipeline | undefined;
  /** Track time where the current connection started. */
  offsetMs: number;
  epoch: number;
  done: Promise<void>;
}

export class Session {
  readonly id: string;
  state: 'active' | 'ended' = 'active';
  readonly finals: FinalEvent[] = [];
  private readonly tracks = new Map<string, TrackState>();
  private readonly viewers = new Set<Viewer>();
  private readonly factory: PipelineFactory;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private sttDegraded = false;
  private segmentCount = 0;

  constructor(id: string, factory: PipelineFactory, log: Logger, metrics: Metrics) {
    this.id = id;
    this.factory = factory;
    this.log = log.child({ sessionId: id });
    this.metrics = metrics;
  }

  describe(): SessionEvent {
    return {
      type: 'session',
      sessionId: this.id,
      state: this.state,
      stt: this.sttDegraded ? 'degraded' : 'ok',
      tracks: [...this.tracks.values()].map((t) => ({ ...t.info, receivedMs: t.offsetMs + (t.pipeline?.receivedMs ?? 0) })),
      lastSeq: this.finals.length,
    };
  }

  /** Starts (or resumes) a track for a producer connection; the returned pipeline takes its messages. */
  openTrack(request: ProducerRequest): TrackPipeline {
    if (this.state === 'ended') throw new SessionEndedError(`session ${this.id} has ended`);
    const existing = this.tracks.get(request.trackId);
    if (existing?.info.state === 'live') throw new TrackBusyError(`track ${request.trackId} is already streaming`);
    const offsetMs = existing ? existing.offsetMs + (existing.pipeline?.receivedMs ?? 0) : 0;
    const info: TrackInfo = { trackId: request.trackId, role: request.role, participant: request.participant, format: request.format, state: 'live', receivedMs: offsetMs };
    const epoch = (existing?.epoch ?? 0) + 1;
    const pipeline = this.factory({
      trackId: request.trackId,
      format: request.format,
      sampleRate: request.sampleRate,
      language: request.language,
      offsetMs,
      epoch,
      listener: this.listenerFor(info, request.onFailed),
    });
    this.tracks.set(request.trackId, { info, pipeline, offsetMs, epoch, done: existing?.done ?? Promise.resolve() });
    this.metrics.activeTracks.inc();
    this.log.info({ trackId: request.trackId, role: request.role, format: request.format, offsetMs }, 'track live');
    this.broadcast(this.describe());
    return pipeline;
  }

  /** The producer is gone: flush the track, publish its last finals, mark it ended. */
  closeTrack(trackId: string): Promise<void> {
    const track = this.tracks.get(trackId);
    if (!track || track.info.state === 'ended' || !track.pipeline) return track?.done ?? Promise.resolve();
    const pipeline = track.pipeline;
    track.done = track.done.then(() => pipeline.end()).then(
      () => {
        track.offsetMs += pipeline.receivedMs;
        track.pipeline = undefined;
        track.info.state = 'ended';
        this.metrics.activeTracks.dec();
        this.log.info({ trackId }, 'track ended');
        this.broadcast(this.describe());
      },
      (error: Error) => this.log.error({ err: error, trackId }, 'track did not finish'),
    );
    return track.done;
  }

  /** Ends the session: waits for every track's in-flight windows, then tells viewers. */
  async end(): Promise<void> {
    if (this.state === 'ended') return;
    await Promise.all([...this.tracks.keys()].map((id) => this.closeTrack(id)));
    this.state = 'ended';
    this.broadcast(this.describe());
  }

  addViewer(viewer: Viewer, afterSeq = 0): void {
    viewer.send(this.describe());
    for (const final of this.finals) if (final.seq > afterSeq) viewer.send(final);
    this.viewers.add(viewer);
    this.metrics.viewers.inc();
  }

  removeViewer(viewer: Viewer): void {
    if (this.viewers.delete(viewer)) this.metrics.viewers.dec();
  }

  private broadcast(event: CaptionEvent): void {
    for (const viewer of this.viewers) viewer.send(event);
  }

  private listenerFor(info: TrackInfo, onFailed: (error: IngestError) => void): TrackListener {
    const speaker = info.participant;
    return {
      partial: (utteranceId, stable, unstable, startMs) => {
        this.broadcast({ type: 'partial', sessionId: this.id, trackId: info.trackId, role: info.role, utteranceId, stable: joinWords(stable), unstable: joinWords(unstable), startMs });
      },
      final: (utteranceId, words: Word[], window, timing) => {
        if (words.length > 0) {
          const final: FinalEvent = {
            type: 'final',
            sessionId: this.id,
            seq: this.finals.length + 1,
            segmentId: `${this.id}.${++this.segmentCount}`,
            trackId: info.trackId,
            role: info.role,
            speaker,
            utteranceId,
            text: joinWords(words),
            words,
            startMs: words[0].startMs,
            endMs: words[words.length - 1].endMs,
          };
          this.finals.push(final);
          this.broadcast(final);
        } else {
          // Still tell viewers the utterance is over, so a partial caption does not linger.
          this.broadcast({ type: 'partial', sessionId: this.id, trackId: info.trackId, role: info.role, utteranceId, stable: '', unstable: '', startMs: window.startMs });
        }
        const now = performance.now();
        this.metrics.finalLatency.observe(Math.max(0, now - timing.speechEndAt - timing.sttMs) / 1000);
        this.metrics.finalProcessing.observe(Math.max(0, now - timing.closedAt - timing.sttMs) / 1000);
      },
      sttFailed: (error) => {
        this.log.warn({ err: error, trackId: info.trackId }, 'STT failed; window kept for retry');
        const wasDegraded = this.sttDegraded;
        this.sttDegraded = true;
        this.broadcast({ type: 'error', sessionId: this.id, code: 'stt_unavailable', message: `speech-to-text failed, retrying: ${error.message}`, trackId: info.trackId });
        if (!wasDegraded) this.broadcast(this.describe());
      },
      sttRecovered: () => {
        if (!this.sttDegraded) return;
        this.sttDegraded = false;
        this.log.info('STT recovered');
        this.broadcast(this.describe());
      },
      abandoned: (window, error) => {
        this.log.error({ trackId: info.trackId, ...window, reason: error.message }, 'final window not transcribed before shutdown');
      },
      failed: (error) => {
        this.log.warn({ trackId: info.trackId, reason: error.message }, 'track stream rejected');
        onFailed(error);
      },
    };
  }
}
