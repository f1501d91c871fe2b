/**
 * The worker thread of `DenoiserThreads`: one RNNoise module, a TrackDenoiser per stream it is given.
 * Each batch from the gateway (one per turn of its event loop, every stream's operations in order) is
 * answered with one batch: the denoised audio, flushes done, the model engaging or letting go.
 */
import { parentPort } from 'node:worker_threads';
import { Rnnoise, type TrackDenoiser } from './noise-suppressor.ts';
import { Op } from './denoiser-thread.ts';
import { BATCH_OP_SIZE, BatchWriter, type Batch } from './worker-batches.ts';

const port = parentPort!;
let rnnoise: Rnnoise;
try {
  rnnoise = await Rnnoise.load();
} catch (error) {
  port.postMessage({ error: (error as Error).message });
  throw error;
}
const streams = new Map<number, TrackDenoiser>();
const replies = new BatchWriter();

function audio(stream: number, pcm: Int16Array): void {
  if (pcm.length > 0) replies.op(Op.audio, stream, replies.samplesOf(pcm), pcm.length);
}

port.on('message', ({ ops, bytes }: Batch) => {
  for (let i = 0; i < ops.length; i += BATCH_OP_SIZE) {
    const [kind, stream, a, b] = [ops[i], ops[i + 1], ops[i + 2], ops[i + 3]];
    if (kind === Op.open) {
      streams.set(stream, rnnoise.track({ auto: a === 1, onEngaged: (engaged) => streams.has(stream) && replies.op(Op.engaged, stream, engaged ? 1 : 0) }));
      replies.op(Op.engaged, stream, 1);
      continue;
    }
    const denoiser = streams.get(stream);
    if (!denoiser) continue;
    if (kind === Op.audio) audio(stream, denoiser.process(new Int16Array(bytes.buffer, bytes.byteOffset + a, b)));
    else if (kind === Op.flush) {
      audio(stream, denoiser.flush());
      replies.op(Op.flushed, stream);
    } else if (kind === Op.close) {
      streams.delete(stream);
      denoiser.close();
    }
  }
  const answer = replies.take();
  port.postMessage(answer, [answer.ops.buffer, answer.bytes.buffer]);
});
port.postMessage({ ready: true });
