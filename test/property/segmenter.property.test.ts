/**
 * Segmenter invariants over random frame sequences and random valid configurations (fast-check), live
 * and offline mode alike:
 *  - every window is non-empty, its audio is exactly the frames of its span, finals are ordered and never
 *    longer than `maxWindowMs`;
 *  - every frame of a speech run long enough to open an utterance lies in some final window;
 *  - consecutive finals overlap only through a max-length seam, by at most `overlapMs`, and their
 *    `keepUntilMs`/`keepFromMs` meet at one point inside both, so the seams tile the timeline; or after
 *    an early commit, where the next window re-hears at most `preRollMs` of the committed window's
 *    non-speech tail, with its seam at the committed window's end;
 *  - a max-length cut with no overlap lies in a pause of at least `pauseCutMs` (or, offline, outside speech);
 *  - each window's `speech` lists exactly its speech frames, as ordered, disjoint stretches;
 *  - `flush()` at any point is safe, and a second `flush()` returns nothing;
 *  - speculative finals, committed at random moments or never: a final that `confirms` a speculative
 *    window starts where it does and adds no speech after it; a committed speculation closes its
 *    utterance at its end; every invariant above holds with speculation on.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Segmenter, type AudioWindow, type SegmenterOptions } from '../../src/segmenter/segmenter.ts';

const SAMPLE_RATE = 1000; // the segmenter only counts frames: a low rate keeps frames small

const options = fc
  .record({
    frameMs: fc.constantFrom(10, 20, 30),
    preRollFrames: fc.integer({ min: 0, max: 30 }),
    minSpeechFrames: fc.integer({ min: 1, max: 10 }),
    silenceFrames: fc.integer({ min: 1, max: 150 }),
    padShare: fc.double({ min: 0, max: 1, noNaN: true }),
    partialFrames: fc.integer({ min: 0, max: 100 }),
    maxFrames: fc.integer({ min: 40, max: 1000 }),
    cutShare: fc.double({ min: 0.02, max: 0.3, noNaN: true }),
    overlapShare: fc.double({ min: 0, max: 1, noNaN: true }),
    overlapOnlyInSpeech: fc.boolean(),
    pauseCutFrames: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 20 })),
    speculativeShare: fc.oneof(fc.constant(0), fc.double({ min: 0.01, max: 0.99, noNaN: true })),
  })
  .map((r): SegmenterOptions => {
    const f = r.frameMs;
    const cutSearch = Math.max(1, Math.floor(r.maxFrames * r.cutShare));
    const maxOverlap = Math.max(0, Math.ceil((r.maxFrames - cutSearch) / 2) - 1);
    return {
      sampleRate: SAMPLE_RATE,
      frameMs: f,
      preRollMs: r.preRollFrames * f,
      minSpeechMs: r.minSpeechFrames * f,
      silenceMs: r.silenceFrames * f,
      trailingPadMs: Math.floor(r.silenceFrames * r.padShare) * f,
      partialIntervalMs: r.partialFrames * f,
      maxWindowMs: r.maxFrames * f,
      cutSearchMs: cutSearch * f,
      overlapMs: Math.floor(maxOverlap * r.overlapShare) * f,
      overlapOnlyInSpeech: r.overlapOnlyInSpeech,
      pauseCutMs: r.pauseCutFrames * f,
      speculativeSilenceMs: Math.floor(r.silenceFrames * r.speculativeShare) * f,
    };
  });

/** For each speculative window in turn: commit it this many frames later; undefined or past its life: never. */
const commits = fc.array(fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }), { maxLength: 60 });

/** Runs of speech or non-speech frames, each with a loudness (quiet speech and loud noise both occur). */
const script = fc.array(
  // Short runs as often as long ones: pauses shorter than the silence limit are where speculation lives.
  fc.record({ speech: fc.boolean(), frames: fc.oneof(fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 30 })), level: fc.integer({ min: 0, max: 20000 }) }),
  { minLength: 1, maxLength: 40 },
);

interface Run {
  windows: AudioWindow[];
  speechFlags: boolean[];
  frameSamples: number;
}

function replay(o: SegmenterOptions, runs: { speech: boolean; frames: number; level: number }[], stopAt: number, commitAfter: (number | undefined)[] = []): Run {
  const segmenter = new Segmenter(o);
  const frameSamples = (o.sampleRate * o.frameMs) / 1000;
  const windows: AudioWindow[] = [];
  const speechFlags: boolean[] = [];
  const due: { id: number; atFrame: number }[] = [];
  let speculations = 0;
  outer: for (const run of runs) {
    for (let i = 0; i < run.frames; i++) {
      if (speechFlags.length >= stopAt) break outer;
      for (const commit of due.filter((c) => c.atFrame === speechFlags.length)) windows.push(...segmenter.commitSpeculation(commit.id));
      const samples = new Int16Array(frameSamples);
      // Sample 0 carries the frame index, so a window's audio can be checked frame by frame.
      samples[0] = speechFlags.length % 32768;
      for (let s = 1; s < frameSamples; s++) samples[s] = Math.round(run.level * Math.sin(s + i));
      speechFlags.push(run.speech);
      for (const window of segmenter.push({ samples, isSpeech: run.speech })) {
        windows.push(window);
        const after = window.kind === 'speculative' ? commitAfter[speculations++] : undefined;
        if (after === 0) windows.push(...segmenter.commitSpeculation(window.id));
        else if (after !== undefined) due.push({ id: window.id, atFrame: speechFlags.length + after });
      }
    }
  }
  windows.push(...segmenter.flush());
  assert.equal(segmenter.flush(), [], 'a second flush returns nothing');
  return { windows, speechFlags, frameSamples };
}

/** Every invariant of the file header, over one replay. */
function assertWellFormed(o: SegmenterOptions, runs: { speech: boolean; frames: number; level: number }[], stopSeed: number, commitAfter: (number | undefined)[]): void {
  const total = runs.reduce((n, r) => n + r.frames, 0);
  const stopAt = stopSeed % (total + 1);
  const { windows, speechFlags, frameSamples } = replay(o, runs, stopAt, commitAfter);
  const f = o.frameMs;
  for (const w of windows) {
    assert.ok(w.endMs > w.startMs, `window ${w.id} is empty or negative: ${w.startMs}–${w.endMs}`);
    assert.ok(w.startMs >= 0 && w.endMs <= speechFlags.length * f, 'window inside the audio received');
    assert.equal(w.audio.length, ((w.endMs - w.startMs) / f) * frameSamples);
    for (let k = 0; k < (w.endMs - w.startMs) / f; k++) assert.equal(w.audio[k * frameSamples], (w.startMs / f + k) % 32768);
    const listed = new Set<number>();
    let previousEnd = -1;
    for (const [from, to] of w.speech) {
      assert.ok(from > previousEnd && to > from && from >= w.startMs && to <= w.endMs, `window ${w.id}: speech stretches ordered, disjoint, inside`);
      previousEnd = to;
      for (let t = from; t < to; t += f) listed.add(t / f);
    }
    for (let frame = w.startMs / f; frame < w.endMs / f; frame++) assert.is(listed.has(frame), speechFlags[frame], `window ${w.id}: frame ${frame} speech flag listed`);
  }
  const finals = windows.filter((w) => w.kind === 'final');
  for (const w of finals) assert.ok(w.endMs - w.startMs <= o.maxWindowMs, 'final within maxWindowMs');
  for (const w of windows.filter((x) => x.kind === 'speculative')) {
    assert.ok(o.speculativeSilenceMs > 0 && w.endMs - w.startMs <= o.maxWindowMs, 'speculative windows only when on, within maxWindowMs');
    assert.not.ok(speechFlags[w.endMs / f - 1] === undefined, 'inside the audio');
  }
  for (const final of finals.filter((w) => w.confirms !== undefined)) {
    const speculative = windows.find((w) => w.id === final.confirms);
    assert.ok(speculative && speculative.kind === 'speculative' && speculative.utteranceId === final.utteranceId && speculative.id < final.id, 'confirms a speculative window of its utterance');
    assert.is(speculative!.startMs, final.startMs, 'from the same start');
    assert.ok(speculative!.endMs <= final.endMs, 'the final adds to its end');
    for (let t = speculative!.endMs; t < final.endMs; t += f) assert.not.ok(speechFlags[t / f], `speech at ${t} ms after the speculative window ${speculative!.id} its final ${final.id} confirms`);
    for (let t = final.startMs; t < final.endMs; t += f) assert.not.ok(windows.some((w) => w.kind === 'final' && w !== final && w.startMs <= t && t < w.endMs && w.keepFromMs === undefined && final.keepFromMs === undefined), 'no other final covers its audio');
  }
  const last = finals.at(-1);
  if (last?.keepUntilMs !== undefined) {
    for (let t = last.keepUntilMs; t < last.endMs; t += f) assert.not.ok(speechFlags[t / f], `speech at ${t} ms past the last seam`);
  }
  for (let i = 1; i < finals.length; i++) {
    const [prev, next] = [finals[i - 1], finals[i]];
    // A window after a seam may end before the cut window did (the utterance ended within the
    // overlap), but never at its seam: it would own no audio.
    assert.ok(next.startMs >= prev.startMs && (next.keepFromMs === undefined ? next.endMs > prev.endMs : next.endMs > next.keepFromMs), 'finals in order');
    if (next.keepFromMs !== undefined && prev.keepUntilMs === undefined) {
      assert.ok(prev.closedBy === 'silence', `final ${next.id} overlaps final ${prev.id}, which no pause closed`);
      assert.is(next.keepFromMs, prev.endMs, 'the seam after a pause is the previous window end');
      assert.ok(next.startMs < prev.endMs, 'the next window reaches back into the previous one');
      if (prev.endMs - next.startMs > o.preRollMs) {
        // Further than its pre-roll only to send a short pause whole: from the previous speech on.
        assert.ok(next.startMs > 0 && speechFlags[next.startMs / f - 1], `final ${next.id} starts at the pause after ${prev.id}'s speech`);
        let speech = next.startMs / f;
        while (!speechFlags[speech]) speech++;
        assert.ok(speech * f - next.startMs <= Math.min(o.silenceMs + o.preRollMs, o.maxWindowMs / 2), `the pause before final ${next.id} is short`);
      }
      for (let t = next.startMs; t < prev.endMs; t += f) assert.not.ok(speechFlags[t / f], `speech at ${t} ms heard by both ${prev.id} and ${next.id}`);
    } else if (next.keepFromMs !== undefined) {
      assert.equal(next.keepFromMs, prev.keepUntilMs, 'a seam is shared by the two windows of a cut');
      assert.ok(next.keepFromMs >= next.startMs && next.keepFromMs <= prev.endMs, 'the seam lies in the overlap');
      assert.ok(prev.endMs - next.startMs <= o.overlapMs, 'overlap at most overlapMs');
    } else {
      assert.ok(next.startMs >= prev.endMs, `finals ${prev.id} and ${next.id} overlap without a seam`);
      // (A cut with an overlap whose second half held no speech sends no window after it: the next one,
      // a new utterance, may then start at the cut.)
      if (prev.closedBy === 'max-length' && prev.keepUntilMs === undefined && o.overlapMs > 0 && !o.overlapOnlyInSpeech) {
        // Cut with no overlap in live mode: only in a pause, the cut inside its stretch of non-speech.
        assert.ok(o.pauseCutMs > 0, 'no overlap without a pause rule');
        const cut = prev.endMs / f;
        let from = cut;
        while (from > 0 && !speechFlags[from - 1]) from--;
        let to = cut;
        while (to < speechFlags.length && !speechFlags[to]) to++;
        assert.ok(to - from >= Math.ceil(o.pauseCutMs / f) || to === speechFlags.length, `cut at ${prev.endMs} ms is in a pause of ${(to - from) * f} ms`);
      }
      // A cut whose second half held no speech sends no second window: nothing may lie past its seam.
      if (prev.keepUntilMs !== undefined) {
        for (let t = prev.keepUntilMs; t < prev.endMs; t += f) assert.not.ok(speechFlags[t / f], `speech at ${t} ms past a seam with no window after it`);
      }
    }
  }
  // Every frame of a speech run that can open an utterance (≥ minSpeech frames) is in a final window.
  const minRun = o.minSpeechMs / f;
  for (let start = 0; start < speechFlags.length; ) {
    if (!speechFlags[start]) {
      start++;
      continue;
    }
    let end = start;
    while (end < speechFlags.length && speechFlags[end]) end++;
    if (end - start >= minRun) {
      for (let frame = start; frame < end; frame++) {
        const t = frame * f;
        assert.ok(finals.some((w) => w.startMs <= t && t < w.endMs), `speech frame ${frame} is in no final window`);
      }
    }
    start = end;
  }
}

test('segmenter: windows are well formed, ordered, and cover every utterance speech frame', () => {
  fc.assert(fc.property(options, script, fc.nat(), commits, assertWellFormed), { numRuns: 400, seed: 20261127 });
});

test('segmenter: speech resuming just after an early commit is heard whole, its pre-roll re-hearing only silence', () => {
  // Utterances separated by pauses around the speculative silence, each speculation committed at once or
  // within a few frames: the next utterance often starts within the pre-roll of the committed window's end.
  const conversation = fc.array(
    fc.tuple(fc.integer({ min: 1, max: 120 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 20000 })),
    { minLength: 1, maxLength: 20 },
  ).map((turns) => turns.flatMap(([speech, pause, level]) => [{ speech: true, frames: speech, level }, { speech: false, frames: pause, level: 0 }]));
  const soon = fc.array(fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined, freq: 4 }), { maxLength: 30 });
  const speculating = options.filter((o) => o.speculativeSilenceMs > 0 && o.preRollMs > 0);
  fc.assert(fc.property(speculating, conversation, fc.constant(Number.MAX_SAFE_INTEGER), soon, assertWellFormed), { numRuns: 300, seed: 20261201 });
});

test('segmenter: after a cut with overlap whose second half holds no speech, a new utterance may start at the cut', () => {
  // Found by fast-check: the cut's remainder ends before its seam (a speculation committed at once), so
  // no window follows the cut; the next speech opens a new utterance at the cut, with no overlap.
  const o: SegmenterOptions = { sampleRate: 1000, frameMs: 10, preRollMs: 50, minSpeechMs: 10, silenceMs: 150, trailingPadMs: 0, partialIntervalMs: 0, maxWindowMs: 400, cutSearchMs: 10, overlapMs: 80, overlapOnlyInSpeech: false, pauseCutMs: 0, speculativeSilenceMs: 90 };
  const runs = [[true, 1], [false, 20], [true, 27], [false, 10], [true, 13], [false, 5]].map(([speech, frames]) => ({ speech: speech as boolean, frames: frames as number, level: 1 }));
  assertWellFormed(o, runs, Number.MAX_SAFE_INTEGER, [undefined, 0]);
  const finals = replay(o, runs, Number.MAX_SAFE_INTEGER, [undefined, 0]).windows.filter((w) => w.kind === 'final');
  assert.ok(finals.some((w, i) => i > 0 && w.keepFromMs === undefined && finals[i - 1].keepUntilMs !== undefined && w.startMs === finals[i - 1].endMs), 'the shape this test is for');
});

test('segmenter: the upload crash shape (max-length cut in a pause, file ends before the silence limit)', () => {
  // 29.5 s of speech, then 1 s of quiet: offline mode cuts at 30 s in the pause without overlap.
  const o: Partial<SegmenterOptions> = { maxWindowMs: 30000, cutSearchMs: 4000, silenceMs: 2000, overlapMs: 1500, overlapOnlyInSpeech: true, partialIntervalMs: 0 };
  const segmenter = new Segmenter(o);
  const windows: AudioWindow[] = [];
  for (let i = 0; i < 1525; i++) windows.push(...segmenter.push({ samples: new Int16Array(320).fill(i < 1475 ? 4000 : 0), isSpeech: i < 1475 }));
  windows.push(...segmenter.flush());
  assert.ok(windows.length >= 1);
  for (const w of windows) assert.ok(w.endMs > w.startMs);
});

test.run();
