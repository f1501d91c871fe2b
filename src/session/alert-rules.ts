/**
 * The gateway's own alerting, for deployments without Prometheus (pure): the rules of
 * deploy/prometheus/helssa-alerts.yml evaluated over samples of this process's figures. A rule fires
 * once its condition has held for its duration, and resolves when it no longer holds; each change is
 * reported once.
 */

/** What the gateway reads of itself at each evaluation. */
export interface AlertSample {
  at: number;
  /** Counters since start: STT calls failed, and answered. */
  sttFailures: number;
  sttCalls: number;
  uploadWindowsPending: number;
  sttRefusing: boolean;
  sttBacklogWindows: number;
  archivePendingUploads: number;
}

export type AlertName = 'HelssaSttErrorRateHigh' | 'HelssaUploadQueueBacklog' | 'HelssaSttDegraded' | 'HelssaArchiveBehind';

export interface AlertChange {
  alert: AlertName;
  state: 'firing' | 'resolved';
  /** The figure the rule looks at, when it changed. */
  value: number;
  summary: string;
  at: number;
}

interface Rule {
  alert: AlertName;
  forMs: number;
  summary: string;
  /** The rule's figure over the samples so far (newest last), and whether it breaks the rule. */
  value(samples: readonly AlertSample[]): { value: number; breaking: boolean };
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Calls an error rate needs before it means anything. */
const MIN_CALLS_FOR_RATE = 10;

export const ALERT_RULES: readonly Rule[] = [
  {
    alert: 'HelssaSttErrorRateHigh',
    forMs: 5 * MINUTE,
    summary: 'More than 10 % of speech-to-text calls failed over the last hour',
    value: (samples) => {
      const now = samples.at(-1)!;
      const hourAgo = samples.find((s) => s.at >= now.at - HOUR) ?? samples[0];
      const failed = now.sttFailures - hourAgo.sttFailures;
      const calls = failed + now.sttCalls - hourAgo.sttCalls;
      const rate = calls > 0 ? failed / calls : 0;
      return { value: rate, breaking: calls >= MIN_CALLS_FOR_RATE && rate > 0.1 };
    },
  },
  { alert: 'HelssaUploadQueueBacklog', forMs: 10 * MINUTE, summary: 'More than 100 upload windows waiting for transcription', value: (s) => ({ value: s.at(-1)!.uploadWindowsPending, breaking: s.at(-1)!.uploadWindowsPending > 100 }) },
  {
    alert: 'HelssaSttDegraded',
    forMs: 5 * MINUTE,
    summary: 'Speech-to-text is degraded: the recognizer refuses requests or final windows wait for it',
    value: (s) => ({ value: s.at(-1)!.sttBacklogWindows, breaking: s.at(-1)!.sttRefusing || s.at(-1)!.sttBacklogWindows > 0 }),
  },
  { alert: 'HelssaArchiveBehind', forMs: 15 * MINUTE, summary: 'Recordings are waiting to be uploaded to object storage', value: (s) => ({ value: s.at(-1)!.archivePendingUploads, breaking: s.at(-1)!.archivePendingUploads > 0 }) },
];

export class AlertEvaluator {
  private readonly samples: AlertSample[] = [];
  /** Since when each rule's condition has held; and whether it fired. */
  private readonly breakingSince = new Map<AlertName, number>();
  private readonly firing = new Set<AlertName>();
  private readonly forScale: number;

  /** `forScale`: multiplies every rule's duration (1 as documented; tests shorten them). */
  constructor(forScale = 1) {
    this.forScale = forScale;
  }

  /** Takes a sample (in time order); returns the alerts that began firing or resolved with it. */
  evaluate(sample: AlertSample): AlertChange[] {
    this.samples.push(sample);
    while (this.samples.length > 2 && this.samples[1].at <= sample.at - HOUR) this.samples.shift();
    const changes: AlertChange[] = [];
    for (const rule of ALERT_RULES) {
      const { value, breaking } = rule.value(this.samples);
      if (!breaking) {
        this.breakingSince.delete(rule.alert);
        if (this.firing.delete(rule.alert)) changes.push({ alert: rule.alert, state: 'resolved', value, summary: rule.summary, at: sample.at });
        continue;
      }
      const since = this.breakingSince.get(rule.alert) ?? sample.at;
      this.breakingSince.set(rule.alert, since);
      if (!this.firing.has(rule.alert) && sample.at - since >= rule.forMs * this.forScale) {
        this.firing.add(rule.alert);
        changes.push({ alert: rule.alert, state: 'firing', value, summary: rule.summary, at: sample.at });
      }
    }
    return changes;
  }

  get active(): AlertName[] {
    return [...this.firing];
  }
}
