/**
 * Tells the clinic's backend that a session's transcript is ready: a JSON POST signed with
 * HMAC-SHA256 over `${timestamp}.${body}` (headers `X-Helssa-Timestamp`, `X-Helssa-Signature: sha256=…`),
 * retried with exponential backoff until the receiver answers 2xx or the attempts run out. Attempts and
 * the last error are stored, so session status shows a failing webhook, and pending deliveries resume
 * after a restart.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import pRetry from 'p-retry';
import type { Logger } from '../log.ts';
import type { SessionRow, SessionStore } from '../store/session-store.ts';

export interface WebhookOptions {
  url: string;
  secret: string;
  /** Default 8. */
  maxAttempts: number;
  /** First pause between attempts; doubles each time (at most 5 minutes). Default 1000. */
  retryBaseMs: number;
  timeoutMs: number;
  /** Prefix of the transcript URL in the payload, e.g. https://live.clinic.example. */
  publicUrl?: string;
}

export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** One signed POST of a JSON body; throws unless the receiver answers 2xx. */
export async function postSigned(url: string, secret: string, body: string, signal: AbortSignal): Promise<void> {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-helssa-timestamp': timestamp, 'x-helssa-signature': signWebhook(secret, timestamp, body) },
    body,
    signal,
  });
  await response.body?.cancel();
  if (!response.ok) throw new Error(`receiver answered HTTP ${response.status}`);
}

/** For receivers (and tests): checks the signature and that the timestamp is recent. */
export function verifyWebhook(secret: string, timestamp: string, body: string, signature: string, toleranceSeconds = 300): boolean {
  const expected = Buffer.from(signWebhook(secret, timestamp, body));
  const given = Buffer.from(signature);
  const fresh = Math.abs(Date.now() / 1000 - Number(timestamp)) <= toleranceSeconds;
  return fresh && expected.length === given.length && timingSafeEqual(expected, given);
}

export class WebhookNotifier {
  private readonly options: WebhookOptions;
  private readonly store: SessionStore;
  private readonly log: Logger;
  private readonly stopping = new AbortController();
  private readonly deliveries = new Set<Promise<void>>();

  constructor(options: WebhookOptions, store: SessionStore, log: Logger) {
    this.options = options;
    this.store = store;
    this.log = log.child({ component: 'webhook' });
  }

  /** Starts delivery in the background. */
  notify(session: SessionRow | { id: string; encounterRef: string | null }, transcriptVersion: number): void {
    const delivery = this.deliver(session, transcriptVersion).finally(() => this.deliveries.delete(delivery));
    this.deliveries.add(delivery);
  }

  /** Restarts deliveries a previous process left pending. */
  async resumePending(): Promise<void> {
    for (const row of await this.store.sessionsWithWebhook('pending')) {
      const transcript = await this.store.latestTranscript(row.id);
      if (transcript) this.notify(row, transcript.version);
    }
  }

  async close(): Promise<void> {
    this.stopping.abort();
    await Promise.allSettled([...this.deliveries]);
  }

  private async deliver(session: { id: string; encounterRef: string | null }, transcriptVersion: number): Promise<void> {
    const path = `/v1/sessions/${encodeURIComponent(session.id)}/transcript`;
    const body = JSON.stringify({
      type: 'session.completed',
      deliveryId: randomUUID(),
      sessionId: session.id,
      encounterRef: session.encounterRef,
      transcriptVersion,
      transcriptUrl: this.options.publicUrl ? new URL(path, this.options.publicUrl).toString() : path,
      sentAt: new Date().toISOString(),
    });
    await this.store.setWebhook(session.id, 'pending', 0, null);
    let attempts = 0;
    try {
      await pRetry(
        async () => {
          attempts++;
          await postSigned(this.options.url, this.options.secret, body, AbortSignal.any([this.stopping.signal, AbortSignal.timeout(this.options.timeoutMs)]));
        },
        {
          retries: this.options.maxAttempts - 1,
          factor: 2,
          minTimeout: this.options.retryBaseMs,
          maxTimeout: 300000,
          signal: this.stopping.signal,
          onFailedAttempt: async ({ error, attemptNumber }) => {
            this.log.warn({ sessionId: session.id, attempt: attemptNumber, reason: error.message }, 'webhook delivery failed');
            await this.store.setWebhook(session.id, 'pending', attemptNumber, error.message);
          },
        },
      );
      await this.store.setWebhook(session.id, 'delivered', attempts, null);
      this.log.info({ sessionId: session.id, attempts }, 'webhook delivered');
    } catch (error) {
      if (this.stopping.signal.aborted) return;
      await this.store.setWebhook(session.id, 'failed', attempts, (error as Error).message);
      this.log.error({ sessionId: session.id, attempts, reason: (error as Error).message }, 'webhook gave up');
    }
  }
}
