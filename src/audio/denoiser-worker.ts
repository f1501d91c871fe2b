/**
 * The worker thread of `DenoiserThreads`: one RNNoise module, a TrackDenoiser per stream it is given.
 * Each batch from the gateway (one per turn of its event loop, every stream's operations in order) is
 * answered with one batch: the denoised audio, flushes done, the model engaging or letting go.
 */
import { parentPort } from 'node:worker_threads';
import { Rnnoise, type TrackDenoiser } from './noise-suppressor.ts';
import { Op, OP_SIZE, type DenoiserBatch } from './denoiser-thread.ts';

const port = parentPort!;
let rnnoise: Rnnoise;
try {
  rnnoise = await Rnnoise.load();
} catch (error) {
  port.postMessage({ error: (error as Error).message });
  throw error;
}
const streams = new Map<number, TrackDenoiser>();
let out = new Int16Array(16000);
let outUsed = 0;
let replies: number[] = [];

function reply(kind: Op, stream: number, a = 0, b = 0): void {
  replies.push(kind, stream, a, b);
}

function audio(stream: number, pcm: Int16Array): void {
  if (pcm.length === 0) return;
  if (outUsed + pcm.length > out.length) {
    const grown = new Int16Array(Math.max(out.length * 2, outUsed + pcm.length));
    grown.set(out.subarray(0, outUsed));
    out = grown;
  }
  out.set(pcm, outUsed);
  reply(Op.audio, stream, outUsed, pcm.length);
  outUsed += pcm.length;
}

port.on('message', ({ ops, audio: input }: DenoiserBatch) => {
  for (let i = 0; i < ops.length; i += OP_SIZE) {
    const [kind, stream, a, b] = [ops[i], ops[i + 1], ops[i + 2], ops[i + 3]];
    if (kind === Op.open) {
      streams.set(stream, rnnoise.track({ auto: a === 1, onEngaged: (engaged) => streams.has(stream) && reply(Op.engaged, stream, engaged ? 1 : 0) }));
      reply(Op.engaged, stream, 1);
      continue;
    }
    const denoiser = streams.get(stream);
    if (!denoiser) continue;
    if (kind === Op.audio) audio(stream, denoiser.process(input.subarray(a, a + b)));
    else if (kind === Op.flush) {
      audio(stream, denoiser.flush());
      reply(Op.flushed, stream);
    } else if (kind === Op.close) {
      streams.delete(stream);
      denoiser.close();
    }
  }
  const batch: DenoiserBatch = { ops: Int32Array.from(replies), audio: out.slice(0, outUsed) };
  replies = [];
  outUsed = 0;
  port.postMessage(batch, [batch.ops.buffer, batch.audio.buffer]);
});
port.postMessage({ ready: true });
