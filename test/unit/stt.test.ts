import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isHallucinated, recognizedWords } from '../../src/stt/recognized-words.ts';
import { DEFAULT_THRESHOLDS } from '../../src/stt/recognized-words.ts';
import { readAnswer, RecognizerRefused, type ResponseFormat } from '../../src/stt/recognizer-answer.ts';
import type { Transcription, TranscriptionRequest } from '../../src/stt/transcriber.ts';
import { WindowTranscriber, type RecheckableTranscriber } from '../../src/stt/window-transcriber.ts';
import type { AudioWindow } from '../../src/segmenter/segmenter.ts';

const words = suite('recognized words');
const window = { startMs: 10000, endMs: 14000 };

words('word timestamps become absolute track times', () => {
  const out = recognizedWords({ text: 'chest pain', words: [{ word: ' chest', start: 0.5, end: 0.9 }, { word: ' pain', start: 1, end: 1.4 }], segments: [] }, window);
  assert.equal(out, { words: [{ word: 'chest', startMs: 10500, endMs: 10900 }, { word: 'pain', startMs: 11000, endMs: 11400 }], timed: true, droppedBySegment: 0 });
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

words('segment times in another unit (LocalAI: nanoseconds) are ignored; the text is laid over the speech', () => {
  const out = recognizedWords({ text: 'left arm', segments: [{ start: 5e8, end: 1.9e9, text: ' left arm' }] }, { ...window, speech: [[10500, 11900]] });
  assert.equal(out.words.map((w) => w.word), ['left', 'arm']);
  assert.ok(out.words.every((w) => w.startMs >= 10500 && w.endMs <= 11900), JSON.stringify(out.words));
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

const refusals = suite('window transcriber: refusals');

/** A recognizer that refuses while `refusing` (and refuses window `badWindow` always); counts its calls. */
class RefusingRecognizer implements RecheckableTranscriber {
  refusing = true;
  badWindow = -1;
  calls: number[] = [];
  rechecks = 0;

  async transcribe(request: TranscriptionRequest): Promise<Transcription> {
    const id = request.audio[0];
    this.calls.push(id);
    await new Promise((r) => setTimeout(r, 5));
    if (this.refusing || id === this.badWindow) throw new RecognizerRefused('the recognizer refused the request (401): Incorrect API key provided', 401);
    return { text: `window${id}` };
  }

  async recheck(): Promise<void> {
    this.rechecks++;
    if (this.refusing) throw new RecognizerRefused('the recognizer refused the request (401): Incorrect API key provided', 401);
  }
}

function numbered(id: number): AudioWindow {
  const audio = new Int16Array(1600);
  audio[0] = id;
  return { id, utteranceId: id, kind: 'final', startMs: id * 1000, endMs: id * 1000 + 100, speech: [], audio };
}

const thresholds = DEFAULT_THRESHOLDS;

refusals('while the recognizer refuses, nothing is sent but one check per interval; then every window goes', async () => {
  const recognizer = new RefusingRecognizer();
  const states: (string | undefined)[] = [];
  const transcriber = new WindowTranscriber(recognizer, { concurrency: 1, sampleRate: 16000, thresholds, recheckMs: 30, onRefusal: (r) => states.push(r?.message) });
  const failures: string[] = [];
  const finals = [1, 2, 3, 4, 5].map((id) => transcriber.final(numbered(id), { onFailure: (e) => failures.push(`${id}:${e.name}`), onRecovered: () => undefined }));
  const upload = transcriber.upload({ ...numbered(9), speech: [] });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(recognizer.calls, [1], 'only the first window reached the recognizer');
  assert.ok(recognizer.rechecks >= 3, `checked every 30 ms (${recognizer.rechecks})`);
  assert.is(await transcriber.partial(numbered(7)), undefined, 'partials are skipped');
  assert.is(transcriber.refused?.status, 401);
  recognizer.refusing = false;
  const results = await Promise.all(finals);
  assert.equal(results.map((r) => r.words.map((w) => w.word).join(' ')), ['window1', 'window2', 'window3', 'window4', 'window5']);
  assert.is((await upload).words[0].word, 'window9');
  assert.equal(failures, ['1:RecognizerRefused'], 'one failure reported, for the window that was refused');
  assert.equal(states, ['the recognizer refused the request (401): Incorrect API key provided', undefined]);
  transcriber.close();
});

refusals('a window refused again after a passing check is given up; the others go on', async () => {
  const recognizer = new RefusingRecognizer();
  recognizer.refusing = false;
  recognizer.badWindow = 2;
  const transcriber = new WindowTranscriber(recognizer, { concurrency: 2, sampleRate: 16000, thresholds, recheckMs: 20 });
  const callbacks = { onFailure: () => undefined, onRecovered: () => undefined };
  const [one, two, three] = [1, 2, 3].map((id) => transcriber.final(numbered(id), callbacks));
  assert.instance(await two.catch((error) => error), RecognizerRefused);
  assert.is((await one).words[0].word, 'window1');
  assert.is((await three).words[0].word, 'window3');
  assert.is(recognizer.calls.filter((id) => id === 2).length, 2, 'tried once more after the check, not in a loop');
  transcriber.close();
});

refusals('shutdown while refusing: waiting finals and uploads reject at once', async () => {
  const recognizer = new RefusingRecognizer();
  const transcriber = new WindowTranscriber(recognizer, { concurrency: 1, sampleRate: 16000, thresholds, recheckMs: 60000 });
  const final = transcriber.final(numbered(1), { onFailure: () => undefined, onRecovered: () => undefined });
  const upload = transcriber.upload({ ...numbered(2) });
  await new Promise((r) => setTimeout(r, 50));
  transcriber.close();
  assert.instance(await final.catch((error) => error), Error);
  assert.instance(await upload.catch((error) => error), Error);
});

answers("a diarizing model's diarized_json: segments with speakers, words laid over each segment, speakers in track time", () => {
  const answer = {
    task: 'transcribe', duration: 6, text: 'Any fever? Yes, last night.',
    segments: [
      { type: 'transcript.text.segment', id: 'seg_1', start: 0.2, end: 1.4, text: 'Any fever?', speaker: 'doctor' },
      { type: 'transcript.text.segment', id: 'seg_2', start: 2.5, end: 4.1, text: 'Yes, last night.', speaker: 'A' },
    ],
    usage: { type: 'duration', seconds: 6 },
  };
  const t = readAnswer(answer, 'diarized_json');
  assert.equal(t.segments!.map((s) => s.speaker), ['doctor', 'A']);
  assert.is(t.words, undefined, 'no word timestamps');
  const out = recognizedWords(t, { startMs: 10000, endMs: 16000 });
  assert.is(out.timed, false);
  assert.equal(out.speakers, [{ label: 'doctor', startMs: 10200, endMs: 11400 }, { label: 'A', startMs: 12500, endMs: 14100 }]);
  assert.ok(out.words.slice(0, 2).every((w) => w.startMs >= 10200 && w.endMs <= 11400), 'the doctor\'s words inside their segment');
  assert.ok(out.words.slice(2).every((w) => w.startMs >= 12500 && w.endMs <= 14100), "the patient's words inside theirs");
  // Without segments (a backend that returns no speakers): words, and no speakers.
  assert.is(recognizedWords(readAnswer({ text: 'Any fever?', segments: [] }, 'diarized_json'), { startMs: 0, endMs: 2000 }).speakers, undefined);
});

words.run();
answers.run();
refusals.run();
