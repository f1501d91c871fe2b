/** The live sessions of this gateway, created when their first producer or viewer arrives. */
import type { IngestFormat } from '../../client-sdk/src/protocol.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { Session } from './session.ts';
import type { TrackListener, TrackPipeline } from './track-pipeline.ts';

export interface PipelineRequest {
  trackId: string;
  format: IngestFormat;
  sampleRate: number;
  language: string | undefined;
  offsetMs: number;
  epoch: number;
  listener: TrackListener;
}

/** Builds a track's pipeline with the gateway's shared STT queue, VAD settings and segmenter options. */
export type PipelineFactory = (request: PipelineRequest) => TrackPipeline;

export class SessionRegistry {
  private readonly sessions = new Map<string, Session>();
  private readonly factory: PipelineFactory;
  private readonly log: Logger;
  private readonly metrics: Metrics;

  constructor(factory: PipelineFactory, log: Logger, metrics: Metrics) {
    this.factory = factory;
    this.log = log;
    this.metrics = metrics;
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  getOrCreate(id: string): Session {
    let session = this.sessions.get(id);
    if (!session) {
      session = new Session(id, this.factory, this.log, this.metrics);
      this.sessions.set(id, session);
    }
    return session;
  }

  all(): Session[] {
    return [...this.sessions.values()];
  }
}
