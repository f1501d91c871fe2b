import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isHallucinated, recognizedWords } from '../../src/stt/recognized-words.ts';
import { DEFAULT_THRESHOLDS } from '../../src/stt/recognized-words.ts';
import { readAnswer, RecognizerRefused, type ResponseFormat } from '../../src/stt/recognizer-answer.ts';

const words = suite('recognized words');
const window = { startMs: 10000, endMs: 14000 };

words('word timestamps become absolute track times', () => {
  const out = recognizedWords({ text: 'chest pain', words: [{ word: ' chest', start: 0.5, end: 0.9 }, { word: ' pain', start: 1, end: 1.4 }], segments: [] }, window);
  assert.equal(out, { words: [{ word: 'chest', startMs: 10500, endMs: 10900 }, { word: 'pain', startMs: 11000, endMs: 11400 }], timed: true });
});

words('a silent-window hallucination is dropped (no_speech_prob high, avg_logprob low)', () => {
  const out = recognizedWords({
    text: 'Thank you for watching!',
    words: [{ word: 'Thank', start: 0, end: 0.3 }, { word: 'you', start: 0.3, end: 0.5 }],
    segments: [{ start: 0, end: 2, text: 'Thank you for watching!', noSpeechProb: 0.93, avgLogprob: -1.3, compressionRatio: 1.1 }],
  }, window);
  assert.equal(out.words, []);
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
  assert.equal(out.words.map((w) => w.word), ['aspirin']);
});

words('confident speech with a high no_speech_prob is kept (both conditions are needed)', () => {
  assert.not.ok(isHallucinated({ start: 0, end: 1, text: 'ok', noSpeechProb: 0.8, avgLogprob: -0.3 }, DEFAULT_THRESHOLDS));
});

words('without word timestamps, words are laid over their segment in order, by length', () => {
  const out = recognizedWords({ text: 'left arm', segments: [{ start: 1, end: 2, text: ' left arm' }] }, window);
  assert.is(out.timed, false);
  assert.equal(out.words.map((w) => w.word), ['left', 'arm']);
  const [left, arm] = out.words;
  assert.ok(left.startMs === 11000 && left.endMs <= arm.startMs && arm.endMs <= 12000, JSON.stringify(out.words));
  assert.ok(left.endMs - left.startMs > arm.endMs - arm.startMs, 'the longer word gets the longer share');
});

words('plain json answers (text only) are laid over the speech the VAD heard, not the pauses', () => {
  const out = recognizedWords({ text: 'one two three' }, { ...window, speech: [[10500, 11000], [13000, 13600]] });
  assert.is(out.timed, false);
  for (const w of out.words) {
    const inside = (t: number) => (t >= 10500 && t <= 11000) || (t >= 13000 && t <= 13600);
    assert.ok(inside(w.startMs) && inside(w.endMs) || (w.startMs <= 11000 && w.endMs >= 13000), `${w.word} ${w.startMs}–${w.endMs} in speech`);
  }
  assert.is(out.words[0].startMs, 10500);
  assert.ok(out.words[2].endMs <= 13600 && out.words[2].startMs >= 13000);
});

words('without speech stretches, text is laid over the whole window', () => {
  const out = recognizedWords({ text: 'one two' }, window);
  assert.is(out.words[0].startMs, 10000);
  assert.ok(out.words[1].endMs <= 14000 && out.words[1].endMs > 13000);
});

const answers = suite('recognizer answers');

answers('OpenAI verbose_json: top-level words; json and text', () => {
  const t = readAnswer({ task: 'transcribe', text: ' chest pain', words: [{ word: 'chest', start: 0.1, end: 0.5 }, { word: 'pain', start: 0.6, end: 0.9 }], segments: [{ id: 0, start: 0, end: 1, text: ' chest pain', avg_logprob: -0.2, no_speech_prob: 0.01, compression_ratio: 1 }] }, 'verbose_json');
  assert.equal(t.words, [{ word: 'chest', start: 0.1, end: 0.5 }, { word: 'pain', start: 0.6, end: 0.9 }]);
  assert.is(t.segments![0].noSpeechProb, 0.01);
  assert.equal(readAnswer({ text: 'chest pain', usage: { type: 'tokens' } }, 'json'), { text: 'chest pain' });
  assert.equal(readAnswer('chest pain\n', 'text'), { text: 'chest pain' });
});

answers('whisper.cpp: sub-word tokens inside segments become words; vLLM: duration as a string, no words', () => {
  const cpp = readAnswer({ text: ' hypertension today', segments: [{ id: 0, text: ' hypertension today', start: 0, end: 2, words: [{ word: ' hyper', start: 0.1, end: 0.4, t_dtw: -1, probability: 0.9 }, { word: 'tension', start: 0.4, end: 0.8 }, { word: ' today', start: 1, end: 1.3 }] }] }, 'verbose_json');
  assert.equal(cpp.words, [{ word: 'hypertension', start: 0.1, end: 0.8 }, { word: 'today', start: 1, end: 1.3 }]);
  const vllm = readAnswer({ duration: '2.5', language: 'en', text: 'ok', segments: [{ id: 0, seek: 0, start: '0.0', end: 2.5, text: 'ok', tokens: [] }], words: null }, 'verbose_json');
  assert.is(vllm.words, undefined);
  assert.is(vllm.segments![0].start, 0);
});

answers('words out of order or overlapping are put in order; end never before start', () => {
  const t = readAnswer({ text: 'b a', words: [{ word: 'b', start: 1, end: 0.5 }, { word: 'a', start: 0.2, end: 1.2 }] }, 'verbose_json');
  assert.equal(t.words, [{ word: 'a', start: 0.2, end: 1.2 }, { word: 'b', start: 1, end: 1 }]);
});

answers('what is not a transcription is a refusal, with the recognizer\'s words', () => {
  const cases: [unknown, ResponseFormat, RegExp][] = [
    [undefined, 'json', /empty body/],
    ['', 'verbose_json', /empty body/],
    ['<!DOCTYPE html><html><body>502 Bad Gateway</body></html>', 'json', /text where JSON was expected: "<!DOCTYPE html>/],
    ['<html>oops</html>', 'text', /text where JSON was expected/],
    [{ error: 'failed to read WAV file' }, 'verbose_json', /an error: failed to read WAV file/],
    [{ results: [{ transcript: 'x' }] }, 'json', /not a transcription/],
    [{ text: 42 }, 'json', /not a transcription/],
  ];
  for (const [body, format, message] of cases) {
    try {
      readAnswer(body, format);
      assert.unreachable(`${JSON.stringify(body)} accepted`);
    } catch (error) {
      assert.instance(error, RecognizerRefused);
      assert.match((error as Error).message, message);
    }
  }
});

words.run();
answers.run();
