/**
 * What a session costs at the recognizer, and the partial budget that bounds it (pure; time is audio
 * milliseconds, given as data). Every STT call is paid per minute of audio sent, and partials re-send
 * audio the finals send again: left alone they multiplied the audio sent by 3–8.
 *
 * `PartialBudget` (one per track connection) bounds the audio sent besides the finals: partials and
 * speculative finals earn credit at `budget` ms per ms of audio received, up to `maxCreditMs` (it starts
 * full, so the first partial of a track goes at once), and go only when their audio fits the credit; a
 * speculative final the endpointing confirms is given back (it was the final's call). Finals are never
 * held back: only partials and speculation are dropped, so the finals stay what they were. `SttUsage` (one per session) adds up audio received and
 * sent by kind; a speculative final the endpointing confirmed counts as a final, a discarded one as
 * `speculative` (paid for nothing).
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
   * Whether a partial (or speculative final) of `ms` audio may be sent now, leaving `reserveMs` of credit;
   * if so its cost is taken from the credit. Partials keep the reserve for their utterance's speculative
   * final: it is what makes the final sooner, and it is given back when the endpointing confirms it.
   */
  take(ms: number, reserveMs = 0): boolean {
    if (ms + reserveMs > this.credit) return false;
    this.credit -= ms;
    return true;
  }

  /** Credit held at most, ms. */
  get maxCreditMs(): number {
    return this.options.maxCreditMs;
  }

  /** A speculative final that became the final: its audio was not extra. */
  giveBack(ms: number): void {
    this.credit = Math.min(this.options.maxCreditMs, this.credit + ms);
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

  receive(ms: number): void {
    this.received += ms;
  }

  /** Audio the recognizer was sent and answered. */
  record(kind: SttAudioKind, ms: number): void {
    this.sent[kind] += ms;
  }

  get figures(): SttUsageFigures {
    const total = this.sent.partial + this.sent.final + this.sent.speculative;
    return { receivedMs: Math.round(this.received), sentMs: { ...this.sent }, factor: this.received > 0 ? Math.round((total / this.received) * 1000) / 1000 : 0 };
  }
}
