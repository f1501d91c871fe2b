/**
 * Track tails (track-tail.ts) in Redis: one key per connection of a track, written whole with an expiry,
 * taken with GETDEL so that exactly one gateway transcribes a stopped connection's tail.
 */
import { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import type { TailStore } from './track-tail.ts';

export class RedisTailStore implements TailStore {
  private readonly redis: Redis;

  constructor(url: string, log: Logger) {
    // No offline queue: a tail Redis cannot take now is written again with the next flush.
    this.redis = new Redis(url, { connectTimeout: 2000, maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000) });
    this.redis.on('error', (error) => log.debug({ err: error }, 'track tails: Redis unreachable'));
  }

  async put(key: string, blob: Buffer, ttlMs: number): Promise<void> {
    await this.redis.set(key, blob, 'PX', ttlMs);
  }

  async take(key: string): Promise<Buffer | undefined> {
    return (await this.redis.getdelBuffer(key)) ?? undefined;
  }

  async delete(key: string): Promise<void> {
    await this.redis.del(key);
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
