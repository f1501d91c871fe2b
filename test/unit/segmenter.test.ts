import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Segmenter, type AudioWindow, type SegmenterOptions } from '../../src/segmenter/segmenter.ts';

const FRAME = 320; // 20 ms at 16 kHz

/** A script of [durationMs, 'speech' | 'silence' | 'pause'] turned into frames; sample values encode time. */
function run(script: [number, 'speech' | 'silence' | 'quiet-speech'][], options: Partial<SegmenterOptions> = {}) {
  const segmenter = new Segmenter(options);
  const windows: AudioWindow[] = [];
  let frameIndex = 0;
  for (const [ms, kind] of script) {
    for (let f = 0; f < ms / 20; f++, frameIndex++) {
      const samples = new Int16Array(FRAME);
      const amplitude = kind === 'speech' ? 8000 : kind === 'quiet-speech' ? 300 : 0;
      // Sample 0 of every frame carries the frame index, so a window's audio can be checked against time.
      for (let i = 1; i < FRAME; i++) samples[i] = Math.round(amplitude * Math.sin(i / 3));
      samples[0] = frameIndex % 32768;
      windows.push(...segmenter.push({ samples, isSpeech: kind !== 'silence' }));
    }
  }
  windows.push(...segmenter.flush());
  return { windows, finals: windows.filter((w) => w.kind === 'final'), partials: windows.filter((w) => w.kind === 'partial') };
}

function frameIndexAt(window: AudioWindow, frame: number): number {
  return window.audio[frame * FRAME];
}

test('silence alone produces no window', () => {
  assert.equal(run([[10000, 'silence']]).windows.length, 0);
});

test('a click shorter than minSpeechMs opens no utterance', () => {
  assert.equal(run([[1000, 'silence'], [40, 'speech'], [2000, 'silence']]).windows.length, 0);
});

test('one utterance: pre-roll before, trailing pad after, closed by silence', () => {
  const { finals } = run([[2000, 'silence'], [2000, 'speech'], [2000, 'silence']]);
  assert.equal(finals.length, 1);
  const [w] = finals;
  assert.equal(w.startMs, 2000 - 300);
  assert.equal(w.endMs, 4000 + 300);
  assert.equal(w.closedBy, 'silence');
  assert.equal(w.keepFromMs, undefined);
  assert.equal(w.keepUntilMs, undefined);
  assert.equal(w.audio.length, ((w.endMs - w.startMs) / 20) * FRAME);
  assert.equal(frameIndexAt(w, 0), w.startMs / 20, 'audio starts at the window start time');
});

test('pre-roll is clipped at the start of the track', () => {
  const { finals } = run([[100, 'silence'], [1000, 'speech'], [1000, 'silence']]);
  assert.equal(finals[0].startMs, 0);
});

test('a pause shorter than silenceMs does not split; a longer one does', () => {
  assert.equal(run([[500, 'silence'], [1000, 'speech'], [400, 'silence'], [1000, 'speech'], [1000, 'silence']]).finals.length, 1);
  const split = run([[500, 'silence'], [1000, 'speech'], [900, 'silence'], [1000, 'speech'], [1000, 'silence']]).finals;
  assert.equal(split.length, 2);
  assert.ok(split[1].startMs >= split[0].endMs, 'windows of separate utterances do not overlap');
  assert.equal(split[1].keepFromMs, undefined);
});

test('a pause hardly longer than silenceMs goes whole with the next utterance, its seam at the previous window end', () => {
  // 700 ms of pause (under silenceMs + preRollMs): a weak onset heard as silence may lie anywhere in it.
  const [first, second] = run([[500, 'silence'], [1000, 'speech'], [700, 'silence'], [1000, 'speech'], [1000, 'silence']]).finals;
  assert.is(first.endMs, 1800, 'the first keeps its trailing pad');
  assert.is(second.startMs, 1500, 'the second starts where the first one\'s speech ended');
  assert.is(second.keepFromMs, first.endMs);
  assert.equal(second.speech[0], [2200, 3200], 'its speech is its own');
});

test('partials every second while speech goes on, each from the utterance start to now', () => {
  const { partials, finals } = run([[1000, 'silence'], [5000, 'speech'], [1000, 'silence']]);
  assert.ok(partials.length >= 4 && partials.length <= 5, `got ${partials.length} partials`);
  for (const p of partials) assert.equal(p.startMs, finals[0].startMs);
  for (let i = 1; i < partials.length; i++) assert.ok(partials[i].endMs - partials[i - 1].endMs >= 1000);
  assert.ok(partials.every((p) => p.utteranceId === finals[0].utteranceId));
});

test('partials can be disabled', () => {
  assert.equal(run([[1000, 'silence'], [5000, 'speech'], [1000, 'silence']], { partialIntervalMs: 0 }).partials.length, 0);
});

test('max window: cut at the quietest point near the limit, overlap carried into the next window', () => {
  // 25 s of speech, a quieter stretch at 19.0–19.2 s, more speech: the limit is 20 s, search the last 4 s.
  const { finals } = run(
    [[1000, 'silence'], [18000, 'speech'], [200, 'quiet-speech'], [8000, 'speech'], [1000, 'silence']],
    { maxWindowMs: 20000, cutSearchMs: 4000, overlapMs: 1500 },
  );
  assert.equal(finals.length, 2);
  const [first, second] = finals;
  assert.equal(first.closedBy, 'max-length');
  assert.ok(first.endMs - first.startMs <= 20000);
  assert.ok(first.endMs >= 19000 && first.endMs <= 19200, `cut in the quiet stretch, got ${first.endMs}`);
  assert.equal(second.startMs, first.endMs - 1500, 'next window starts overlapMs before the cut');
  assert.equal(first.keepUntilMs, second.keepFromMs);
  assert.equal(first.keepUntilMs, first.endMs - 740);
  assert.not.equal(first.utteranceId, second.utteranceId);
  assert.equal(frameIndexAt(second, 0), second.startMs / 20, 'the overlap is the same audio as the end of the first window');
});

test('continuous speech for minutes: every window within the limit, consecutive windows overlap', () => {
  const { finals } = run([[500, 'silence'], [95000, 'speech'], [1000, 'silence']], { maxWindowMs: 28000 });
  assert.ok(finals.length >= 4);
  for (const w of finals) assert.ok(w.endMs - w.startMs <= 28000);
  for (let i = 1; i < finals.length; i++) {
    assert.equal(finals[i].startMs, finals[i - 1].endMs - 1500);
    assert.equal(finals[i].keepFromMs, finals[i - 1].keepUntilMs);
  }
  assert.equal(finals.at(-1)!.endMs, 500 + 95000 + 300);
});

test('offline mode: a cut that falls in a pause carries no overlap', () => {
  const { finals } = run(
    [[500, 'silence'], [17000, 'speech'], [400, 'silence'], [10000, 'speech'], [1000, 'silence']],
    { maxWindowMs: 20000, silenceMs: 600, trailingPadMs: 300, overlapOnlyInSpeech: true },
  );
  assert.equal(finals.length, 2);
  assert.equal(finals[1].startMs, finals[0].endMs);
  assert.equal(finals[0].keepUntilMs, undefined);
});

test('flush closes an open utterance', () => {
  const segmenter = new Segmenter();
  for (let f = 0; f < 100; f++) segmenter.push({ samples: new Int16Array(FRAME).fill(1000), isSpeech: true });
  const [w] = segmenter.flush();
  assert.equal(w.closedBy, 'flush');
  assert.equal(w.endMs, 2000);
  assert.equal(segmenter.flush().length, 0);
});

test('rejects frames of the wrong size and inconsistent options', () => {
  assert.throws(() => new Segmenter().push({ samples: new Int16Array(100), isSpeech: false }), /320 samples/);
  assert.throws(() => new Segmenter({ frameMs: 25 }), /frameMs/);
  assert.throws(() => new Segmenter({ silenceMs: 200, trailingPadMs: 300 }), /trailingPadMs/);
});

test.run();
