/**
 * Watching a session's captions over the captions WebSocket. When the connection drops the watcher
 * reconnects with growing pauses and resumes with `?after=<last final seq>`: the gateway sends only the
 * finals after it, and a final seen twice (a race at reconnection) is still delivered once.
 *
 * It stops for good only when the token is refused. A browser cannot see why an upgrade failed (a
 * refused token and a network error are both 1006), so a connection that never opened is followed by a
 * REST call with the same token: 401 or 403 there stops the watcher (state `unauthorized`); anything
 * else is a network problem, and it keeps trying.
 */
import { CloseCode, type CaptionEvent } from './protocol.ts';

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'unauthorized' | 'closed';

export interface WatchOptions {
  onEvent: (event: CaptionEvent) => void;
  onState?: (state: ConnectionState) => void;
  /** Start after this final (e.g. what an earlier page load already showed). Default 0. */
  after?: number;
}

export class CaptionWatcher {
  private readonly url: string;
  /** The session's REST status: asked when an upgrade failed, to tell a refused token from a network error. */
  private readonly statusUrl: string;
  private readonly token: string;
  private readonly options: WatchOptions;
  private socket: WebSocket | undefined;
  private lastSeq: number;
  private attempts = 0;
  private stopped = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(baseUrl: string, token: string, sessionId: string, options: WatchOptions) {
    this.url = `${baseUrl.replace(/^http/, 'ws')}/v1/sessions/${encodeURIComponent(sessionId)}/captions?access_token=${encodeURIComponent(token)}`;
    this.statusUrl = `${baseUrl}/v1/sessions/${encodeURIComponent(sessionId)}`;
    this.token = token;
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
    let opened = false;
    socket.addEventListener('open', () => {
      opened = true;
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
      // Too slow to keep up (4408), a gateway restart (1001), a network drop: resume after the last final.
      if (opened || event.code === CloseCode.viewerTooSlow) return this.retry();
      void this.tokenRefused().then((refused) => {
        if (this.stopped) return;
        if (!refused) return this.retry();
        this.stopped = true;
        this.options.onState?.('unauthorized');
      });
    });
  }

  private retry(): void {
    const delay = Math.min(10000, 250 * 2 ** this.attempts++);
    this.options.onState?.('reconnecting');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Whether the gateway refuses the token itself (401/403), rather than being out of reach. */
  private async tokenRefused(): Promise<boolean> {
    try {
      const response = await fetch(this.statusUrl, { headers: { authorization: `Bearer ${this.token}` } });
      return response.status === 401 || response.status === 403;
    } catch {
      return false;
    }
  }
}
