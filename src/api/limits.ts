/**
 * Caps on what one token or one address may hold open at once (live tracks, caption sockets,
 * connections). A refused attempt says which cap it hit and when to try again; the request rate itself
 * is limited by @fastify/rate-limit.
 */
import { CapReached } from '../errors.ts';

export interface Cap {
  key: string;
  max: number;
  what: string;
}


export class ConnectionLimits {
  private readonly held = new Map<string, number>();

  /** Takes one of each cap, or none (throws CapReached); the returned function gives them back, once. */
  acquire(caps: Cap[]): () => void {
    const full = caps.find((c) => (this.held.get(c.key) ?? 0) >= c.max);
    if (full) throw new CapReached(`too many ${full.what} (at most ${full.max}); retry after 30 s`, 30);
    for (const c of caps) this.held.set(c.key, (this.held.get(c.key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const c of caps) {
        const left = (this.held.get(c.key) ?? 1) - 1;
        if (left > 0) this.held.set(c.key, left);
        else this.held.delete(c.key);
      }
    };
  }
}
