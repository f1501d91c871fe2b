/**
 * Watching a session's captions over the captions WebSocket. When the connection drops the watcher
 * reconnects with growing pauses and resumes with `?after=<last final seq>`: the gateway sends only the
 * finals after it, and a final seen twice (a race at reconnection) is still delivered once.
 */
import type { CaptionEvent } from './protocol.ts';

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface WatchOptions {
  onEvent: (event: CaptionEvent) => void;
  onState?: (state: ConnectionState) => void;
  /** Start after this final (e.g. what an earlier page load already showed). Default 0. */
  after?: number;
}

export class CaptionWatcher {
  private readonly url: string;
  private readonly options: WatchOptions;
  private socket: WebSocket | undefined;
  private lastSeq: number;
  private attempts = 0;
  private stopped = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(baseUrl: string, token: string, sessionId: string, options: WatchOptions) {
    this.url = `${baseUrl.replace(/^http/, 'ws')}/v1/sessions/${encodeURIComponent(sessionId)}/captions?access_token=${encodeURIComponent(token)}`;
    this.options = options;
    this.lastSeq = options.after ?? 0;
    this.connect();
  }

  /** Highest final seq delivered so far. */
  get seq(): number {
    return this.lastSeq;
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.socket?.close(1000);
    this.options.onState?.('closed');
  }

  private connect(): void {
    this.options.onState?.(this.attempts === 0 ? 'connecting' : 'reconnecting');
    const socket = new WebSocket(`${this.url}&after=${this.lastSeq}`);
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.attempts = 0;
      this.options.onState?.('open');
    });
    socket.addEventListener('message', (message) => {
      const event = JSON.parse(String(message.data)) as CaptionEvent;
      if (event.type === 'final') {
        if (event.seq <= this.lastSeq) return;
        this.lastSeq = event.seq;
      }
      this.options.onEvent(event);
    });
    socket.addEventListener('close', (event) => {
      if (this.stopped) return;
      // 1008: the token was refused; reconnecting would not help.
      if (event.code === 1008) return this.close();
      const delay = Math.min(10000, 250 * 2 ** this.attempts++);
      this.options.onState?.('reconnecting');
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
  }
}
