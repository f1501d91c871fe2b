/**
 * What a session costs at the recognizer, and the partial budget that bounds it (pure; time is audio
 * milliseconds, given as data). Every STT call is paid per minute of audio sent, and partials re-send
 * audio the finals send again: left alone they multiplied the audio sent by 3–8.
 *
 * `PartialBudget` (one per track connection) bounds the audio sent besides the finals: partials earn
 * credit at `budget` ms per ms of audio received, up to `maxCreditMs` (it starts full, so the first
 * partial of a track goes at once), and go only when their audio fits the credit. A speculative final
 * goes whenever the credit is not in debt, whatever its length (it is what makes the final sooner, and
 * most become the final: no extra audio); one that speech made useless is charged afterwards, which may
 * put the credit in debt by that one window: partials and speculation then wait until it is earned
 * back. Finals are never held back: only partials and speculation are dropped, so the finals stay what
 * they were. `SttUsage` (one per session) adds up audio received and sent by kind; a speculative final
 * the endpointing confirmed counts as a final, a discarded one as `speculative` (paid for nothing).
 */

export type SttAudioKind = 'partial' | 'final' | 'speculative';

export interface PartialBudgetOptions {
  /** Partial audio sent per audio received, at most (over any stretch, give or take `maxCreditMs`). */
  budget: number;
  /** Credit held at most, ms: what a burst of partials after a pause may spend. */
  maxCreditMs: number;
}

export class PartialBudget {
  private readonly options: PartialBudgetOptions;
  private credit: number;

  constructor(options: PartialBudgetOptions) {
    this.options = options;
    this.credit = options.maxCreditMs;
  }

  /** Audio received on the track. */
  earn(ms: number): void {
    this.credit = Math.min(this.options.maxCreditMs, this.credit + ms * this.options.budget);
  }

  /**
   * Whether a partial of `ms` audio may be sent now, leaving `reserveMs` of credit; if so its cost is
   * taken from the credit. Partials during speech keep a reserve for the one at the next pause.
   */
  take(ms: number, reserveMs = 0): boolean {
    if (ms + reserveMs > this.credit) return false;
    this.credit -= ms;
    return true;
  }

  /** Whether a speculative final may go now: the credit is not in debt. */
  get allowsSpeculation(): boolean {
    return this.credit >= 0;
  }

  /** A speculative final that speech made useless: its audio was extra, charged now (the credit may go into debt). */
  charge(ms: number): void {
    this.credit -= ms;
  }
}

export interface SttUsageFigures {
  receivedMs: number;
  sentMs: Record<SttAudioKind, number>;
  /** Audio sent ÷ audio received (0 before any audio). */
  factor: number;
}

export class SttUsage {
  private received = 0;
  private readonly sent: Record<SttAudioKind, number> = { partial: 0, final: 0, speculative: 0 };
  /** Calls the recognizer answered (what a per-request price is counted on). */
  calls = 0;
  /** Words it answered that were dropped as invented. */
  dropped = 0;

  receive(ms: number): void {
    this.received += ms;
  }

  /** Audio the recognizer was sent and answered. */
  record(kind: SttAudioKind, ms: number): void {
    this.sent[kind] += ms;
    this.calls++;
  }

  get figures(): SttUsageFigures {
    const total = this.sent.partial + this.sent.final + this.sent.speculative;
    return { receivedMs: Math.round(this.received), sentMs: { ...this.sent }, factor: this.received > 0 ? Math.round((total / this.received) * 1000) / 1000 : 0 };
  }
}
