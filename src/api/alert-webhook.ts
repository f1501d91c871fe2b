/**
 * Alerts sent by the gateway itself, for deployments without Prometheus: every `evaluationMs` it samples
 * its own figures, evaluates the rules of deploy/prometheus/helssa-alerts.yml (AlertEvaluator), and POSTs
 * each alert that begins firing or resolves to ALERT_WEBHOOK_URL, signed like the transcript webhook
 * (HMAC-SHA256 over `${timestamp}.${body}`, headers `X-Helssa-Timestamp`, `X-Helssa-Signature`).
 */
import { randomUUID } from 'node:crypto';
import pRetry from 'p-retry';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { AlertEvaluator, type AlertChange, type AlertSample } from '../session/alert-rules.ts';
import { postSigned } from './webhook.ts';

export interface AlertWebhookOptions {
  url: string;
  secret: string;
  evaluationMs: number;
  /** Multiplies the rules' durations (1 as documented). */
  forScale: number;
  timeoutMs: number;
}

/** The figures the rules read, from this gateway's metrics. */
export async function sampleMetrics(metrics: Metrics): Promise<AlertSample> {
  const total = async (metric: { get(): Promise<{ values: { value: number }[] }> }) => (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);
  return {
    at: Date.now(),
    sttFailures: await total(metrics.sttFailures),
    sttCalls: await total(metrics.sttCalls),
    uploadWindowsPending: metrics.probes.uploadWindowsPending(),
    sttRefusing: (await total(metrics.sttRefusing)) > 0,
    sttBacklogWindows: await total(metrics.sttBacklogWindows),
    archivePendingUploads: metrics.probes.archivePendingUploads(),
  };
}

export class AlertWebhook {
  private readonly options: AlertWebhookOptions;
  private readonly evaluator: AlertEvaluator;
  private readonly sample: () => Promise<AlertSample>;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private readonly stopping = new AbortController();

  constructor(options: AlertWebhookOptions, sample: () => Promise<AlertSample>, log: Logger) {
    this.options = options;
    this.evaluator = new AlertEvaluator(options.forScale);
    this.sample = sample;
    this.log = log.child({ component: 'alerts' });
  }

  start(): void {
    this.timer = setInterval(() => {
      this.running = this.running.then(() => this.tick()).catch((error) => this.log.error({ err: error }, 'alert evaluation failed'));
    }, this.options.evaluationMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.stopping.abort();
    await this.running;
  }

  private async tick(): Promise<void> {
    for (const change of this.evaluator.evaluate(await this.sample())) await this.send(change);
  }

  private async send(change: AlertChange): Promise<void> {
    const body = JSON.stringify({ type: 'alert', deliveryId: randomUUID(), ...change, at: new Date(change.at).toISOString(), sentAt: new Date().toISOString() });
    this.log.warn({ alert: change.alert, state: change.state, value: change.value }, `alert ${change.state}`);
    try {
      await pRetry(() => postSigned(this.options.url, this.options.secret, body, AbortSignal.any([this.stopping.signal, AbortSignal.timeout(this.options.timeoutMs)])), {
        retries: 3,
        minTimeout: 500,
        signal: this.stopping.signal,
      });
    } catch (error) {
      this.log.error({ err: error, alert: change.alert }, 'the alert could not be delivered');
    }
  }
}
