/**
 * The orchestration in-process, without HTTP, PostgreSQL or age (as LiveKit's agents test theirs): a
 * track's pipeline against a scripted recognizer that answers late, out of order and sometimes fails;
 * the caption feed's numbering, store-then-send and viewer isolation; an upload's windows coming back in
 * any order and dead-lettered. The end-to-end tests over real servers stay beside these.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CloseCode, type CaptionEvent, type FinalEvent, type UploadProgressEvent, type Word } from '../../client-sdk/src/protocol.ts';
import { socketViewer } from '../../src/api/captions.ts';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import { CaptionFeed } from '../../src/session/caption-feed.ts';
import { TrackPipeline, type TrackListener, type TrackPipelineOptions } from '../../src/session/track-pipeline.ts';
import { SttUsage } from '../../src/stt/stt-cost.ts';
import { PromptBuilder, termLexicon } from '../../src/stt/clinical-prompt.ts';
import { UploadTranscription, type UploadOutput } from '../../src/session/upload-transcription.ts';
import { TrackSpeakers } from '../../src/session/track-speakers.ts';
import { MemoryStore } from '../../src/store/testing/memory-store.ts';
import { InProcessCaptionBus } from '../../src/session/caption-bus.ts';
import { DEFAULT_THRESHOLDS } from '../../src/stt/recognized-words.ts';
import { FakeTranscriber, timelineAudio, type PlacedWord } from '../../src/stt/testing/fake-transcriber.ts';
import type { WindowJob, WindowQueue } from '../../src/stt/window-queue.ts';
import type { TranscriptionRequest } from '../../src/stt/transcriber.ts';
import { WindowTranscriber } from '../../src/stt/window-transcriber.ts';

const log = createLogger('silent');
const VOCABULARY = ['chest', 'pain', 'since', 'monday', 'no', 'fever', 'left', 'arm', 'درد', 'ألم'];

/** Words of 200–500 ms with gaps of 100–1500 ms (longer pauses end utterances). */
function placedWords(count: number): PlacedWord[] {
  let t = 500;
  return Array.from({ length: count }, (_, i) => {
    const w = { word: `${VOCABULARY[i % VOCABULARY.length]}${i}`, startMs: t, endMs: t + 200 + ((i * 37) % 300) };
    t = w.endMs + 100 + ((i * 211) % 1400);
    return w;
  });
}

/** A VAD for synthetic audio: loud frames are speech (the frame-index marker alone is not). */
const energyVad = { isSpeech: (frame: Int16Array) => frame.reduce((sum, x) => sum + x * x, 0) / frame.length > 1e7 };

function collectingListener() {
  const finals: Word[][] = [];
  const events = { failed: 0, recovered: 0, partials: 0 };
  const listener: TrackListener = {
    partial: () => void events.partials++,
    queued: () => {},
    final: async (_id, words) => void finals.push(words),
    sttFailed: () => void events.failed++,
    refused: () => void events.failed++,
    progress: () => {},
    sttRecovered: () => void events.recovered++,
    failed: (error) => assert.unreachable(error.message),
    abandoned: (_id, _window, error) => assert.unreachable(error.message),
  };
  return { finals, events, listener };
}

/** The production partial budget and context, and a fresh usage count. */
function pipelineCost(): Pick<TrackPipelineOptions, 'partialBudget' | 'partialContextMs' | 'usage' | 'prompts'> {
  return { partialBudget: { budget: 0.5, maxCreditMs: 8000 }, partialContextMs: 2000, usage: new SttUsage(), prompts: { builder: new PromptBuilder({ defaults: [], vocabulary: [] }, (text) => text.length), lexicon: termLexicon([]) } };
}

test('track pipeline: a recognizer that answers out of order, late and with failures gives every word once, in order', async () => {
  const words = placedWords(60);
  const durationMs = words.at(-1)!.endMs + 2000;
  // Early calls take long and later ones are quick, so answers overtake each other; two calls fail.
  const script = Array.from({ length: 40 }, (_, i) => (i === 3 || i === 7 ? { fail: new Error('503 from the recognizer') } : { delayMs: (40 - i) % 13 }));
  const transcriber = new WindowTranscriber(new FakeTranscriber(words, script, 1), { concurrency: 4, sampleRate: 16000, thresholds: DEFAULT_THRESHOLDS, retryDelayMs: 5 });
  const { finals, events, listener } = collectingListener();
  const pipeline = new TrackPipeline({
    ...pipelineCost(),
    offsetMs: 0, epoch: 1, trackId: 'doctor', listener, vad: energyVad, transcriber, metrics: createMetrics(),
    segmenter: { maxWindowMs: 8000, cutSearchMs: 2000, overlapMs: 1200, partialIntervalMs: 1000, silenceMs: 900 },
    realTime: { maxSpeed: 1e9, burstMs: 1e9 },
  });
  const audio = timelineAudio(words, durationMs);
  for (let i = 0; i < audio.length; i += 320) pipeline.push({ kind: 'pcm', samples: audio.subarray(i, i + 320) });
  await pipeline.end();
  assert.equal(finals.flat().map((w) => w.word), words.map((w) => w.word));
  assert.ok(events.failed >= 2 && events.recovered >= 1, JSON.stringify(events));
  assert.ok(events.partials > 0);
  transcriber.close();
});

test('track pipeline with speculative finals and budgeted tail partials: every word once, in order, the speculative answer reused, usage counted', async () => {
  const words = placedWords(80);
  const durationMs = words.at(-1)!.endMs + 2000;
  const run = async (speculativeSilenceMs: number) => {
    // Answers overtake each other; pauses of 100–1500 ms both confirm and cancel speculation.
    const fake = new FakeTranscriber(words, Array.from({ length: 400 }, (_, i) => ({ delayMs: (400 - i) % 11 })), 1);
    const transcriber = new WindowTranscriber(fake, { concurrency: 4, sampleRate: 16000, thresholds: DEFAULT_THRESHOLDS });
    const { finals, listener } = collectingListener();
    const usage = new SttUsage();
    const pipeline = new TrackPipeline({
      ...pipelineCost(), usage,
      offsetMs: 0, epoch: 1, trackId: 'doctor', listener, vad: energyVad, transcriber, metrics: createMetrics(),
      segmenter: { maxWindowMs: 8000, cutSearchMs: 2000, overlapMs: 1200, partialIntervalMs: 1000, silenceMs: 900, speculativeSilenceMs },
      realTime: { maxSpeed: 1e9, burstMs: 1e9 },
    });
    const audio = timelineAudio(words, durationMs);
    for (let i = 0; i < audio.length; i += 320) {
      pipeline.push({ kind: 'pcm', samples: audio.subarray(i, i + 320) });
      // Some real time between chunks, so answers come back while audio still arrives.
      if (i % (320 * 25) === 0) await new Promise((r) => setImmediate(r));
    }
    await pipeline.end();
    transcriber.close();
    return { finals, usage: usage.figures, calls: fake.calls.length };
  };
  const plain = await run(0);
  const speculative = await run(200);
  assert.equal(speculative.finals.flat().map((w) => w.word), words.map((w) => w.word));
  assert.equal(speculative.finals.map((f) => f.map((w) => w.word)), plain.finals.map((f) => f.map((w) => w.word)), 'the same finals');
  assert.ok(speculative.usage.sentMs.final > 0 && speculative.usage.receivedMs >= durationMs - 20, JSON.stringify(speculative.usage));
  // A confirmed speculative answer is the final's (no second call); its window lacks only the last 100 ms of silence.
  assert.ok(speculative.usage.sentMs.final <= plain.usage.sentMs.final && speculative.usage.sentMs.final > plain.usage.sentMs.final - 100 * speculative.finals.length, `${speculative.usage.sentMs.final} vs ${plain.usage.sentMs.final}`);
  assert.ok(speculative.usage.sentMs.speculative > 0, 'speech after 200 ms cancelled some speculation');
  assert.ok(speculative.usage.sentMs.partial + speculative.usage.sentMs.speculative <= 0.5 * speculative.usage.receivedMs + 8000, 'partials and speculation within the budget');
});

test('finals sooner: a speculative final whose ending the partial at the pause heard the same is published before the endpointing silence; one heard differently waits', async () => {
  // Six sentences of ten 300 ms words (pauses of 120 ms inside, 2 s between), each ending with a period.
  const words: PlacedWord[] = [];
  let t = 500;
  for (let sentence = 0; sentence < 6; sentence++) {
    for (let i = 0; i < 10; i++) {
      words.push({ word: `${VOCABULARY[(sentence + i) % VOCABULARY.length]}${sentence}${i}${i === 9 ? '.' : ''}`, startMs: t, endMs: t + 300 });
      t += 420;
    }
    t += 2000;
  }
  const sentenceStarts = words.filter((_, i) => i % 10 === 0).map((w) => w.startMs);
  /** Mishears the last word of every window that starts inside a sentence (the tails, never a final's window). */
  class EndingMishearer extends FakeTranscriber {
    override async transcribe(request: TranscriptionRequest) {
      const heard = await super.transcribe(request);
      const startMs = request.audio[0] * 20;
      if (heard.words && heard.words.length > 0 && !sentenceStarts.some((s) => s >= startMs && s - startMs < 1000)) heard.words.at(-1)!.word = 'misheard';
      return heard;
    }
  }
  const run = async (recognizer: FakeTranscriber) => {
    const transcriber = new WindowTranscriber(recognizer, { concurrency: 4, sampleRate: 16000, thresholds: DEFAULT_THRESHOLDS });
    const finals: { words: Word[]; endMs: number }[] = [];
    const { listener } = collectingListener();
    const pipeline = new TrackPipeline({
      ...pipelineCost(),
      listener: { ...listener, final: async (_id, finalWords, window) => void finals.push({ words: finalWords, endMs: window.endMs }) },
      offsetMs: 0, epoch: 1, trackId: 'doctor', vad: energyVad, transcriber, metrics: createMetrics(),
      segmenter: { partialIntervalMs: 1000, silenceMs: 900, speculativeSilenceMs: 200 },
      realTime: { maxSpeed: 1e9, burstMs: 1e9 },
    });
    const audio = timelineAudio(words, t);
    for (let i = 0; i < audio.length; i += 320) {
      pipeline.push({ kind: 'pcm', samples: audio.subarray(i, i + 320) });
      // Real time enough between frames for the recognizer's answers to come back during a pause.
      await new Promise((r) => setTimeout(r, 1));
    }
    await pipeline.end();
    transcriber.close();
    return finals;
  };
  for (const [name, recognizer, early] of [['agreeing', new FakeTranscriber(words), true], ['mishearing its tails', new EndingMishearer(words), false]] as const) {
    const finals = await run(recognizer);
    assert.equal(finals.flatMap((f) => f.words.map((w) => w.word)), words.map((w) => w.word), `${name}: every word once, in order`);
    assert.is(finals.length, 6, `${name}: one final per sentence`);
    // Published at the speculative window's end (200 ms of silence) or after the endpointing's 900 ms (its window keeps 300).
    for (const final of finals) assert.is(final.endMs - final.words.at(-1)!.endMs <= 220, early, `${name}: final ending at ${final.endMs}`);
  }
});

test('track pipeline: a defect in a stage ends the track with an internal error, once', async () => {
  const transcriber = new WindowTranscriber(new FakeTranscriber([]), { concurrency: 1, sampleRate: 16000, thresholds: DEFAULT_THRESHOLDS });
  const failures: string[] = [];
  const { listener } = collectingListener();
  let frames = 0;
  const pipeline = new TrackPipeline({
    ...pipelineCost(),
    offsetMs: 0, epoch: 1, trackId: 't', transcriber, metrics: createMetrics(), segmenter: {}, realTime: { maxSpeed: 1e9, burstMs: 1e9 },
    listener: { ...listener, failed: (error) => void failures.push(`${error.closeCode} ${error.message}`) },
    vad: { isSpeech: () => { if (++frames > 10) throw new Error('boom'); return false; } },
  });
  for (let i = 0; i < 50; i++) pipeline.push({ kind: 'pcm', samples: new Int16Array(320) });
  await pipeline.end();
  assert.equal(failures, ['1011 the gateway failed while processing this track: boom']);
});

test('track pipeline resumed by new connections: resent overlap skipped, a gap filled with silence, startMs beyond real time refused', async () => {
  const words = placedWords(30);
  const durationMs = words.at(-1)!.endMs + 2000;
  const audio = timelineAudio(words, durationMs);
  const run = async (connections: { from: number; resendMs: number }[]) => {
    const transcriber = new WindowTranscriber(new FakeTranscriber(words), { concurrency: 2, sampleRate: 16000, thresholds: DEFAULT_THRESHOLDS });
    const { finals, listener } = collectingListener();
    const pipeline = new TrackPipeline({
    ...pipelineCost(),
      offsetMs: 0, epoch: 1, trackId: 'doctor', listener, vad: energyVad, transcriber, metrics: createMetrics(),
      segmenter: { maxWindowMs: 8000, cutSearchMs: 2000, overlapMs: 1200, silenceMs: 900 }, realTime: { maxSpeed: 1e9, burstMs: 1e9 },
    });
    // Each connection starts `resendMs` before where the previous one was cut (what it had not seen acknowledged).
    for (let c = 0; c < connections.length; c++) {
      const startMs = Math.max(0, connections[c].from - connections[c].resendMs);
      if (c > 0) pipeline.resume(startMs);
      const endMs = connections[c + 1]?.from ?? durationMs;
      for (let i = startMs * 16; i < endMs * 16; i += 320) pipeline.push({ kind: 'pcm', samples: audio.subarray(i, Math.min(i + 320, endMs * 16)) });
    }
    await pipeline.end();
    transcriber.close();
    return { words: finals.flat(), receivedMs: pipeline.receivedMs };
  };
  const whole = await run([{ from: 0, resendMs: 0 }]);
  assert.equal(whole.words.map((w) => w.word), words.map((w) => w.word));
  await fc.assert(
    fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: Math.floor(durationMs / 20) - 1 }), { minLength: 1, maxLength: 6 }), fc.array(fc.integer({ min: 0, max: 1500 }), { minLength: 6, maxLength: 6 }), async (cuts, resends) => {
      const connections = [{ from: 0, resendMs: 0 }, ...cuts.sort((a, b) => a - b).map((cut, i) => ({ from: cut * 20, resendMs: resends[i] }))];
      const resumed = await run(connections);
      assert.equal(resumed.words, whole.words);
      assert.is(resumed.receivedMs, whole.receivedMs);
    }),
    { numRuns: 25, seed: 17 },
  );
  // A gap: silence of exactly its length, and the words after it later by as much.
  const transcriber = new WindowTranscriber(new FakeTranscriber([]), { concurrency: 1, sampleRate: 16000, thresholds: DEFAULT_THRESHOLDS });
  const { listener } = collectingListener();
  const archivedSilenceMs: number[] = [];
  const pipeline = new TrackPipeline({
    ...pipelineCost(),
    offsetMs: 1000, epoch: 1, trackId: 't', listener, vad: energyVad, transcriber, metrics: createMetrics(), segmenter: {}, realTime: { maxSpeed: 1, burstMs: 5000 },
    archive: { packet: () => {}, pcm: () => {}, silence: (ms) => void archivedSilenceMs.push(ms) },
  });
  pipeline.push({ kind: 'pcm', samples: new Int16Array(16000) });
  pipeline.resume(2730, performance.now());
  assert.is(pipeline.trackMs, 2730);
  assert.throws(() => pipeline.resume(60_000, performance.now()), /startMs 60000 is .* more than real time allows/);
  assert.is(pipeline.trackMs, 2730);
  // A live source (WebRTC) away for a while: its absence becomes silence once its audio comes back.
  const lastAudioNotBefore = performance.now();
  pipeline.push({ kind: 'pcm', samples: new Int16Array(320) });
  const lastAudioNotAfter = performance.now();
  pipeline.resumeLive();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.is(pipeline.trackMs, 2750, 'nothing is added before the new connection delivers');
  const backNotBefore = performance.now();
  pipeline.push({ kind: 'pcm', samples: new Int16Array(320) });
  const backNotAfter = performance.now();
  const awayMs = pipeline.trackMs - 2770;
  // One sample (1/16 ms) of rounding on either side.
  assert.ok(awayMs >= backNotBefore - lastAudioNotAfter - 0.07 && awayMs <= backNotAfter - lastAudioNotBefore + 0.07, `the time away is in the track (${awayMs} ms)`);
  assert.is(archivedSilenceMs.length, 2, 'both gaps are silence in the recording');
  assert.is(archivedSilenceMs[0], 730);
  await pipeline.end();
  transcriber.close();
});

test('caption feed: one seq order across tracks, stored before sent, replay after N, a failing viewer isolated', async () => {
  const store = new MemoryStore();
  store.failNextSegments = 2;
  const feed = new CaptionFeed('s', [], store, new InProcessCaptionBus().connect('gateway-1'), log, createMetrics());
  const seen: CaptionEvent[] = [];
  feed.addViewer({ send: (e) => { if (e.type === 'final') assert.ok(store.segments.some((s) => s.seq === e.seq), 'stored before sent'); seen.push(e); } }, 0, []);
  feed.addViewer({ send: () => { throw new Error('socket gone'); } }, 0, []);
  const word = (w: string, t: number): Word => ({ word: w, startMs: t, endMs: t + 100 });
  const doctor = (words: Word[]) => ({ speaker: 'Dr', role: 'doctor' as const, roleSource: 'track' as const, words });
  const patient = (words: Word[]) => ({ speaker: 'P', role: 'patient' as const, roleSource: 'track' as const, words });
  await Promise.all([feed.publish('doctor', 'd1', doctor([word('a', 0)])), feed.publish('patient', 'p1', patient([word('b', 50)])), feed.publish('doctor', 'd2', doctor([])), feed.publish('patient', 'p2', patient([word('c', 300)]))]);
  const finals = seen.filter((e): e is FinalEvent => e.type === 'final');
  assert.equal(finals.map((f) => [f.seq, f.text]), [[1, 'a'], [2, 'b'], [3, 'c']]);
  assert.is(feed.viewerCount, 1, 'the failing viewer was dropped, the other kept');
  const late: CaptionEvent[] = [];
  feed.addViewer({ send: (e) => late.push(e) }, 1, [{ type: 'session', sessionId: 's', state: 'active', stt: 'ok', tracks: [], lastSeq: 3 }]);
  assert.equal(late.map((e) => (e.type === 'final' ? e.seq : e.type)), ['session', 2, 3]);
});

test('upload transcription: windows back in any order are published in order; a dead letter holds later windows until retried', async () => {
  const store = new MemoryStore();
  const published: string[] = [];
  const progress: UploadProgressEvent[] = [];
  let ended = 0;
  const output: UploadOutput = {
    id: 'up',
    publishUploadFinal: async (_t, _u, { words }) => void published.push(words.map((w) => w.word).join(' ')),
    uploadProgress: (e) => void progress.push(e),
    uploadWindowAnswered: () => {},
    windowFailed: () => {},
    end: async () => void ended++,
  };
  const retried: WindowJob[] = [];
  const queue = { retry: async (jobs: WindowJob[]) => void retried.push(...jobs), release: async () => {} } as unknown as WindowQueue;
  const windows = Array.from({ length: 5 }, (_, i) => ({ index: i, utteranceId: i + 1, startMs: i * 10000, endMs: i * 10000 + 9000 }));
  const transcription = new UploadTranscription({ session: output, trackId: 'upload', windows, queue, store, log, dataKey: 'k', onFinished: () => {}, prompts: pipelineCost().prompts, speakers: new TrackSpeakers(), track: { role: 'doctor', participant: 'recording' } });
  await transcription.registerWindows();
  const result = (i: number) => ({ words: [{ word: `w${i}`, startMs: i * 10000 + 100, endMs: i * 10000 + 400 }], sttMs: 5 });
  await transcription.completed(transcription.job(windows[3]), result(3), 1);
  await transcription.completed(transcription.job(windows[0]), result(0), 1);
  await transcription.deadLettered(transcription.job(windows[1]), 'STT down', 3);
  await transcription.completed(transcription.job(windows[2]), result(2), 1);
  assert.equal(published, ['w0'], 'nothing past the dead letter');
  assert.equal(store.uploadStates.at(-1), 'needs_attention');
  assert.is(await transcription.retryDead(), 1);
  assert.equal(retried.map((j) => j.index), [1]);
  await transcription.completed(transcription.job(windows[1]), result(1), 4);
  await transcription.completed(transcription.job(windows[4]), result(4), 1);
  assert.equal(published, ['w0', 'w1', 'w2', 'w3', 'w4']);
  assert.is(ended, 1, 'the session ends once every window is in');
  assert.equal(progress.at(-1)!.windowsDone, 5);
});

test('a caption viewer too slow to read is closed with 4408 (reconnect with ?after=); partials are skipped first', () => {
  const closed: [number, string][] = [];
  const sent: string[] = [];
  const socket = { readyState: 1, OPEN: 1, bufferedAmount: 0, send: (data: string) => void sent.push(data), close: (code: number, reason: string) => void closed.push([code, reason]) };
  const viewer = socketViewer(socket as never, 64 * 1024);
  const partial: CaptionEvent = { type: 'partial', sessionId: 's', trackId: 't', role: 'doctor', speaker: 'Dr', utteranceId: 'u', stable: '', unstable: 'x', startMs: 0 };
  socket.bufferedAmount = 1000;
  viewer.send(partial);
  assert.is(sent.length, 1, 'a little backlog: partials still go');
  socket.bufferedAmount = 10000;
  viewer.send(partial);
  assert.is(sent.length, 1, 'past a sixteenth: partials skipped');
  socket.bufferedAmount = 70000;
  viewer.send(partial);
  assert.equal(closed.map(([code]) => code), [CloseCode.viewerTooSlow]);
});

test.run();
