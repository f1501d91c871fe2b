/** The worker thread of `RnnoiseWorker`: loads RNNoise once, then answers each window with its audio denoised. */
import { Rnnoise } from './noise-suppressor.ts';
import { serveRequests } from './worker-thread.ts';

await serveRequests(async () => {
  const rnnoise = await Rnnoise.load();
  return async (audio: Int16Array) => {
    const denoised = rnnoise.suppress(audio);
    return { reply: denoised, transfer: [denoised.buffer as ArrayBuffer] };
  };
});
