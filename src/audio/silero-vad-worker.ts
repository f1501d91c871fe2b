/**
 * The worker thread of `SileroWorker`: loads Silero VAD once, then answers each window with its
 * probabilities (continuing a stream's earlier windows where it can; `undefined` when it lacks them),
 * taking every window as it comes: those waiting together run in one batch (those nobody waits for
 * linger to share it).
 */
import { SileroVad } from './silero-vad.ts';
import { serveRequests } from './worker-thread.ts';

await serveRequests(async () => {
  const vad = await SileroVad.load();
  return async ({ stream, offset, audio, ahead }: { stream?: string; offset: number; audio: Int16Array; ahead: boolean }) => {
    const found = await vad.continue(stream, offset, audio, ahead);
    // A copy goes back: the stream keeps its own.
    const probabilities = found?.slice();
    return { reply: probabilities, transfer: probabilities ? [probabilities.buffer as ArrayBuffer] : [] };
  };
}, true);
