/**
 * The worker thread of `DspThreads`: a FrameAnalyzer (Opus decoder, spectral noise suppressor, framer,
 * VAD) per track it is given, and the voice features of the speech frames the track's sampling plan
 * picks. Each batch from the gateway (every track's units in order) is answered with one batch: the whole
 * frames each track's units made with the VAD's decisions (and the features of those picked), flushes
 * done, per track how many units were taken and what its framer (and noise suppressor) holds, and when a
 * suppressor starts or lets go.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FrameAnalyzer, type FrameOutput } from './frame-analyzer.ts';
import { SpectralDenoiser } from './spectral-denoiser.ts';
import { trackVad, type VadSettings } from './vad.ts';
import { DspOp } from './dsp-thread.ts';
import { BATCH_OP_SIZE, BatchWriter, type Batch } from './worker-batches.ts';
import { FEATURES, SpeechSampler, VoiceFeatures } from './voice-features.ts';

const port = parentPort!;
const { vad, frameSamples } = workerData as { vad: VadSettings; frameSamples: number };

/** A track's analyzer and, when it asked for voice features, its sampler and extractor. */
interface Stream {
  analyzer: FrameAnalyzer;
  counts: { heard: number; taken: number };
  voice?: { sampler: SpeechSampler; extractor: VoiceFeatures };
}

const streams = new Map<number, Stream>();
const replies = new BatchWriter();
const features = new Float32Array(FEATURES);
let replyingFor = 0;
let voice: Stream['voice'];

const out: FrameOutput = {
  frame(frame, isSpeech) {
    const at = replies.samplesOf(frame);
    if (voice) {
      if (voice.sampler.wants(isSpeech)) {
        voice.extractor.frame(frame, features, 0);
        replies.op(DspOp.voiced, replyingFor, at, replies.floatsOf(features));
        return;
      }
      voice.extractor.skip(frame);
    }
    const speech = isSpeech ? 1 : 0;
    // Bytes go into a reply only just before the op that points at them: after a `frames` op of this
    // stream, this frame's bytes follow its run's, and a run with one decision is one op.
    if (replies.last(DspOp.frames, replyingFor, 2) === speech) replies.extendLast(1, 1);
    else replies.op(DspOp.frames, replyingFor, at, 1, speech);
  },
};

port.on('message', ({ ops, bytes }: Batch) => {
  const taken = new Map<number, number>();
  for (let i = 0; i < ops.length; i += BATCH_OP_SIZE) {
    const kind = ops[i];
    const stream = ops[i + 1];
    const a = ops[i + 2];
    const b = ops[i + 3];
    if (kind === DspOp.open) {
      const engaged = (on: boolean) => streams.has(stream) && replies.op(DspOp.engaged, stream, on ? 1 : 0);
      // Told at once that the suppressor runs, before the stream is in the map: the gateway knows it starts so.
      // Its output is reused: the frames are copied into the replies.
      const denoiser = ops[i + 4] === 1 ? new SpectralDenoiser({ auto: true, onEngaged: engaged, reuseOutput: true }) : undefined;
      streams.set(stream, { analyzer: new FrameAnalyzer(trackVad(vad), frameSamples, denoiser), counts: { heard: a, taken: b } });
      if (denoiser) replies.op(DspOp.engaged, stream, 1);
      continue;
    }
    const state = streams.get(stream);
    if (!state) continue;
    if (kind === DspOp.listen) {
      state.voice = { sampler: new SpeechSampler({ all: a, every: b, max: ops[i + 4] }, state.counts.heard, state.counts.taken), extractor: new VoiceFeatures() };
      continue;
    }
    const analyzer = state.analyzer;
    if (kind === DspOp.close) {
      streams.delete(stream);
      taken.delete(stream);
      analyzer.close();
      continue;
    }
    replyingFor = stream;
    voice = state.voice;
    if (kind === DspOp.opus) analyzer.opus(Buffer.from(bytes.buffer, bytes.byteOffset + a, b), ops[i + 4], out);
    else if (kind === DspOp.conceal) analyzer.conceal(a, b, out);
    else if (kind === DspOp.pcm) analyzer.pcm(new Int16Array(bytes.buffer, bytes.byteOffset + a, b), out);
    else if (kind === DspOp.flush) {
      analyzer.flush(out);
      replies.op(DspOp.flushed, stream);
    }
    taken.set(stream, (taken.get(stream) ?? 0) + 1);
  }
  for (const [stream, count] of taken) replies.op(DspOp.done, stream, count, streams.get(stream)!.analyzer.pendingSamples);
  const answer = replies.take();
  port.postMessage(answer, [answer.ops.buffer, answer.bytes.buffer]);
});
port.postMessage({ ready: true });
