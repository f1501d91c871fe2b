/**
 * The speech check and the filter around the recognizer: Silero VAD (the real model, the real runtime)
 * on the noisy corpus, and the window transcriber with a scripted detector and recognizer: a window the
 * check finds no speech in is never sent, and what the recognizer invents outside speech is dropped.
 */
import { readFile } from 'node:fs/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ensureCorpus, loadReference } from '../../scripts/make-corpus.ts';
import { SileroWorker, type WindowSpeechDetector } from '../../src/audio/silero-vad.ts';
import { speechStretches } from '../../src/audio/speech-stretches.ts';
import { decodeWav } from '../../src/audio/wav.ts';
import type { AudioWindow } from '../../src/segmenter/segmenter.ts';
import { DEFAULT_FILTER_OPTIONS, type DropReason } from '../../src/stt/hallucination-filter.ts';
import { loadStockPhrases } from '../../src/stt/stock-phrases.ts';
import { FakeTranscriber } from '../../src/stt/testing/fake-transcriber.ts';
import type { Transcription, TranscriptionRequest } from '../../src/stt/transcriber.ts';
import { WindowTranscriber } from '../../src/stt/window-transcriber.ts';
import { DEFAULT_THRESHOLDS } from '../../src/stt/recognized-words.ts';

const silero = suite('Silero VAD on the noisy corpus');

silero('coughs, doors and chairs are not speech; every spoken word is (the model in its worker thread)', async () => {
  const corpusDir = await ensureCorpus();
  const vad = await SileroWorker.start();
  try {
    for (const language of ['en', 'fa', 'ar']) {
      const reference = await loadReference(language);
      for (const track of ['doctor', 'patient'] as const) {
        const { samples } = decodeWav(await readFile(`${corpusDir}/${language}/${track}-noisy.wav`));
        const stretches = speechStretches(await vad.probabilities(samples), vad.chunkMs);
        const inSpeech = (a: number, b: number) => stretches.reduce((sum, [x, y]) => sum + Math.max(0, Math.min(b, y) - Math.max(a, x)), 0);
        for (const burst of reference.noise[track]) assert.ok(inSpeech(burst.startMs, burst.endMs) < 100, `${language}/${track}: the ${burst.kind} at ${burst.startMs} ms is speech`);
        for (const word of reference.tracks[track]) assert.ok(inSpeech(word.startMs, word.endMs) >= 0.5 * (word.endMs - word.startMs), `${language}/${track}: "${word.word}" at ${word.startMs} ms is not speech`);
      }
    }
  } finally {
    await vad.close();
  }
});

silero('windows of one stream, checked as they grow, get exactly what the whole window gets at once; a replaced worker still answers', async () => {
  const corpusDir = await ensureCorpus();
  const { samples } = decodeWav(await readFile(`${corpusDir}/en/doctor-noisy.wav`));
  const whole = samples.subarray(16000, 16000 * 9);
  const vad = await SileroWorker.start();
  try {
    const expected = await vad.probabilities(whole);
    // Lengths that end mid-chunk, a shorter window after a longer one, and the whole.
    for (const seconds of [0.7, 1.9, 1.5, 4.33, 6, 8]) {
      const got = await vad.probabilities(whole.subarray(0, Math.round(seconds * 16000)), 'track1@1000');
      assert.equal(Array.from(got), Array.from(expected.subarray(0, got.length)), `${seconds} s`);
      assert.is(got.length, Math.floor((seconds * 16000) / 512));
    }
    // The worker dies and is replaced: it no longer holds the stream, and is given the whole window.
    (vad as unknown as { thread: { worker: { terminate(): Promise<number> } } }).thread.worker.terminate();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(Array.from(await vad.probabilities(whole, 'track1@1000')), Array.from(expected));
    // Another stream with other audio is not confused with it.
    const other = samples.subarray(16000 * 20, 16000 * 26);
    const otherWhole = await vad.probabilities(other);
    await vad.probabilities(other.subarray(0, 16000 * 3), 'track2@20000');
    assert.equal(Array.from(await vad.probabilities(other, 'track2@20000')), Array.from(otherWhole));
  } finally {
    await vad.close();
  }
});

silero('many windows at once, batched in the worker, each get what they get alone, a growing one too', async () => {
  const corpusDir = await ensureCorpus();
  const { samples } = decodeWav(await readFile(`${corpusDir}/ar/patient-hum5.wav`));
  const vad = await SileroWorker.start();
  try {
    // 40 windows (more than a batch) of different lengths and starts, some sharing a stream as it grows.
    const windows = Array.from({ length: 40 }, (_, i) => ({ audio: samples.subarray(i * 8000, i * 8000 + 3000 + ((i * 7919) % 90000)), stream: i % 4 === 0 ? `s${i}` : undefined }));
    const alone: Float32Array[] = [];
    for (const w of windows) alone.push(await vad.probabilities(w.audio));
    const grown = windows.filter((w) => w.stream).map((w) => ({ ...w, audio: samples.subarray(w.audio.byteOffset / 2, w.audio.byteOffset / 2 + w.audio.length + 40000) }));
    const grownAlone: Float32Array[] = [];
    for (const w of grown) grownAlone.push(await vad.probabilities(w.audio));
    // Every other one asked ahead (nobody waiting for it): it shares the batch of those waited for.
    const together = await Promise.all([...windows.map((w, i) => vad.probabilities(w.audio, w.stream, i % 2 === 1)), ...grown.map((w) => vad.probabilities(w.audio, w.stream))]);
    windows.forEach((_, i) => assert.equal(Array.from(together[i]), Array.from(alone[i]), `window ${i}`));
    grown.forEach((_, i) => assert.equal(Array.from(together[windows.length + i]), Array.from(grownAlone[i]), `grown window ${i}`));
    // Checks ahead alone, fewer than a batch: they linger, then are answered all the same; a window
    // waited for on the stream of one still lingering continues from it.
    const ahead = await Promise.all(windows.slice(0, 3).map((w, i) => vad.probabilities(w.audio, `ahead${i}`, true)));
    ahead.forEach((got, i) => assert.equal(Array.from(got), Array.from(alone[i]), `ahead window ${i}`));
    const [first] = grown;
    const lingering = vad.probabilities(first.audio.subarray(0, 20000), 'ahead-then-waited', true);
    assert.equal(Array.from(await vad.probabilities(first.audio, 'ahead-then-waited')), Array.from(grownAlone[0]));
    assert.equal(Array.from(await lingering), Array.from(grownAlone[0].subarray(0, Math.floor(20000 / 512))));
  } finally {
    await vad.close();
  }
});

silero.run();

const transcriber = suite('window transcriber: speech check and filter');

/** Speech wherever the audio is loud (what the scripted recognizer hears as words). */
const loudDetector: WindowSpeechDetector = {
  chunkMs: 20,
  async probabilities(audio) {
    const out = new Float32Array(Math.floor(audio.length / 320));
    for (let c = 0; c < out.length; c++) out[c] = Math.abs(audio[c * 320 + 5]) > 1000 ? 0.9 : 0.05;
    return out;
  },
};

function windowOf(audio: Int16Array, startMs: number): AudioWindow {
  return { id: 1, utteranceId: 1, kind: 'final', startMs, endMs: startMs + audio.length / 16, speech: [[startMs, startMs + audio.length / 16]], audio };
}

function tone(ms: number, loud: boolean): Int16Array {
  return Int16Array.from({ length: ms * 16 }, (_, i) => (loud ? Math.round(8000 * Math.sin(i / 3)) : 0));
}

transcriber('a window with no speech is not sent, for finals, partials and uploads; it is counted', async () => {
  const fake = new FakeTranscriber([]);
  const skipped: string[] = [];
  const wt = new WindowTranscriber(fake, { concurrency: 1, sampleRate: 16000, thresholds: DEFAULT_THRESHOLDS, speechCheck: { detector: loudDetector, minSpeechMs: 200 }, onSkipped: (kind) => skipped.push(kind) });
  const quiet = windowOf(tone(2000, false), 0);
  const final = await wt.final(quiet, { onFailure: () => assert.unreachable(), onRecovered: () => undefined });
  assert.equal({ words: final.words, skipped: final.skipped }, { words: [], skipped: true });
  const partial = await wt.partial({ ...quiet, kind: 'partial' });
  assert.ok(partial && 'skipped' in partial && partial.skipped);
  assert.ok((await wt.upload(quiet)).skipped);
  assert.is(fake.calls.length, 0, 'nothing sent');
  assert.equal(skipped, ['final', 'partial', 'upload']);
  assert.is(wt.sttBacklog.windows, 0);
  wt.close();
});

/** A recognizer that hears "chest pain" and a loop in the loud stretch and invents a stock phrase over the quiet second before it. */
class InventingRecognizer {
  readonly calls: TranscriptionRequest[] = [];
  async transcribe(request: TranscriptionRequest): Promise<Transcription> {
    this.calls.push(request);
    const words = [
      { word: 'Thank', start: 0.05, end: 0.15 }, { word: 'you', start: 0.15, end: 0.25 }, { word: 'for', start: 0.25, end: 0.35 }, { word: 'watching.', start: 0.35, end: 0.6 },
      { word: 'chest', start: 1.2, end: 1.5 }, { word: 'pain', start: 1.6, end: 1.9 },
      { word: 'you', start: 2.0, end: 2.1 }, { word: 'you', start: 2.1, end: 2.2 }, { word: 'you', start: 2.2, end: 2.3 }, { word: 'you', start: 2.3, end: 2.4 },
    ];
    return { text: words.map((w) => w.word).join(' '), words, segments: [{ start: 0, end: 2.5, text: 'x', noSpeechProb: 0.25, avgLogprob: -0.45, compressionRatio: 1.4 }] };
  }
}

transcriber('words invented outside checked speech are dropped and counted; spoken words stay', async () => {
  const dropped: Partial<Record<DropReason, number>> = {};
  const recognizer = new InventingRecognizer();
  const wt = new WindowTranscriber(recognizer, {
    concurrency: 1, sampleRate: 16000, thresholds: DEFAULT_THRESHOLDS,
    speechCheck: { detector: loudDetector, minSpeechMs: 200 },
    filter: { ...DEFAULT_FILTER_OPTIONS, phrases: await loadStockPhrases() },
    onDropped: (reason, n) => (dropped[reason] = (dropped[reason] ?? 0) + n),
  });
  // Quiet first second, then 1.5 s of speech, then quiet: the loop is spoken ("you" once), the phrase is not.
  const audio = new Int16Array([...tone(1000, false), ...tone(1500, true), ...tone(500, false)]);
  const result = await wt.final(windowOf(audio, 5000), { onFailure: () => assert.unreachable(), onRecovered: () => undefined });
  assert.equal(result.words.map((w) => w.word), ['chest', 'pain', 'you']);
  assert.equal(result.words[0].startMs, 6200);
  assert.equal(dropped, { outside_speech: 4, loop: 3 });
  assert.is(result.speechMs, 1560);
  wt.close();
});

transcriber('without word timestamps a stock phrase over weak speech goes, over real speech it stays', async () => {
  const phrases = await loadStockPhrases();
  const answer = (text: string) => ({ transcribe: async (): Promise<Transcription> => ({ text }) });
  const options = { concurrency: 1, sampleRate: 16000, thresholds: DEFAULT_THRESHOLDS, filter: { ...DEFAULT_FILTER_OPTIONS, phrases } };
  const weak = new WindowTranscriber(answer('Thank you for watching.'), { ...options, speechCheck: { detector: loudDetector, minSpeechMs: 0 } });
  assert.equal((await weak.upload(windowOf(new Int16Array([...tone(1500, false), ...tone(200, true)]), 0))).words, []);
  const strong = new WindowTranscriber(answer('Thank you, doctor.'), { ...options, speechCheck: { detector: loudDetector, minSpeechMs: 0 } });
  assert.equal((await strong.upload(windowOf(tone(1500, true), 0))).words.map((w) => w.word), ['Thank', 'you,', 'doctor.']);
  const thanks = new WindowTranscriber(answer('Thank you.'), { ...options, speechCheck: { detector: loudDetector, minSpeechMs: 0 } });
  assert.equal((await thanks.upload(windowOf(tone(700, true), 0))).words.map((w) => w.word), ['Thank', 'you.'], 'a real "thank you" stays');
  for (const wt of [weak, strong, thanks]) wt.close();
});

transcriber('a weak onset the check is late on is heard where the segmenting VAD heard it with the speech, not beyond', async () => {
  // The check hears speech from 1 s on; the first word's centre lies 400 ms before that (past the 250 ms
  // pad), the second's 700 ms before (past the widening too).
  const words = [{ word: 'stay', start: 0.55, end: 0.65 }, { word: 'so', start: 0.25, end: 0.35 }, { word: 'pain', start: 1.2, end: 1.5 }].sort((a, b) => a.start - b.start);
  const answer = { transcribe: async (): Promise<Transcription> => ({ text: words.map((w) => w.word).join(' '), words }) };
  const audio = new Int16Array([...tone(1000, false), ...tone(1000, true)]);
  const heard = async (vad: [number, number][]) => {
    const wt = new WindowTranscriber(answer, { concurrency: 1, sampleRate: 16000, thresholds: DEFAULT_THRESHOLDS, speechCheck: { detector: loudDetector, minSpeechMs: 200 }, filter: { ...DEFAULT_FILTER_OPTIONS, phrases: [] } });
    const result = await wt.upload({ ...windowOf(audio, 0), speech: vad });
    wt.close();
    return result.words.map((w) => w.word);
  };
  assert.equal(await heard([[500, 2000]]), ['stay', 'pain'], 'the VAD heard the onset with the speech: widened into it by at most 200 ms');
  assert.equal(await heard([[0, 2000]]), ['stay', 'pain'], 'a longer VAD run widens no further');
  assert.equal(await heard([[500, 700], [1000, 2000]]), ['pain'], 'a VAD run apart from the speech (300 ms) is not it');
  assert.equal(await heard([[500, 700], [760, 2000]]), ['stay', 'pain'], 'runs 60 ms apart are one');
});

transcriber.run();
