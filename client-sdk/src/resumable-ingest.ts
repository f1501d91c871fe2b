/**
 * The producer side of the ingest WebSocket, surviving network drops and a gateway's death: every 20 ms
 * frame is kept until the gateway says the track's finals are stored past it (`durableMs`); when the
 * connection drops, or stops acknowledging (a network that vanished without closing), a new connection
 * resumes the track with its resume token and sends again from the first frame kept. The same gateway
 * skips what it already has; another one (the first died, the load balancer sent the producer elsewhere)
 * transcribes from there. Either way the track's audio comes out whole and once. Runs on any
 * WHATWG-style WebSocket (browsers, Node's, the `ws` package).
 */
import { CloseCode, type IngestEvent, type IngestFormat } from './protocol.ts';

/** How one connection's stream is written: the bytes that open it (a container's header) and each frame. */
export interface FrameFormat {
  format: IngestFormat;
  /** Only for pcm16. */
  sampleRate?: number;
  /** Bytes a connection's stream starts with (WebM/Ogg: a new container), when the format has them. */
  preamble?(): Uint8Array;
  /** The message carrying one frame; `index` counts frames from the producer's start. */
  message(payload: Uint8Array, index: number): Uint8Array;
}

/** `opus` ingest: each message a 16-bit big-endian sequence number (the frame index), then the packet. */
export const OPUS_FRAMES: FrameFormat = {
  format: 'opus',
  message(payload, index) {
    const message = new Uint8Array(2 + payload.length);
    message[0] = (index >> 8) & 0xff;
    message[1] = index & 0xff;
    message.set(payload, 2);
    return message;
  },
};

/** `pcm16` ingest: each message a frame's little-endian samples, as they are. */
export function pcm16Frames(sampleRate: 16000 | 48000): FrameFormat {
  return { format: 'pcm16', sampleRate, message: (payload) => payload };
}

export type IngestState = 'connecting' | 'live' | 'reconnecting' | 'stopped' | 'failed';

export interface ResumableIngestOptions {
  /** The ingest URL without `format`, `sampleRate`, `startMs` or `resume` (those are added here). */
  url: string;
  format: FrameFormat;
  /** A WebSocket constructor: `WebSocket` in browsers, `ws`'s in Node. */
  WebSocket: new (url: string) => WebSocket;
  /**
   * Audio kept while the gateway cannot be reached; older frames are dropped past it (except, while a
   * connection opens, the frames it announced it starts with). Default 60 s, the gateway's default
   * INGEST_BURST_MS: a fresh connection may send at most that much faster than real time.
   */
  maxBufferMs?: number;
  /** Sent frames without an acknowledgement for this long mean the connection is dead. Default 2500 ms. */
  ackTimeoutMs?: number;
  /** Longest pause between two connection attempts. Default 5000 ms. */
  maxBackoffMs?: number;
  onState?: (state: IngestState, detail?: string) => void;
  /** Each acknowledgement (track time the gateway has). */
  onAck?: (receivedMs: number) => void;
}

interface Frame {
  index: number;
  /** Time of its first sample from the producer's start, ms. */
  atMs: number;
  endMs: number;
  payload: Uint8Array;
}

/** Close codes after which resuming cannot help: the stream itself or its parameters were refused. */
const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([CloseCode.normal, CloseCode.invalidPayload, CloseCode.policyViolation, CloseCode.messageTooBig, CloseCode.badParameters, CloseCode.replaced]);
/** A connection that ended without a close frame (the network died). */
const ABNORMAL_CLOSURE = 1006;
/** What this producer sends when it gives up on a stalled connection: not an end, the track waits for the resume. */
const STALLED = 4002;
/** A connection not open by then is given up (a network that swallows the handshake). */
const CONNECT_TIMEOUT_MS = 10000;
/** How often the connection is checked for answers. */
const CHECK_EVERY_MS = 250;

export class ResumableIngest {
  private readonly options: ResumableIngestOptions;
  /** Frames past the track's stored finals, oldest first; `frames[0].index` is the first a new connection sends. */
  private frames: Frame[] = [];
  private nextIndex = 0;
  /** Producer time at the end of the last frame pushed, ms. */
  private pushedMs = 0;
  /** Index of the next frame to send on the current connection. */
  private sendIndex = 0;
  private socket: WebSocket | undefined;
  private resumeToken: string | undefined;
  /** Track time of the producer's time 0 (its first frame's start), learned from the first `ready`. */
  private baseMs: number | undefined;
  private attempts = 0;
  /** When the gateway was last heard from on the current connection (opened, ready, ack). */
  private lastHeardAt = 0;
  /** When the stall check last ran: a check that runs late means this page or process was busy. */
  private lastCheckAt = Date.now();
  /** The current connection has had its `ready`: audio may be sent on it. */
  private live = false;
  private stalledTimer: ReturnType<typeof setInterval> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set by end(): closes the connection once everything is sent on it. */
  private ending: (() => void) | undefined;
  /** The normal close has been sent. */
  private closing = false;
  private finished = false;
  readonly ended: Promise<void>;
  private finish!: () => void;
  /** Times from a reconnection's start to its `ready` (ms), for the page and for tests. */
  readonly resumeTimes: number[] = [];
  private reconnectStartedAt: number | undefined;
  private overflowMs = 0;

  constructor(options: ResumableIngestOptions) {
    this.options = options;
    this.ended = new Promise((resolve) => (this.finish = resolve));
    this.options.onState?.('connecting');
    this.connect();
    this.stalledTimer = setInterval(() => this.checkStalled(), CHECK_EVERY_MS);
  }

  /**
   * Audio let go unsent because the gateway was away longer than `maxBufferMs` (the gateway fills it with
   * silence, or the track starts after it), ms. A page can tell its user what the network cost.
   */
  get droppedMs(): number {
    return this.overflowMs;
  }

  /** Audio kept (past the track's stored finals), ms. */
  get bufferedMs(): number {
    return this.frames.length ? this.pushedMs - this.frames[0].atMs : 0;
  }

  /** One frame of audio (an Opus packet, or PCM16) lasting `durationMs`. */
  push(payload: Uint8Array, durationMs = 20): void {
    if (this.finished || this.ending || this.closing) return;
    this.frames.push({ index: this.nextIndex++, atMs: this.pushedMs, endMs: this.pushedMs + durationMs, payload });
    this.pushedMs += durationMs;
    const maxBufferMs = this.options.maxBufferMs ?? 60000;
    if (this.bufferedMs > maxBufferMs) {
      // The gateway has been away longer than the buffer: the oldest audio goes (the gateway fills it with silence).
      // A connection still opening has announced its first frame (startMs): that frame and the later ones stay
      // until it is live or given up, or its stream would not start where the gateway was told it does.
      const keepFrom = this.socket && !this.live ? this.sendIndex : Infinity;
      let drop = 0;
      while (drop < this.frames.length && this.pushedMs - this.frames[drop].atMs > maxBufferMs && this.frames[drop].index < keepFrom) {
        this.overflowMs += this.frames[drop].endMs - this.frames[drop].atMs;
        drop++;
      }
      this.frames.splice(0, drop);
      this.sendIndex = Math.max(this.sendIndex, this.frames[0].index);
    }
    this.flush();
  }

  /**
   * Sends what is left, closes normally (the gateway ends the track), and resolves once closed. While the
   * gateway cannot be reached it keeps trying: what was recorded is sent before the track ends.
   */
  end(): Promise<void> {
    if (!this.finished && !this.ending && !this.closing) {
      this.ending = () => this.closeNormally();
      this.flush();
    }
    return this.ended;
  }

  /** Everything is sent on the current connection: the normal close, which the gateway answers once it has all of it. */
  private closeNormally(): void {
    const socket = this.socket!;
    this.ending = undefined;
    this.closing = true;
    socket.addEventListener('close', (event: CloseEvent) => {
      // Answered (with 1000, or with whatever the gateway closed it with meanwhile): the stream has ended.
      if (event.code !== ABNORMAL_CLOSURE) return this.stop('stopped');
      // Not answered (the network died meanwhile): the gateway may lack the last frames. Resume, send them, end again.
      this.closing = false;
      this.ending = () => this.closeNormally();
      this.dropped(event.code, event.reason, true);
    });
    socket.close(CloseCode.normal, 'producer stopped');
  }

  private connect(): void {
    const url = new URL(this.options.url);
    const { format, sampleRate } = this.options.format;
    url.searchParams.set('format', format);
    if (sampleRate) url.searchParams.set('sampleRate', String(sampleRate));
    if (this.resumeToken) url.searchParams.set('resume', this.resumeToken);
    if (this.baseMs !== undefined) url.searchParams.set('startMs', String(this.baseMs + (this.frames[0]?.atMs ?? this.pushedMs)));
    const socket = new this.options.WebSocket(url.toString());
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    this.live = false;
    this.sendIndex = this.firstUnsentIndex();
    this.lastHeardAt = Date.now();
    let opened = false;
    socket.addEventListener('open', () => {
      if (this.socket !== socket) return;
      opened = true;
      this.lastHeardAt = Date.now();
    });
    socket.addEventListener('message', (event: MessageEvent) => {
      if (this.socket !== socket || typeof event.data !== 'string') return;
      this.receive(JSON.parse(event.data) as IngestEvent);
    });
    // What went wrong arrives as the close that follows (and Node's `ws` throws an error nobody listens to).
    socket.addEventListener('error', () => undefined);
    socket.addEventListener('close', (event: CloseEvent) => {
      if (this.socket !== socket || this.finished || this.closing) return;
      this.dropped(event.code, event.reason, opened);
    });
  }

  private receive(event: IngestEvent): void {
    this.lastHeardAt = Date.now();
    if (event.type === 'ready') {
      // The first connection's stream starts with the oldest frame still kept (older ones were let go before
      // the gateway was ever reached): that frame is at the track time `ready` gives.
      this.baseMs ??= event.receivedMs - (this.frames.find((f) => f.index >= this.sendIndex)?.atMs ?? this.pushedMs);
      this.resumeToken = event.resumeToken;
      this.attempts = 0;
      if (this.reconnectStartedAt !== undefined) this.resumeTimes.push(Date.now() - this.reconnectStartedAt);
      this.reconnectStartedAt = undefined;
      this.options.onState?.('live');
      // Nothing is sent before `ready`: a connection lost before it must leave the gateway no audio that the
      // producer, without a resume token or a track time yet, could not account for.
      this.live = true;
      const preamble = this.options.format.preamble?.();
      if (preamble) this.socket!.send(preamble);
      this.flush();
      return;
    }
    this.options.onAck?.(event.receivedMs);
    // Kept from where the track's finals are stored, not from where the gateway has the audio: if that
    // gateway dies, another transcribes from there (this one skips what it has when resumed).
    const durableMs = (event.durableMs ?? event.receivedMs) - this.baseMs!;
    let drop = 0;
    while (drop < this.frames.length && this.frames[drop].endMs <= durableMs) drop++;
    if (drop > 0) this.frames.splice(0, drop);
  }

  /** The index the next connection starts from: the first frame kept. */
  private firstUnsentIndex(): number {
    return this.frames[0]?.index ?? this.nextIndex;
  }

  private flush(): void {
    const socket = this.socket;
    if (!socket || !this.live || socket.readyState !== 1) return;
    const { format } = this.options;
    const first = this.frames[0]?.index ?? this.nextIndex;
    for (let i = Math.max(0, this.sendIndex - first); i < this.frames.length; i++) socket.send(format.message(this.frames[i].payload, this.frames[i].index));
    this.sendIndex = this.nextIndex;
    this.ending?.();
  }

  private checkStalled(): void {
    const now = Date.now();
    // Checked late, this page or process was busy: the gateway's answers may be waiting unread, not missing,
    // so the time it was busy does not count as silence.
    const busyMs = now - this.lastCheckAt - CHECK_EVERY_MS;
    this.lastCheckAt = now;
    if (busyMs > CHECK_EVERY_MS) this.lastHeardAt += busyMs;
    const socket = this.socket;
    if (!socket || this.closing) return;
    const connecting = socket.readyState === 0;
    // Waiting for the gateway: for the connection, its `ready`, or an acknowledgement of audio sent.
    const waiting = connecting || !this.live || this.sendIndex !== this.firstUnsentIndex();
    const ackTimeoutMs = this.options.ackTimeoutMs ?? 2500;
    // Until `ready` the gateway is opening the track (loading the session, its spool): part of connecting.
    const opening = connecting || !this.live;
    if (!waiting || now - this.lastHeardAt < (opening ? Math.max(CONNECT_TIMEOUT_MS, ackTimeoutMs) : ackTimeoutMs)) return;
    // Nothing heard for a while: the network vanished without closing.
    socket.close(STALLED, 'no answer; resuming on a new connection');
    this.dropped(STALLED, 'connection stalled', !connecting);
  }

  private dropped(code: number, reason: string, opened: boolean): void {
    this.socket = undefined;
    if (FINAL_CLOSE_CODES.has(code) && opened) {
      this.stop(code === CloseCode.normal ? 'stopped' : 'failed', `${code} ${reason}`);
      return;
    }
    this.reconnectStartedAt ??= Date.now();
    this.options.onState?.('reconnecting', `${code} ${reason}`.trim());
    // The first retry is at once (a drop is usually brief); later ones back off, with jitter.
    const backoff = this.attempts === 0 ? 0 : Math.min(this.options.maxBackoffMs ?? 5000, 100 * 2 ** this.attempts) * (0.5 + Math.random() / 2);
    this.attempts++;
    this.retryTimer = setTimeout(() => this.connect(), backoff);
  }

  private stop(state: 'stopped' | 'failed', detail?: string): void {
    this.finished = true;
    clearInterval(this.stalledTimer);
    clearTimeout(this.retryTimer);
    this.options.onState?.(state, detail);
    this.finish();
  }
}
