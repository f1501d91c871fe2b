/**
 * Each track's decoding and VAD in worker threads (DspThreads), against a FrameAnalyzer on this thread
 * (fast-check, fixed seed): several tracks on two workers, random units (real Opus packets of 10–60 ms,
 * broken ones, lost packets, PCM of any length, each with part of its audio already in the track),
 * flushes anywhere, the event loop turning at random points. Each track's frames and the VAD's decisions
 * are the same as on this thread, and so are the voice features of the speech frames a sampling plan picks
 * (from counts a track continues), with the spectral noise suppressor before the VAD or without it, its
 * flushes end at the same frames, and what is held is what was pushed and has not come out. A worker that dies keeps each track's time: every frame still comes (the units it
 * had not taken decoded here), every flush is answered, and new units go on.
 */
import fc from 'fast-check';
import opus from '@discordjs/opus';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DspThreads, type TrackFrontEnd } from '../../src/audio/dsp-thread.ts';
import { FrameAnalyzer } from '../../src/audio/frame-analyzer.ts';
import { OpusTimeline } from '../../src/audio/opus-decoder.ts';
import { trackVad, type VadSettings } from '../../src/audio/vad.ts';
import { FEATURES, SpeechSampler, VoiceFeatures } from '../../src/audio/voice-features.ts';
import { DEFAULT_CONDITIONER_OPTIONS } from '../../src/audio/conditioner.ts';
import { SpectralDenoiser } from '../../src/audio/spectral-denoiser.ts';

const FRAME = 320;
const vad: VadSettings = { sampleRate: 16000, aggressiveness: 2, hearing: { ...DEFAULT_CONDITIONER_OPTIONS, sampleRate: 16000 } };
const threads = await DspThreads.start(2, vad, FRAME);

/** A voice-like signal with pauses: the VAD's decisions change along it. */
function signal(samples: number, seed: number, rate: number): Int16Array {
  const out = new Int16Array(samples);
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const on = Math.floor(i / (rate * 0.3)) % 3 !== 2;
    out[i] = on ? Math.round(7000 * Math.sin((2 * Math.PI * (140 + (seed % 200)) * i) / rate) * (1 + Math.sin(i / 900)) / 2 + 1500 * ((s / 2 ** 32) * 2 - 1)) : Math.round(30 * ((s / 2 ** 32) * 2 - 1));
  }
  return out;
}

const encoder = new opus.OpusEncoder(48000, 1);
const speech = signal(48000 * 4, 7, 48000);
/** 4 s of Opus packets of one length each. */
const packets = [10, 20, 40, 60].map((ms) => {
  const size = 48 * ms;
  return Array.from({ length: speech.length / size }, (_, i) => encoder.encode(Buffer.from(speech.slice(i * size, (i + 1) * size).buffer)));
});

type Unit = { opus: number; ms: number; broken: boolean; skip: number } | { lost: number; skip: number } | { pcm: number; skip: number } | { flush: true } | { turn: true };

const unitArbitrary: fc.Arbitrary<Unit> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ opus: fc.nat(1000), ms: fc.constantFrom(0, 1, 1, 1, 2, 3), broken: fc.boolean().map((b) => b && Math.random() < 0.3), skip: fc.constantFrom(0, 0, 0, 0, 100, 400, 1e6) }) },
  { weight: 2, arbitrary: fc.record({ lost: fc.integer({ min: 1, max: 3 }), skip: fc.constantFrom(0, 0, 50, 1e6) }) },
  { weight: 3, arbitrary: fc.record({ pcm: fc.integer({ min: 1, max: 1500 }), skip: fc.constant(0) }) },
  { weight: 1, arbitrary: fc.constant({ flush: true as const }) },
  { weight: 3, arbitrary: fc.constant({ turn: true as const }) },
);
/** The voice features a track asks for: a sampling plan, and the counts its sampler starts from. */
const voiceArbitrary = fc.record({ all: fc.nat(30), every: fc.integer({ min: 1, max: 4 }), max: fc.nat(200), heard: fc.nat(50), taken: fc.nat(50) });
type Voice = typeof voiceArbitrary extends fc.Arbitrary<infer T> ? T : never;
const scriptArbitrary = fc.record({ units: fc.array(unitArbitrary, { minLength: 1, maxLength: 60 }), seed: fc.integer({ min: 1, max: 2 ** 30 }), voice: fc.option(voiceArbitrary, { nil: undefined }), denoise: fc.boolean() });
type Script = { units: Unit[]; seed: number; voice?: Voice; denoise?: boolean };
/** A track's front end: `voice`, the features it asks for; `onEngaged`, set when the spectral suppressor runs before the VAD. */
type MakeFrontEnd = (voice?: SpeechSampler, onEngaged?: (engaged: boolean) => void) => TrackFrontEnd;
const samplerOf = (voice: Voice | undefined) => voice && new SpeechSampler({ all: voice.all, every: voice.every, max: voice.max }, voice.heard, voice.taken);

interface Heard {
  frames: Int16Array[];
  speech: boolean[];
  /** Each frame's voice features, where they came with it. */
  features: (number[] | undefined)[];
  /** Frames out when each flush ended. */
  flushedAt: number[];
  /** What the front end said of its noise suppressor, in order. */
  engaged: boolean[];
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A FrameAnalyzer and a feature extractor on this thread behind the TrackFrontEnd interface: the reference. */
function inline(sampler?: SpeechSampler, onEngaged?: (engaged: boolean) => void): TrackFrontEnd {
  const analyzer = new FrameAnalyzer(trackVad(vad), FRAME, onEngaged && new SpectralDenoiser({ auto: true, onEngaged }));
  const extractor = new VoiceFeatures();
  let output: Parameters<TrackFrontEnd['start']>[0];
  return {
    start: (o) =>
      (output = {
        frame: (frame, isSpeech) => {
          if (!sampler?.wants(isSpeech)) {
            extractor.skip(frame);
            return o.frame(frame, isSpeech);
          }
          const features = new Float32Array(FEATURES);
          extractor.frame(frame, features, 0);
          o.frame(frame, isSpeech, features);
        },
        flushed: () => o.flushed(),
      }),
    opus: (packet, _samples, skip) => analyzer.opus(packet, skip, output),
    conceal: (count, _samples, skip) => analyzer.conceal(count, skip, output),
    pcm: (samples) => analyzer.pcm(samples, output),
    flush: () => (analyzer.flush(output), output.flushed()),
    close: () => analyzer.close(),
    heldSamples: 0,
  };
}

/** Runs each track's units, interleaved, on `make`'s front ends; the event loop turns where a unit says so. */
async function run(scripts: Script[], make: MakeFrontEnd, checkHeld: boolean): Promise<Heard[]> {
  const tracks = scripts.map(({ units, seed, voice, denoise }) => {
    const heard: Heard = { frames: [], speech: [], features: [], flushedAt: [], engaged: [] };
    const frontEnd = make(samplerOf(voice), denoise ? (engaged) => heard.engaged.push(engaged) : undefined);
    const state = { frontEnd, heard, units, at: 0, pushed: 0, marks: [] as number[], timeline: new OpusTimeline(), pcm: signal(16000 * 20, seed, 16000), pcmAt: 0 };
    frontEnd.start({
      frame: (frame, isSpeech, features) => {
        heard.frames.push(frame.slice());
        heard.speech.push(isSpeech);
        heard.features.push(features && [...features]);
      },
      flushed: () => {
        heard.flushedAt.push(heard.frames.length);
        const mark = state.marks.shift()!;
        if (checkHeld) assert.is(frontEnd.heldSamples, state.pushed - mark, 'held at a flush: what was pushed after it');
      },
    });
    return state;
  });
  for (let k = 0; tracks.some((t) => t.at < t.units.length); k++) {
    for (const track of tracks) {
      const unit = track.units[track.at++];
      if (!unit) continue;
      const { frontEnd, timeline } = track;
      if ('opus' in unit) {
        const list = packets[unit.ms];
        let packet = list[unit.opus % list.length];
        if (unit.broken) packet = Buffer.from([packet[0] | 3, 0xff, 0xff, 0xff]);
        const samples = timeline.packet(packet);
        const skip = Math.min(unit.skip, samples);
        track.pushed += samples - skip;
        frontEnd.opus(packet, samples, skip);
      } else if ('lost' in unit) {
        const samples = timeline.lost(unit.lost);
        const skip = Math.min(unit.skip, samples);
        track.pushed += samples - skip;
        frontEnd.conceal(unit.lost, samples, skip);
      } else if ('pcm' in unit) {
        const chunk = track.pcm.subarray(track.pcmAt, (track.pcmAt += unit.pcm));
        track.pushed += chunk.length;
        frontEnd.pcm(chunk);
      } else if ('flush' in unit) {
        track.marks.push(track.pushed);
        frontEnd.flush();
      } else await turn();
    }
  }
  for (const track of tracks) {
    track.marks.push(track.pushed);
    const asked = track.marks.length;
    const before = track.heard.flushedAt.length;
    track.frontEnd.flush();
    while (track.heard.flushedAt.length < before + asked) await turn();
    if (checkHeld) assert.is(track.frontEnd.heldSamples, 0, 'nothing held once flushed');
    track.frontEnd.close();
  }
  return tracks.map((t) => t.heard);
}

function assertSameFrames(a: Heard, b: Heard, what: string): void {
  assert.is(a.frames.length, b.frames.length, `${what}: as many frames`);
  for (let i = 0; i < a.frames.length; i++) {
    if (!a.frames[i].every((v, k) => v === b.frames[i][k])) assert.unreachable(`${what}: frame ${i} differs`);
  }
  assert.equal(a.speech, b.speech, `${what}: the same VAD decisions`);
  assert.equal(a.features, b.features, `${what}: the same frames' voice features, the same values`);
  assert.equal(a.flushedAt, b.flushedAt, `${what}: flushes end at the same frames`);
  assert.equal(a.engaged, b.engaged, `${what}: the suppressor started and let go as here`);
}

test('in a worker, each track\'s frames, VAD decisions and voice features are those made on this thread, its flushes where they were asked', async () => {
  let speechFrames = 0;
  let frames = 0;
  let voiced = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(scriptArbitrary, { minLength: 1, maxLength: 4 }), async (scripts) => {
      const threaded = await run(scripts, (voice, onEngaged) => threads.stream(voice, onEngaged && { onEngaged }), true);
      const reference = await run(scripts, inline, false);
      for (let i = 0; i < scripts.length; i++) assertSameFrames(threaded[i], reference[i], `track ${i}`);
      for (const heard of threaded) {
        frames += heard.frames.length;
        speechFrames += heard.speech.filter(Boolean).length;
        voiced += heard.features.filter(Boolean).length;
      }
    }),
    { numRuns: 60, seed: 20261204 },
  );
  assert.ok(speechFrames > frames * 0.2 && speechFrames < frames * 0.9, `the VAD decided both ways (${speechFrames} speech frames of ${frames})`);
  assert.ok(voiced > speechFrames * 0.1 && voiced < speechFrames * 0.9, `some speech frames came with features, not all (${voiced} of ${speechFrames})`);
});

test('a worker that dies keeps every track\'s time: every frame comes, every flush is answered, and new units go on', async () => {
  const died: Error[] = [];
  const dying = await DspThreads.start(1, vad, FRAME, { workerUrl: new URL('../support/dying-dsp-worker.ts', import.meta.url), onDied: (error) => died.push(error) });
  const units: Unit[] = Array.from({ length: 200 }, (_, i) => (i % 7 === 6 ? { turn: true as const } : i % 50 === 25 ? { flush: true as const } : i % 11 === 3 ? { pcm: 250, skip: 0 } : { opus: i, ms: 1, broken: false, skip: 0 }));
  const scripts = [{ units, seed: 3 }, { units: units.slice(5), seed: 4, denoise: true }];
  const threaded = await run(scripts, (voice, onEngaged) => dying.stream(voice, onEngaged && { onEngaged }), true);
  const reference = await run(scripts, inline, false);
  assert.is(died.length, 1);
  for (let i = 0; i < scripts.length; i++) {
    assert.is(threaded[i].frames.length, reference[i].frames.length, `track ${i}: every frame came`);
    assert.equal(threaded[i].flushedAt, reference[i].flushedAt, `track ${i}: every flush answered where it was asked`);
    assert.equal(threaded[i].engaged, reference[i].engaged, `track ${i}: the suppressor's state told as here`);
  }
  const after = dying.stream();
  const late: boolean[] = [];
  after.start({ frame: (_frame, isSpeech) => late.push(isSpeech), flushed: () => undefined });
  after.opus(packets[1][0], 320, 0);
  assert.is(late.length, 1, 'a track opened after the death is decoded here');
  after.close();
  await dying.close();
});

test('workers started and stopped again and again, the VAD in use here meanwhile, leave memory intact (a native VAD addon corrupted it)', async () => {
  const here = trackVad(vad);
  for (let round = 0; round < 8; round++) {
    const more = await DspThreads.start(2, vad, FRAME);
    const frontEnd = more.stream();
    let frames = 0;
    let flushed = false;
    frontEnd.start({ frame: () => frames++, flushed: () => (flushed = true) });
    for (const packet of packets[1].slice(0, 50)) frontEnd.opus(packet, 320, 0);
    frontEnd.flush();
    while (!flushed) await turn();
    assert.is(frames, 50);
    for (let i = 0; i < 50; i++) here.isSpeech(speech.subarray(i * 320, (i + 1) * 320));
    frontEnd.close();
    await more.close();
  }
});

test.after(() => threads.close());
test.run();
