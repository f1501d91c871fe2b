/** A caption viewer for tests: collects every event of a session over the captions WebSocket. */
import { WebSocket } from 'ws';
import type { CaptionEvent, FinalEvent, SessionEvent } from '../../client-sdk/src/protocol.ts';

export class CaptionCollector {
  readonly events: CaptionEvent[] = [];
  /** Called for every event as it arrives. */
  onEvent: ((event: CaptionEvent) => void) | undefined;
  private readonly socket: WebSocket;
  private waiters: { predicate: (e: CaptionEvent) => boolean; resolve: (e: CaptionEvent) => void }[] = [];
  private readonly closeCode: Promise<number>;
  private closedWith: string | undefined;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    this.closeCode = new Promise((resolve) =>
      socket.once('close', (code, reason) => {
        this.closedWith = `${code} ${reason.toString()}`;
        resolve(code);
      }),
    );
    socket.on('message', (data) => {
      const event = JSON.parse(data.toString()) as CaptionEvent;
      this.events.push(event);
      this.onEvent?.(event);
      this.waiters = this.waiters.filter((w) => (w.predicate(event) ? (w.resolve(event), false) : true));
    });
  }

  static async connect(baseUrl: string, sessionId: string, token: string, after?: number): Promise<CaptionCollector> {
    const url = new URL(`${baseUrl.replace(/^http/, 'ws')}/v1/sessions/${sessionId}/captions`);
    url.searchParams.set('access_token', token);
    if (after !== undefined) url.searchParams.set('after', String(after));
    const socket = new WebSocket(url);
    const collector = new CaptionCollector(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      socket.once('error', reject);
    });
    return collector;
  }

  /** Resolves with the close code once the gateway (or the test) closes the socket. */
  closed(): Promise<number> {
    return this.closeCode;
  }

  get finals(): FinalEvent[] {
    return this.events.filter((e): e is FinalEvent => e.type === 'final');
  }

  /** The session's transcript: finals of all tracks ordered by time. */
  transcript(trackId?: string): string {
    return this.finals
      .filter((f) => !trackId || f.trackId === trackId)
      .flatMap((f) => f.words)
      .sort((a, b) => a.startMs - b.startMs)
      .map((w) => w.word)
      .join(' ');
  }

  /** Resolves with the first event (already received or coming) that matches. */
  waitFor(predicate: (e: CaptionEvent) => boolean, timeoutMs = 60000): Promise<CaptionEvent> {
    const seen = this.events.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for a caption event; ${this.lastSeen()}`)), timeoutMs);
      this.waiters.push({ predicate, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }

  /** Waits until a session event says these tracks have all ended (their last finals are then sent). */
  tracksEnded(trackIds: string[], timeoutMs?: number): Promise<CaptionEvent> {
    return this.waitFor(
      (e) => e.type === 'session' && trackIds.every((id) => (e as SessionEvent).tracks.some((t) => t.trackId === id && t.state === 'ended')),
      timeoutMs,
    );
  }

  /** `open`, or how the socket closed. */
  get socketState(): string {
    return this.closedWith ? `closed: ${this.closedWith}` : 'open';
  }

  /** What the viewer last knew of the session (a timed-out wait says where it stood). */
  private lastSeen(): string {
    const session = this.events.findLast((e): e is SessionEvent => e.type === 'session');
    const tracks = session?.tracks.map((t) => `${t.trackId} ${t.state} at ${t.receivedMs} ms`).join(', ') ?? 'no session event';
    return `last seen: ${this.events.length} events, ${this.finals.length} finals, tracks: ${tracks}, stt ${session?.stt ?? '?'}, socket ${this.socketState}`;
  }

  close(): void {
    this.socket.close();
  }
}
