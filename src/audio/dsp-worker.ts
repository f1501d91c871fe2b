/**
 * The worker thread of `DspThreads`: a FrameAnalyzer (Opus decoder, framer, VAD) per track it is given.
 * Each batch from the gateway (one per turn of its event loop, every track's units in order) is answered
 * with one batch: the whole frames each track's units made with the VAD's decisions, flushes done, and per
 * track how many units were taken and what its framer holds.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FrameAnalyzer, type FrameOutput } from './frame-analyzer.ts';
import { trackVad, type VadSettings } from './vad.ts';
import { DSP_OP_SIZE, DspOp, type DspBatch, type DspReply } from './dsp-thread.ts';

const port = parentPort!;
const { vad, frameSamples } = workerData as { vad: VadSettings; frameSamples: number };
try {
  trackVad(vad);
} catch (error) {
  port.postMessage({ error: (error as Error).message });
  throw error;
}

const streams = new Map<number, FrameAnalyzer>();
let audio = new Int16Array(frameSamples * 256);
let audioUsed = 0;
let speech = new Uint8Array(256);
let speechUsed = 0;
let replies: number[] = [];

const out: FrameOutput = {
  frame(frame, isSpeech) {
    if (speechUsed === speech.length) {
      const grownAudio = new Int16Array(audio.length * 2);
      grownAudio.set(audio);
      audio = grownAudio;
      const grownSpeech = new Uint8Array(speech.length * 2);
      grownSpeech.set(speech);
      speech = grownSpeech;
    }
    audio.set(frame, audioUsed);
    audioUsed += frameSamples;
    speech[speechUsed++] = isSpeech ? 1 : 0;
  },
};

function reply(kind: DspOp, stream: number, a = 0, b = 0, c = 0): void {
  replies.push(kind, stream, a, b, c);
}

port.on('message', ({ ops, bytes }: DspBatch) => {
  const taken = new Map<number, number>();
  for (let i = 0; i < ops.length; i += DSP_OP_SIZE) {
    const kind = ops[i];
    const stream = ops[i + 1];
    const a = ops[i + 2];
    const b = ops[i + 3];
    if (kind === DspOp.open) {
      streams.set(stream, new FrameAnalyzer(trackVad(vad), frameSamples));
      continue;
    }
    const analyzer = streams.get(stream);
    if (!analyzer) continue;
    if (kind === DspOp.close) {
      streams.delete(stream);
      taken.delete(stream);
      continue;
    }
    const firstFrame = speechUsed;
    if (kind === DspOp.opus) analyzer.opus(Buffer.from(bytes.buffer, bytes.byteOffset + a, b), ops[i + 4], out);
    else if (kind === DspOp.conceal) analyzer.conceal(a, b, out);
    else if (kind === DspOp.pcm) analyzer.pcm(new Int16Array(bytes.buffer, bytes.byteOffset + a, b), out);
    else if (kind === DspOp.flush) analyzer.flush(out);
    if (speechUsed > firstFrame) reply(DspOp.frames, stream, firstFrame * frameSamples, speechUsed - firstFrame, firstFrame);
    if (kind === DspOp.flush) reply(DspOp.flushed, stream);
    taken.set(stream, (taken.get(stream) ?? 0) + 1);
  }
  for (const [stream, count] of taken) reply(DspOp.done, stream, count, streams.get(stream)!.pendingSamples);
  const answer: DspReply = { ops: Int32Array.from(replies), audio: audio.slice(0, audioUsed), speech: speech.slice(0, speechUsed) };
  replies = [];
  audioUsed = 0;
  speechUsed = 0;
  port.postMessage(answer, [answer.ops.buffer, answer.audio.buffer, answer.speech.buffer]);
});
port.postMessage({ ready: true });
