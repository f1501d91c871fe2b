/** The worker thread of `SileroWorker`: loads Silero VAD once, then answers each window with its probabilities. */
import { parentPort } from 'node:worker_threads';
import { SileroVad } from './silero-vad.ts';

const port = parentPort!;
try {
  const vad = await SileroVad.load();
  port.postMessage({ ready: true });
  // One window at a time, in order: the model has one thread, and windows queue here.
  let chain = Promise.resolve();
  port.on('message', ({ id, audio }: { id: number; audio: Int16Array }) => {
    chain = chain.then(async () => {
      try {
        const probabilities = await vad.probabilities(audio);
        port.postMessage({ id, probabilities }, [probabilities.buffer as ArrayBuffer]);
      } catch (error) {
        port.postMessage({ id, error: (error as Error).message });
      }
    });
  });
} catch (error) {
  port.postMessage({ error: (error as Error).message });
}
