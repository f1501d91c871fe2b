/**
 * What the gateways of a fleet tell each other about a session: its caption events (finals, partials,
 * track states, errors) and the request to end it. Every instance that holds the session subscribes;
 * each message names the instance it came from, which ignores its own.
 *
 * Delivery may lose or delay messages (Redis pub/sub is at most once): finals are stored before they are
 * published, under one seq per session, so a receiver that sees a gap reads what it missed from the
 * database. Partials and track states are momentary; the next one replaces a lost one.
 */
import type { CaptionEvent } from '../../client-sdk/src/protocol.ts';

/**
 * `release`: the sending gateway took the track over from the one holding `epoch` (the producer could no
 * longer reach it): that one drops the connection and its pipeline without publishing anything more.
 */
export type BusMessage = { origin: string; sessionId: string } & ({ kind: 'event'; event: CaptionEvent } | { kind: 'end' } | { kind: 'release'; trackId: string; epoch: number });

export interface CaptionBus {
  /** This instance's id (the origin of what it publishes). */
  readonly instanceId: string;
  publish(message: BusMessage): void;
  /** Calls `onMessage` with every message about the session (its own included); returns the unsubscribe. */
  subscribe(sessionId: string, onMessage: (message: BusMessage) => void): () => void;
  /** Calls `listener` after messages may have been lost (a reconnection), so receivers catch up from the store; returns its removal. */
  onReconnect(listener: () => void): () => void;
  close(): Promise<void>;
}

/**
 * The bus of one process: a gateway on its own, or several gateways in one process (tests). Delivery is
 * asynchronous, as over the network.
 */
export class InProcessCaptionBus {
  private readonly subscribers = new Map<string, Set<(message: BusMessage) => void>>();

  /** A gateway's end of this bus. */
  connect(instanceId: string): CaptionBus {
    const subscribers = this.subscribers;
    return {
      instanceId,
      publish: (message) => {
        for (const deliver of subscribers.get(message.sessionId) ?? []) queueMicrotask(() => deliver(message));
      },
      subscribe: (sessionId, onMessage) => {
        let set = subscribers.get(sessionId);
        if (!set) subscribers.set(sessionId, (set = new Set()));
        set.add(onMessage);
        return () => {
          set.delete(onMessage);
          if (set.size === 0) subscribers.delete(sessionId);
        };
      },
      onReconnect: () => () => undefined,
      close: async () => undefined,
    };
  }
}
