/** The worker thread of `SileroWorker`: loads Silero VAD once, then answers each window with its probabilities
 * (continuing a stream's earlier windows where it can). */
import { parentPort } from 'node:worker_threads';
import { SileroVad } from './silero-vad.ts';

const port = parentPort!;
try {
  const vad = await SileroVad.load();
  port.postMessage({ ready: true });
  // One window at a time, in order: the model has one thread, and windows queue here.
  let chain = Promise.resolve();
  port.on('message', ({ id, stream, offset, audio }: { id: number; stream?: string; offset: number; audio: Int16Array }) => {
    chain = chain.then(async () => {
      try {
        const found = await vad.continue(stream, offset, audio);
        if (!found) {
          port.postMessage({ id, missing: true });
          return;
        }
        // A copy goes back: the stream keeps its own.
        const probabilities = found.slice();
        port.postMessage({ id, probabilities }, [probabilities.buffer as ArrayBuffer]);
      } catch (error) {
        port.postMessage({ id, error: (error as Error).message });
      }
    });
  });
} catch (error) {
  port.postMessage({ error: (error as Error).message });
}
