/**
 * The SDK's ResumableIngest against a model of the gateway's resume rules, over a network that delivers,
 * drops and stalls connections at random, while the producer's own event loop is now and then busy (its
 * timers run late). Whatever happens, the track's timeline holds each frame at its own place, once, or
 * silence where the producer's buffer overflowed; with a buffer that never overflows, every frame.
 */
import { mock } from 'node:test';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { CloseCode } from '../../client-sdk/src/protocol.ts';
import { ResumableIngest, type FrameFormat } from '../../client-sdk/src/resumable-ingest.ts';

const FRAME_MS = 20;
/** Each frame's payload is its index: the gateway model can tell where every frame landed. */
const INDEXED: FrameFormat = { format: 'pcm16', sampleRate: 16000, message: (payload) => payload };
const SILENCE = -1;

/** The gateway's side of the track: its timeline of frame slots and the resume rules of TrackTable/TrackPipeline. */
class GatewayModel {
  readonly timeline: number[] = [];
  readonly token = 'token-1';
  /** The connection whose audio the track takes; an older one's messages are dropped (taken over). */
  current: ServerSide | undefined;
  ended = false;

  attach(side: ServerSide, url: URL): void {
    const resume = url.searchParams.get('resume');
    const startMs = url.searchParams.get('startMs');
    if (resume !== null && resume !== this.token) throw new Error(`unexpected resume token in ${url}`);
    if (this.ended && startMs === null) throw new Error(`a new track after the end: ${url}`);
    // A resume after the track ended (the answer to the normal close was lost) opens its next epoch, on the same timeline.
    this.ended = false;
    side.skip = 0;
    if (startMs !== null) {
      const start = Number(startMs) / FRAME_MS;
      if (start < this.timeline.length) side.skip = this.timeline.length - start;
      while (start > this.timeline.length) this.timeline.push(SILENCE);
    }
    this.current = side;
    side.ackedAt = this.timeline.length;
    side.toClient.push(JSON.stringify({ type: 'ready', trackId: 't', receivedMs: this.timeline.length * FRAME_MS, resumeToken: this.token, resumeWindowMs: 60000 }));
  }

  receive(side: ServerSide, message: Uint8Array): void {
    if (this.current !== side) return;
    if (side.skip > 0) side.skip--;
    else this.timeline.push(new DataView(message.buffer, message.byteOffset).getUint32(0));
    // An ack every 10 frames of audio the track has, and one per 10 messages while resent ones are skipped.
    if (++side.messages % 10 === 0 || this.timeline.length - side.ackedAt >= 10) {
      side.ackedAt = this.timeline.length;
      side.toClient.push(JSON.stringify({ type: 'ack', receivedMs: this.timeline.length * FRAME_MS }));
    }
  }
}

interface ServerSide {
  toServer: (Uint8Array | { close: number })[];
  toClient: string[];
  skip: number;
  ackedAt: number;
  messages: number;
}

/** A WHATWG-style WebSocket over the model network: nothing moves until the network delivers it. */
class FakeSocket {
  static network: Network;
  readyState = 0;
  binaryType = 'arraybuffer';
  readonly url: URL;
  readonly side: ServerSide = { toServer: [], toClient: [], skip: 0, ackedAt: 0, messages: 0 };
  stalled = false;
  attached = false;
  private readonly listeners = new Map<string, ((event: unknown) => void)[]>();

  constructor(url: string) {
    this.url = new URL(url);
    FakeSocket.network.sockets.push(this);
  }

  addEventListener(type: string, listener: (event: unknown) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  emit(type: string, event: unknown): void {
    for (const listener of this.listeners.get(type) ?? []) listener(event);
  }

  send(data: Uint8Array): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.side.toServer.push(data);
  }

  close(code: number): void {
    if (this.readyState >= 2) return;
    if (this.readyState === 0 || this.stalled) {
      // Nothing can reach the gateway any more: it sees the connection vanish; the producer, its close (later,
      // as a WebSocket's events always come).
      this.readyState = 3;
      FakeSocket.network.lost(this);
      FakeSocket.network.later.push(() => this.emit('close', { code: 1006, reason: '' }));
      return;
    }
    this.readyState = 2;
    this.side.toServer.push({ close: code });
  }
}

class Network {
  readonly sockets: FakeSocket[] = [];
  readonly gateway = new GatewayModel();
  /** Events due on the producer's side after the current step. */
  later: (() => void)[] = [];

  runLater(): void {
    for (const event of this.later.splice(0)) event();
  }

  lost(socket: FakeSocket): void {
    if (this.gateway.current === socket.side) this.gateway.current = undefined;
  }

  /** Delivers what is waiting on one connection, both ways, unless it is stalled. */
  deliver(socket: FakeSocket): void {
    if (socket.stalled || socket.readyState === 3) return;
    if (!socket.attached) {
      socket.attached = true;
      this.gateway.attach(socket.side, socket.url);
      socket.readyState = 1;
      socket.emit('open', {});
    }
    for (const item of socket.side.toServer.splice(0)) {
      if (item instanceof Uint8Array) {
        this.gateway.receive(socket.side, item);
        continue;
      }
      // The close frame: a normal close ends the track (everything before it is in); the gateway answers it.
      if (item.close === CloseCode.normal && this.gateway.current === socket.side) this.gateway.ended = true;
      else this.lost(socket);
      socket.readyState = 3;
      for (const message of socket.side.toClient.splice(0)) socket.emit('message', { data: message });
      socket.emit('close', { code: item.close, reason: '' });
      return;
    }
    for (const message of socket.side.toClient.splice(0)) socket.emit('message', { data: message });
  }

  /** Cuts every connection (no close frame): both sides see it gone. */
  drop(): void {
    for (const socket of this.sockets) {
      if (socket.readyState === 3) continue;
      socket.readyState = 3;
      this.lost(socket);
      socket.emit('close', { code: 1006, reason: '' });
    }
  }

  stall(): void {
    for (const socket of this.sockets) if (socket.readyState !== 3) socket.stalled = true;
  }

  deliverAll(): void {
    for (const socket of [...this.sockets]) this.deliver(socket);
  }
}

type Step = { kind: 'push'; frames: number } | { kind: 'tick'; ms: number } | { kind: 'busy'; ms: number } | { kind: 'deliver'; which: number } | { kind: 'drop' } | { kind: 'stall' };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('push' as const), frames: fc.integer({ min: 1, max: 30 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 10, max: 600 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('busy' as const), ms: fc.integer({ min: 100, max: 3000 }) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('deliver' as const), which: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'drop' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'stall' as const }) },
);

function frame(index: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, index);
  return payload;
}

async function run(steps: Step[], maxBufferMs: number): Promise<{ network: Network; pushed: number; overflowed: boolean; droppedMs: number; state: string }> {
  mock.timers.enable({ apis: ['setInterval', 'setTimeout', 'Date'], now: 1_000_000 });
  // The reconnection backoff's jitter, fixed: a failing case replays the same.
  const random = Math.random;
  Math.random = () => 0.5;
  const network = new Network();
  FakeSocket.network = network;
  let state = 'connecting';
  const ingest = new ResumableIngest({ url: 'ws://gateway.test/ingest', format: INDEXED, WebSocket: FakeSocket as never, maxBufferMs, ackTimeoutMs: 500, maxBackoffMs: 400, onState: (s) => (state = s) });
  let pushed = 0;
  let overflowed = false;
  try {
    for (const s of steps) {
      network.runLater();
      if (s.kind === 'push') {
        for (let i = 0; i < s.frames; i++) ingest.push(frame(pushed++), FRAME_MS);
        overflowed ||= ingest.bufferedMs >= maxBufferMs;
      } else if (s.kind === 'tick') mock.timers.tick(s.ms);
      // The producer's loop was busy: the clock moved on, its timers run late, all at once.
      else if (s.kind === 'busy') (mock.timers.setTime(Date.now() + s.ms), mock.timers.tick(0));
      else if (s.kind === 'deliver') {
        const open = network.sockets.filter((socket) => socket.readyState !== 3);
        if (open.length) network.deliver(open[s.which % open.length]);
      } else if (s.kind === 'drop') network.drop();
      else network.stall();
    }
    void ingest.end();
    // From here the network is healthy: the ingest must finish and leave the track whole.
    for (let i = 0; i < 400 && state !== 'stopped' && state !== 'failed'; i++) {
      network.runLater();
      network.deliverAll();
      mock.timers.tick(100);
    }
    return { network, pushed, overflowed, droppedMs: ingest.droppedMs, state };
  } finally {
    Math.random = random;
    mock.timers.reset();
  }
}

test('every frame lands at its own place once, or as silence past the buffer; without overflow, all of them', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(step, { minLength: 5, maxLength: 120 }), fc.constantFrom(200, 600, 60000), async (steps, maxBufferMs) => {
      const { network, pushed, overflowed, droppedMs, state } = await run(steps, maxBufferMs);
      const seen = `${JSON.stringify(network.gateway.timeline)} ${network.sockets.map((s) => `${s.url.search} ${s.readyState} ${s.stalled}`).join(' | ')}`;
      assert.is(state, 'stopped', seen);
      assert.ok(network.gateway.ended, `the track was ended by the normal close: ${seen}`);
      const { timeline } = network.gateway;
      // Frames the buffer let go before the gateway ever answered are not part of the track: it starts later.
      const first = pushed - timeline.length;
      assert.ok(first >= 0, `no more slots than frames: ${seen}`);
      timeline.forEach((index, slot) => {
        if (index !== SILENCE) assert.is(index, first + slot, `slot ${slot} holds frame ${index}: ${seen}`);
      });
      // Every frame missing (before the track's start, or silence in it) is one the producer counted as let go.
      const missing = first + timeline.filter((index) => index === SILENCE).length;
      assert.ok(missing * FRAME_MS <= droppedMs, `${missing} frames missing, ${droppedMs} ms counted as let go: ${seen}`);
      assert.ok(droppedMs === 0 || overflowed, `audio let go only past the buffer: ${seen}`);
      if (!overflowed) assert.ok(first === 0 && !timeline.includes(SILENCE), `every frame, where the buffer never overflowed: ${seen}`);
    }),
    { numRuns: 300 },
  );
});

test('a busy producer (its timers late) is not mistaken for a dead connection', async () => {
  const { network, state } = await run([{ kind: 'push', frames: 5 }, { kind: 'deliver', which: 0 }, { kind: 'push', frames: 20 }, { kind: 'busy', ms: 2000 }, { kind: 'deliver', which: 0 }, { kind: 'tick', ms: 100 }], 60000);
  assert.is(state, 'stopped');
  assert.is(network.sockets.length, 1, 'one connection: no reconnection');
});

test.run();
