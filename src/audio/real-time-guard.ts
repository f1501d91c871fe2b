/**
 * Bounds how far ahead of the wall clock a live stream's timeline may run (pure: time comes in as data).
 * A producer may send faster than real time for a while (what it buffered during a network drop), but
 * not without end: sequence-number gaps and long Opus frames otherwise make a few bytes into hours of
 * concealed audio, which costs CPU for every session on the gateway.
 */
export interface RealTimeLimits {
  /** Sustained media time per wall time allowed. */
  maxSpeed: number;
  /** Media time a stream may be ahead of `maxSpeed × elapsed`, ms. */
  burstMs: number;
}

export class RealTimeGuard {
  private readonly limits: RealTimeLimits;
  private startedAt: number | undefined;

  constructor(limits: RealTimeLimits) {
    this.limits = limits;
  }

  /** True while `mediaMs` of audio by wall time `nowMs` is within the limits. */
  allows(mediaMs: number, nowMs: number): boolean {
    this.startedAt ??= nowMs;
    return mediaMs <= this.limits.burstMs + this.limits.maxSpeed * (nowMs - this.startedAt);
  }
}
