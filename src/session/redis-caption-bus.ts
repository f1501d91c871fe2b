/**
 * The caption bus of a fleet on Redis pub/sub: one channel per session, subscribed by the instances that
 * hold it. Pub/sub rather than Streams: finals are in PostgreSQL, numbered, before they are published,
 * so a lost message costs a read of the store, never a final; a stream would keep a second copy of every
 * caption (patient data) in Redis with its own trimming and retention to get right. Partials and track
 * states are momentary; nobody needs one replayed.
 */
import { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import type { BusMessage, CaptionBus } from './caption-bus.ts';

const CHANNEL_PREFIX = 'helssa:captions:';

export class RedisCaptionBus implements CaptionBus {
  readonly instanceId: string;
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  private readonly handlers = new Map<string, Set<(message: BusMessage) => void>>();
  private readonly reconnectListeners = new Set<() => void>();
  private readonly log: Logger;
  private connectedOnce = false;

  constructor(url: string, instanceId: string, log: Logger) {
    this.instanceId = instanceId;
    this.log = log;
    // No offline queue: a message Redis cannot take now is dropped (receivers catch up from the store).
    const options = { connectTimeout: 2000, maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000) };
    this.publisher = new Redis(url, options);
    this.subscriber = new Redis(url, { ...options, enableOfflineQueue: true, maxRetriesPerRequest: null });
    for (const client of [this.publisher, this.subscriber]) client.on('error', (error) => log.debug({ err: error }, 'caption bus: Redis unreachable'));
    this.subscriber.on('ready', () => {
      if (this.connectedOnce) {
        log.info('caption bus: Redis is back; sessions catch up from the store');
        for (const listener of this.reconnectListeners) listener();
      }
      this.connectedOnce = true;
    });
    this.subscriber.on('messageBuffer', (channel: Buffer, data: Buffer) => this.receive(channel.toString(), data));
  }

  /** Whether both connections are up (readiness). */
  get connected(): boolean {
    return this.publisher.status === 'ready' && this.subscriber.status === 'ready';
  }

  publish(message: BusMessage): void {
    if (this.publisher.status !== 'ready') return;
    this.publisher.publish(CHANNEL_PREFIX + message.sessionId, JSON.stringify(message)).catch((error: Error) => this.log.debug({ err: error }, 'caption bus: a message was not published'));
  }

  subscribe(sessionId: string, onMessage: (message: BusMessage) => void): () => void {
    const channel = CHANNEL_PREFIX + sessionId;
    let set = this.handlers.get(channel);
    if (!set) {
      this.handlers.set(channel, (set = new Set()));
      this.subscriber.subscribe(channel).catch((error: Error) => this.log.warn({ err: error, sessionId }, 'caption bus: could not subscribe (retried on reconnection)'));
    }
    set.add(onMessage);
    return () => {
      set.delete(onMessage);
      if (set.size > 0 || this.handlers.get(channel) !== set) return;
      this.handlers.delete(channel);
      this.subscriber.unsubscribe(channel).catch(() => undefined);
    };
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  async ping(): Promise<void> {
    await this.publisher.ping();
  }

  async close(): Promise<void> {
    this.publisher.disconnect();
    this.subscriber.disconnect();
  }

  private receive(channel: string, data: Buffer): void {
    const handlers = this.handlers.get(channel);
    if (!handlers) return;
    let message: BusMessage;
    try {
      message = JSON.parse(data.toString()) as BusMessage;
    } catch {
      this.log.warn({ channel }, 'caption bus: an unreadable message was ignored');
      return;
    }
    for (const handler of handlers) handler(message);
  }
}
