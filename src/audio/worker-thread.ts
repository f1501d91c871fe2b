/**
 * A model in a worker thread, asked one request at a time (Silero VAD, RNNoise): inference that would
 * hold the event loop that carries the audio runs beside it. The worker module calls `serveRequests`
 * with its model and handler; the gateway holds a `WorkerThread`, which starts it, matches replies to
 * requests by id, and replaces a worker that died at the next request. Idle, it does not keep the
 * process alive; a request in flight does.
 */
import { parentPort, Worker, type Transferable } from 'node:worker_threads';

interface Pending<Reply> {
  resolve(reply: Reply): void;
  reject(error: Error): void;
}

export class WorkerThread<Request, Reply> {
  private readonly url: URL;
  private readonly name: string;
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending = new Map<number, Pending<Reply>>();
  private nextId = 0;
  private closed = false;

  constructor(url: URL, name: string) {
    this.url = url;
    this.name = name;
  }

  /** Starts the worker and waits for its model; rejects if it cannot be loaded. */
  start(): Promise<void> {
    const worker = new Worker(this.url);
    this.worker = worker;
    worker.unref();
    this.ready = workerReady(worker, this.name);
    worker.on('message', (message: { id?: number; reply?: Reply; error?: string }) => {
      if (message.id === undefined) return;
      const request = this.pending.get(message.id);
      if (!request) return;
      this.pending.delete(message.id);
      if (this.pending.size === 0) worker.unref();
      if ('reply' in message) request.resolve(message.reply as Reply);
      else request.reject(new Error(`${this.name}: ${message.error}`));
    });
    const fail = (error: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const request of this.pending.values()) request.reject(error);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the ${this.name} worker exited (${code})`)));
    return this.ready;
  }

  /** Sends a request (the `transfer` buffers move to the worker) and resolves with its reply. */
  async request(message: Request, transfer: Transferable[]): Promise<Reply> {
    if (this.closed) throw new Error(`${this.name}: closed`);
    if (!this.worker) await this.start();
    await this.ready;
    const worker = this.worker!;
    const id = ++this.nextId;
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, message }, transfer);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }
}

/** Resolves once a worker says it is ready; rejects with what it says instead (prefixed by `name`), or its error. */
export function workerReady(worker: Worker, name: string): Promise<void> {
  const ready = new Promise<void>((resolve, reject) => {
    worker.once('message', (message: { ready?: true; error?: string }) => (message.ready ? resolve() : reject(new Error(`${name}: ${message.error}`))));
    worker.once('error', reject);
  });
  ready.catch(() => undefined);
  return ready;
}

/** Waits for every one of a pool's workers; if one cannot start, all are closed and its error thrown. */
export async function allReady<T extends { ready: Promise<void>; close(): Promise<unknown> }>(threads: T[]): Promise<T[]> {
  try {
    await Promise.all(threads.map((t) => t.ready));
  } catch (error) {
    await Promise.all(threads.map((t) => t.close()));
    throw error;
  }
  return threads;
}

/**
 * The worker side: loads the model once, tells the gateway it is ready (or why not), then answers each
 * request in turn (the model has one thread; requests queue here), or, `together`, hands each to
 * `handle` as it comes (a handler that runs the requests waiting at once in one batch). `handle` returns
 * the reply and the buffers to move back with it.
 */
export async function serveRequests<Request, Reply>(load: () => Promise<(request: Request) => Promise<{ reply: Reply; transfer?: Transferable[] }>>, together = false): Promise<void> {
  const port = parentPort!;
  let handle;
  try {
    handle = await load();
  } catch (error) {
    port.postMessage({ error: (error as Error).message });
    return;
  }
  port.postMessage({ ready: true });
  const answer = async (id: number, message: Request) => {
    try {
      const { reply, transfer } = await handle(message);
      port.postMessage({ id, reply }, transfer ?? []);
    } catch (error) {
      port.postMessage({ id, error: (error as Error).message });
    }
  };
  let chain = Promise.resolve();
  port.on('message', ({ id, message }: { id: number; message: Request }) => {
    if (together) void answer(id, message);
    else chain = chain.then(() => answer(id, message));
  });
}
