/**
 * A TCP proxy to play a network: in front of the gateway for one producer (a phone's), or in front of a
 * server the gateway uses (object storage far away). `drop()` cuts its connections abruptly (both sides
 * closed at the TCP level, no WebSocket close frame), `stall()` stops forwarding without closing anything
 * (a network that vanished: neither side notices until a timeout), `delayMs` delays everything it
 * forwards (a distant server's round trip is twice it).
 * (Not `resetAndDestroy()`: on Node 24 a process whose sockets were reset that way spins at exit.)
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export class FlakyProxy {
  private readonly server: Server;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket; stalled: boolean }>();
  /** Every connection still open, stalled ones included (a stalled pair leaves `pairs` when one side closes). */
  private readonly sockets = new Set<Socket>();
  /** Calls of drop() that cut at least one connection. */
  drops = 0;
  /** Where new connections go (`retarget` moves them: the network now leads elsewhere). */
  private targetPort = 0;
  /** How long each piece of data waits before it is forwarded, either way. */
  delayMs = 0;

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(targetPort: number): Promise<FlakyProxy> {
    const server = createServer();
    const proxy = new FlakyProxy(server);
    proxy.targetPort = targetPort;
    server.on('connection', (client) => {
      const upstream = connect(proxy.targetPort, '127.0.0.1');
      const pair = { client, upstream, stalled: false };
      proxy.pairs.add(pair);
      for (const socket of [client, upstream]) {
        proxy.sockets.add(socket);
        socket.on('close', () => proxy.sockets.delete(socket));
      }
      const send = (to: Socket, data: Buffer) => void (!pair.stalled && !to.destroyed && to.write(data));
      const forward = (from: Socket, to: Socket) => from.on('data', (data: Buffer) => (proxy.delayMs > 0 ? setTimeout(send, proxy.delayMs, to, data) : send(to, data)));
      forward(client, upstream);
      forward(upstream, client);
      const end = () => {
        proxy.pairs.delete(pair);
        if (!pair.stalled) (client.destroy(), upstream.destroy());
      };
      client.on('close', end).on('error', () => undefined);
      upstream.on('close', end).on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  /** Cuts every connection now, without a WebSocket close frame. */
  drop(): void {
    const live = [...this.pairs].filter((pair) => !pair.stalled);
    if (live.length) this.drops++;
    for (const pair of live) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
  }

  /** New connections go to this port from now on (open ones stay where they are). */
  retarget(port: number): void {
    this.targetPort = port;
  }

  /** Stops forwarding on every connection without closing it. */
  stall(): void {
    for (const pair of this.pairs) pair.stalled = true;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
