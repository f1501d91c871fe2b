/**
 * Several recognizer endpoints as one (`STT_BASE_URLS`): each request goes to the first endpoint in the
 * configured order whose circuit breaker is closed; an endpoint that fails (an outage: 5xx, time-out,
 * unreachable) or refuses is passed over for the next one at once, and its breaker opens when its
 * failures in the rolling window pass the threshold, so the next windows skip it until a trial request
 * (half-open) succeeds. When every endpoint fails the error is the caller's (WindowTranscriber retries
 * finals, or waits while every endpoint refuses).
 */
import CircuitBreaker from 'opossum';
import type { Logger } from '../log.ts';
import { Recognizer, type RecognizerSettings } from './recognizer.ts';
import { RecognizerRefused } from './recognizer-answer.ts';
import type { RecognizerCapabilities, Transcriber, Transcription, TranscriptionRequest } from './transcriber.ts';

export interface PooledRecognizer extends Transcriber {
  readonly capabilities: RecognizerCapabilities;
  recheck?(): Promise<void>;
}

export interface BreakerOptions {
  /** Failures (percent of requests in the rolling window) that open an endpoint's breaker. */
  errorThresholdPercentage: number;
  /** Requests in the window before the breaker may open. */
  volumeThreshold: number;
  /** The rolling window, ms. */
  rollingCountTimeout: number;
  /** How long an open breaker waits before a trial request (half-open), ms. */
  resetTimeout: number;
}

export type EndpointState = 'closed' | 'open' | 'half-open';
export type EndpointOutcome = 'ok' | 'outage' | 'refused' | 'skipped';

export interface EndpointStatus {
  endpoint: string;
  state: EndpointState;
  /** Requests it answered since start. */
  served: number;
}

export interface PoolEvents {
  onOutcome?(endpoint: string, outcome: EndpointOutcome): void;
  onState?(endpoint: string, state: EndpointState): void;
}

interface Endpoint {
  name: string;
  recognizer: PooledRecognizer;
  breaker: CircuitBreaker<[TranscriptionRequest], Transcription>;
  served: number;
}

export class RecognizerPool implements PooledRecognizer {
  private readonly endpoints: Endpoint[];
  private readonly events: PoolEvents;

  constructor(endpoints: { name: string; recognizer: PooledRecognizer }[], breaker: BreakerOptions, log: Logger, events: PoolEvents = {}) {
    if (endpoints.length === 0) throw new RangeError('a recognizer pool needs an endpoint');
    this.events = events;
    this.endpoints = endpoints.map(({ name, recognizer }) => {
      const circuit = new CircuitBreaker((request: TranscriptionRequest) => recognizer.transcribe(request), { ...breaker, timeout: false, name });
      const state = (s: EndpointState) => () => {
        log[s === 'open' ? 'warn' : 'info']({ endpoint: name, state: s }, s === 'open' ? 'STT endpoint failing: requests go to the next one' : 'STT endpoint state');
        events.onState?.(name, s);
      };
      circuit.on('open', state('open'));
      circuit.on('halfOpen', state('half-open'));
      circuit.on('close', state('closed'));
      return { name, recognizer, breaker: circuit, served: 0 };
    });
  }

  /** The first endpoint's: what the gateway asks of windows (prompts, diarization) follows it. */
  get capabilities(): RecognizerCapabilities {
    return this.endpoints[0].recognizer.capabilities;
  }

  get status(): EndpointStatus[] {
    return this.endpoints.map((e) => ({ endpoint: e.name, state: e.breaker.opened ? 'open' : e.breaker.halfOpen ? 'half-open' : 'closed', served: e.served }));
  }

  async transcribe(request: TranscriptionRequest): Promise<Transcription> {
    let lastError: unknown;
    let allRefused = true;
    // With every breaker open, each endpoint is tried anyway, in order: a request is better than none.
    const lastResort = this.endpoints.every((e) => e.breaker.opened);
    for (const endpoint of this.endpoints) {
      // An open breaker: not tried, until its reset time lets one trial request through.
      if (endpoint.breaker.opened && !lastResort) {
        this.events.onOutcome?.(endpoint.name, 'skipped');
        continue;
      }
      try {
        const result = lastResort ? await endpoint.recognizer.transcribe(request) : await endpoint.breaker.fire(request);
        if (lastResort) endpoint.breaker.close();
        endpoint.served++;
        this.events.onOutcome?.(endpoint.name, 'ok');
        return { ...result, endpoint: endpoint.name };
      } catch (error) {
        lastError = error;
        const refused = error instanceof RecognizerRefused;
        allRefused &&= refused;
        this.events.onOutcome?.(endpoint.name, refused ? 'refused' : 'outage');
      }
    }
    // Every endpoint tried refused: a refusal (the caller stops sending and rechecks); else an outage.
    if (allRefused) throw lastError;
    throw lastError instanceof RecognizerRefused ? new Error(`every STT endpoint failed: ${lastError.message}`) : lastError;
  }

  /** Takes requests again when any endpoint does (each is probed; the last refusal is thrown when none does). */
  async recheck(): Promise<void> {
    let lastError: unknown;
    for (const endpoint of this.endpoints) {
      try {
        await endpoint.recognizer.recheck?.();
        // The probe passed: the endpoint takes requests again now, not after its breaker's reset time.
        endpoint.breaker.close();
        return;
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }

  close(): void {
    for (const endpoint of this.endpoints) endpoint.breaker.shutdown();
  }
}

/** The configured recognizer: one endpoint, or (STT_BASE_URLS) a pool of them, each probed at start. */
export async function connectRecognizer(
  settings: { recognizer: RecognizerSettings; recognizerPool: { endpoints: RecognizerSettings[]; breaker: BreakerOptions } | undefined },
  log: Logger,
  events: PoolEvents = {},
): Promise<PooledRecognizer & { status?: EndpointStatus[]; close?(): void }> {
  const pool = settings.recognizerPool;
  if (!pool) return Recognizer.connect(settings.recognizer, log);
  const endpoints = await Promise.all(pool.endpoints.map(async (endpoint) => ({ name: endpoint.client.api === 'openai' ? endpoint.client.baseURL : endpoint.client.endpoint, recognizer: await Recognizer.connect(endpoint, log) })));
  return new RecognizerPool(endpoints, pool.breaker, log, events);
}
