import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isHallucinated, recognizedWords } from '../../src/stt/recognized-words.ts';
import { DEFAULT_THRESHOLDS } from '../../src/stt/recognized-words.ts';

const words = suite('recognized words');
const window = { startMs: 10000, endMs: 14000 };

words('word timestamps become absolute track times', () => {
  const out = recognizedWords({ text: 'chest pain', words: [{ word: ' chest', start: 0.5, end: 0.9 }, { word: ' pain', start: 1, end: 1.4 }], segments: [] }, window);
  assert.equal(out, [{ word: 'chest', startMs: 10500, endMs: 10900 }, { word: 'pain', startMs: 11000, endMs: 11400 }]);
});

words('a silent-window hallucination is dropped (no_speech_prob high, avg_logprob low)', () => {
  const out = recognizedWords({
    text: 'Thank you for watching!',
    words: [{ word: 'Thank', start: 0, end: 0.3 }, { word: 'you', start: 0.3, end: 0.5 }],
    segments: [{ start: 0, end: 2, text: 'Thank you for watching!', noSpeechProb: 0.93, avgLogprob: -1.3, compressionRatio: 1.1 }],
  }, window);
  assert.equal(out, []);
});

words('a looping segment (high compression ratio) is dropped, the rest kept', () => {
  const out = recognizedWords({
    text: 'yes yes yes yes yes yes yes yes. aspirin',
    words: [{ word: 'yes', start: 0.1, end: 0.2 }, { word: 'aspirin', start: 3, end: 3.5 }],
    segments: [
      { start: 0, end: 2.5, text: 'yes yes yes yes yes yes yes yes.', noSpeechProb: 0.1, avgLogprob: -0.5, compressionRatio: 4.2 },
      { start: 2.5, end: 4, text: 'aspirin', noSpeechProb: 0.01, avgLogprob: -0.2, compressionRatio: 1 },
    ],
  }, window);
  assert.equal(out.map((w) => w.word), ['aspirin']);
});

words('confident speech with a high no_speech_prob is kept (both conditions are needed)', () => {
  assert.not.ok(isHallucinated({ start: 0, end: 1, text: 'ok', noSpeechProb: 0.8, avgLogprob: -0.3 }, DEFAULT_THRESHOLDS));
});

words('without word timestamps, words are spread over their segment', () => {
  const out = recognizedWords({ text: 'left arm', segments: [{ start: 1, end: 2, text: ' left arm' }] }, window);
  assert.equal(out, [{ word: 'left', startMs: 11000, endMs: 11500 }, { word: 'arm', startMs: 11500, endMs: 12000 }]);
});

words('plain json answers (text only) are spread over the window', () => {
  const out = recognizedWords({ text: 'one two' }, window);
  assert.equal(out.map((w) => [w.startMs, w.endMs]), [[10000, 12000], [12000, 14000]]);
});

words.run();
