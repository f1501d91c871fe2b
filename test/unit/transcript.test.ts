import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Word } from '../../client-sdk/src/protocol.ts';
import { mergeAtSeam, mergeByText, wordLikeness, wordsBeforeSeam } from '../../src/transcript/seam-merger.ts';
import { Stabilizer } from '../../src/transcript/stabilizer.ts';
import { TrackCaptions } from '../../src/transcript/track-captions.ts';
import { normalizeWord } from '../../src/transcript/words.ts';

/** Words of a sentence, one every 500 ms from `fromMs`, each 400 ms long. */
function words(text: string, fromMs = 0): Word[] {
  return text.split(' ').map((word, i) => ({ word, startMs: fromMs + i * 500, endMs: fromMs + i * 500 + 400 }));
}
const text = (ws: readonly Word[]) => ws.map((w) => w.word).join(' ');
const jitter = (ws: Word[], ms: number) => ws.map((w, i) => ({ ...w, startMs: w.startMs + (i % 2 ? ms : -ms), endMs: w.endMs + (i % 2 ? ms : -ms) }));

const stabilizer = suite('stabilizer (LocalAgreement-2)');

stabilizer('a word is committed once two consecutive hypotheses agree on it', () => {
  const s = new Stabilizer();
  let r = s.update(words('the patient'));
  assert.equal(text(r.stable), '');
  assert.equal(text(r.unstable), 'the patient');
  r = s.update(words('the patient has'));
  assert.equal(text(r.stable), 'the patient');
  assert.equal(text(r.unstable), 'has');
  r = s.update(words('the patient has chest pain'));
  assert.equal(text(r.stable), 'the patient has');
  assert.equal(text(r.unstable), 'chest pain');
});

stabilizer('committed words never change, even when a later hypothesis revises them', () => {
  const s = new Stabilizer();
  s.update(words('the patient has'));
  s.update(words('the patient has chest'));
  const stableBefore = text(s.stable);
  const r = s.update(words('a patient had chest pain'));
  assert.ok(text(r.stable).startsWith(stableBefore), 'stable text only grows');
  assert.equal(text(s.finalize(words('a patient had chest pain today'))).startsWith(stableBefore), true);
});

stabilizer('a disagreeing tail stays unstable', () => {
  const s = new Stabilizer();
  s.update(words('the patient has chest'));
  const r = s.update(words('the patient was chased'));
  assert.equal(text(r.stable), 'the patient');
  assert.equal(text(r.unstable), 'was chased');
});

stabilizer('finalize keeps the committed words and appends the rest of the final hypothesis', () => {
  const s = new Stabilizer();
  s.update(words('good morning doctor'));
  s.update(words('good morning doctor I'));
  assert.equal(text(s.finalize(words('good morning doctor I have a cough'))), 'good morning doctor I have a cough');
});

stabilizer('punctuation and case do not block agreement', () => {
  const s = new Stabilizer();
  s.update(words('Good morning'));
  const r = s.update(words('good morning, doctor'));
  assert.equal(r.stable.length, 2);
});

stabilizer.run();

const seam = suite('seam merger');

seam('overlapping words are not doubled, words after the seam are kept', () => {
  const emitted = wordsBeforeSeam(words('one two three four five six'), 2250);
  assert.equal(text(emitted), 'one two three four five');
  const incoming = words('four five six seven eight', 1500);
  assert.equal(text([...emitted, ...mergeAtSeam(emitted, incoming, 2250)]), 'one two three four five six seven eight');
});

seam('timestamps that disagree by a few hundred ms still align', () => {
  const emitted = words('we will order an electrocardiogram');
  const incoming = jitter(words('an electrocardiogram and a troponin', 1500), 250);
  assert.equal(text(mergeAtSeam(emitted, incoming, 2000)), 'and a troponin');
});

seam('a repeated word is matched once, so a real repetition survives', () => {
  const emitted = words('no no');
  const incoming = words('no no no pain', 0);
  assert.equal(text(mergeAtSeam(emitted, incoming, 800)), 'no pain');
});

seam('a word the previous window cut off is recovered from the next one', () => {
  // The previous window heard "electro" cut at its edge and dropped it; the next window has it whole.
  const emitted = words('order an');
  const incoming = words('order an electrocardiogram today', 0);
  assert.equal(text(mergeAtSeam(emitted, incoming, 900)), 'electrocardiogram today');
});

seam('a different word at the time of an emitted one loses: finals never change', () => {
  const emitted = words('chest pain');
  const incoming = words('chest paint and', 0);
  assert.equal(text(mergeAtSeam(emitted, incoming, 900)), 'and');
});

seam('Persian and Arabic spellings of the same word align', () => {
  assert.equal(normalizeWord('يک'), normalizeWord('یک'));
  assert.equal(normalizeWord('كتاب،'), normalizeWord('کتاب'));
  const emitted = words('درد قفسه سينه');
  assert.equal(text(mergeAtSeam(emitted, words('قفسه سینه دارم', 500), 1000)), 'دارم');
});

seam('by text: pieces of words cut by an edge count as part of a match, in every script', () => {
  assert.is(wordLikeness('Metformin', 'metformin,'), 2);
  assert.is(wordLikeness('metfor', 'metformin'), 1);
  assert.is(wordLikeness('ormin', 'metformin'), 1);
  assert.is(wordLikeness('ي', 'في'), 1);
  assert.is(wordLikeness('m', 'metformin'), 0.5);
  assert.is(wordLikeness('aspirin', 'metformin'), -1);
  assert.is(wordLikeness('تروپو', 'تروپونین'), 1);
});

seam('by text: the incoming window goes on after the last published word, whatever its estimated times', () => {
  // The previous window: everything up to "troponin" published; "test an" (a piece) past its seam.
  const previous = words('I will order an electrocardiogram a troponin test an', 0);
  const incoming = words('ocardiogram a troponin test and a lipid panel', 9000); // times far off: only the text counts
  assert.equal(text(mergeByText(previous, 7, incoming)!), 'test and a lipid panel');
  // A word the incoming window heard only as a piece, past the published ones: the whole word is kept.
  assert.equal(text(mergeByText(words('we will check your hemoglobin'), 4, words('moglobin today'))!), 'hemoglobin today');
  // A word heard whole only by the previous window (the incoming one starts inside it) is not lost.
  assert.equal(text(mergeByText(words('shortness left ف'), 1, words('في منذ'))!), 'left في منذ');
  // Nothing in common: no opinion (the caller merges by time).
  assert.is(mergeByText(words('alpha beta'), 2, words('gamma delta')), undefined);
});

seam('by text: the words go on in time after the last published one', () => {
  const out = mergeByText(words('take aspirin every', 0), 2, words('every morning', 0))!;
  assert.equal(text(out), 'every morning');
  assert.ok(out[0].startMs >= words('take aspirin every', 0)[1].endMs);
});

seam.run();

const track = suite('track captions');

track('windows cut with overlap give each word exactly once, in order', () => {
  const reference = words('I will order an electrocardiogram a troponin test and a lipid panel today we will also check your hemoglobin');
  const cuts = [[0, 4000, undefined, 3250], [2500, 7000, 3250, 6250], [5500, 10000, 6250, undefined]] as const;
  const captions = new TrackCaptions();
  const out: Word[] = [];
  cuts.forEach(([startMs, endMs, keepFromMs, keepUntilMs], i) => {
    const heard = reference.filter((w) => w.startMs >= startMs && w.endMs <= endMs);
    out.push(...captions.final({ utteranceId: i + 1, startMs, endMs, keepFromMs, keepUntilMs }, jitter(heard, 120)));
  });
  assert.equal(text(out), text(reference));
});

track('partials of a continuation window skip words already final', () => {
  const captions = new TrackCaptions();
  const reference = words('please keep taking aspirin every morning');
  captions.final({ utteranceId: 1, startMs: 0, endMs: 2000, keepUntilMs: 1250 }, reference.filter((w) => w.endMs <= 2000));
  const window = { utteranceId: 2, startMs: 500, endMs: 3000, keepFromMs: 1250 };
  captions.partial(window, reference.filter((w) => w.startMs >= 500 && w.endMs <= 2600));
  const r = captions.partial(window, reference.filter((w) => w.startMs >= 500 && w.endMs <= 3000));
  assert.equal(text(r!.stable), 'aspirin every');
});

track('a partial that arrives after its utterance is final is ignored', () => {
  const captions = new TrackCaptions();
  captions.final({ utteranceId: 1, startMs: 0, endMs: 2000 }, words('hello'));
  assert.equal(captions.partial({ utteranceId: 1, startMs: 0, endMs: 1000 }, words('hello')), undefined);
});

track('the final of an utterance keeps what the partials made stable', () => {
  const captions = new TrackCaptions();
  const window = { utteranceId: 1, startMs: 0, endMs: 3000 };
  captions.partial(window, words('my left shoulder'));
  captions.partial(window, words('my left shoulder hurts'));
  assert.equal(text(captions.final(window, words('my loft shoulder hurts badly'))), 'my left shoulder hurts badly');
});

track.run();
