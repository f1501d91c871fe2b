/**
 * Medical prompts and clinical term correction, per language and per visit: a session created with
 * its own vocabulary streams the consultation (en/fa/ar) to a recognizer that records every prompt and
 * mishears a few clinical terms (one letter off, as Whisper does rare drug names). Every prompt opens
 * with the language's clinical sentence and terms, carries the session's terms after them and the
 * previous final's last words at its end, and stays within Whisper's 224 tokens (counted with a real
 * tokenizer); the finals have the terms corrected, each keeping the recognizer's word in `original`.
 * A model that refuses prompts gets none, and the visit is transcribed all the same.
 */
import { readFile } from 'node:fs/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { TranscriptDocument } from '../../client-sdk/src/protocol.ts';
import { loadReference } from '../../scripts/make-corpus.ts';
import { parsePromptFile, WHISPER_PROMPT_TOKENS } from '../../src/stt/clinical-prompt.ts';
import { ClinicalPrompts, CLINICAL_PROMPTS_DIR } from '../../src/stt/clinical-vocabulary.ts';
import { normalizeText } from '../../src/transcript/words.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { wordErrorRate } from '../support/wer.ts';

const LANGUAGES = ['en', 'fa', 'ar'] as const;
const TRACKS = ['doctor', 'patient'] as const;
/** Terms of the corpus the recognizer mishears; the last of each language is only in the session's vocabulary. */
const MISHEARD: Record<string, Record<string, string>> = {
  en: { metformin: 'metfornin', lisinopril: 'lisinoprill', troponin: 'tropanin', Rahimi: 'Rahimy' },
  fa: { متفورمین: 'متفورمن', تروپونین: 'تروپونن', هموگلوبین: 'هموگلبین' },
  ar: { الميتفورمين: 'الميتفورمن', التروبونين: 'التروبونن', الهيموغلوبين: 'الهيموغلوبن' },
};
const VOCABULARY: Record<string, string[]> = { en: ['Rahimi', 'Ozempic', 'HbA1c'], fa: ['رحیمی', 'اوزمپیک'], ar: ['رحيمي', 'أوزمبيك'] };

/** At 4× real time a final is published before the next window goes, as at real time (at full speed every window of a track is in flight before the first final is back). */
async function visit(h: Harness, sessionId: string, language: string, vocabulary: string[], speed = 4): Promise<TranscriptDocument> {
  const service = { authorization: `Bearer ${await h.token('service')}`, 'content-type': 'application/json' };
  const created = await fetch(`${h.baseUrl}/v1/sessions`, { method: 'POST', headers: service, body: JSON.stringify({ id: sessionId, language, vocabulary }) });
  assert.is(created.status, 201, await created.clone().text());
  assert.equal((await created.json()).vocabulary, vocabulary);
  const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
  const token = await h.token('producer', sessionId);
  await Promise.all(TRACKS.map(async (track) => {
    const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/${language}/${track}` });
    await streamChunks(ingestUrl(h.baseUrl, sessionId, track, { format: 'opus', role: track, access_token: token }), chunks, speed);
  }));
  await viewer.tracksEnded([...TRACKS], 120000);
  viewer.close();
  const ended = await fetch(`${h.baseUrl}/v1/sessions/${sessionId}/end`, { method: 'POST', headers: { authorization: service.authorization } });
  assert.is((await ended.json()).state, 'completed');
  return (await fetch(`${h.baseUrl}/v1/sessions/${sessionId}/transcript`, { headers: { authorization: service.authorization } })).json();
}

test('prompts per language and visit: order, precedence, length; clinical terms corrected in finals with the original kept', async () => {
  const misspell = Object.assign({}, ...Object.values(MISHEARD));
  const h = await startHarness({}, { misspell });
  const prompts = await ClinicalPrompts.load();
  try {
    await Promise.all(LANGUAGES.map(async (language) => {
      const transcript = await visit(h, `prompts-${language}`, language, VOCABULARY[language]);
      const reference = await loadReference(language);
      const words = transcript.segments.flatMap((s) => s.words);
      // Every misheard term came back corrected, its misheard form kept; nothing else was changed.
      const text = transcript.segments.map((s) => s.text).join(' ');
      const wer = wordErrorRate(reference.tracks.mix.map((w) => w.word).join(' '), text);
      assert.is(wer.wer, 0, `${language}: ${JSON.stringify(wer)}\n${text}`);
      const corrected = words.filter((w) => w.original !== undefined);
      const expected = reference.tracks.mix.filter((w) => MISHEARD[language][w.word]);
      assert.is(corrected.length, expected.length, `${language}: ${JSON.stringify(corrected)}`);
      for (const w of corrected) assert.is(MISHEARD[language][w.word.replace(/[\p{P}]+$/u, '')], w.original!.replace(/[\p{P}]+$/u, ''), `${language}: ${w.original} → ${w.word}`);

      const defaults = parsePromptFile(await readFile(`${CLINICAL_PROMPTS_DIR}/${language}.txt`, 'utf8'));
      const calls = h.stt.calls.filter((c) => c.language === language && !c.fileName.startsWith('probe.'));
      assert.ok(calls.length > 10);
      const trackTexts = TRACKS.map((track) => normalizeText(reference.tracks[track].map((w) => w.word).join(' ')).join(' '));
      let continued = 0;
      for (const call of calls) {
        const prompt = call.prompt ?? '';
        assert.ok(prompts.countTokens(prompt) <= WHISPER_PROMPT_TOKENS, `${language}: ${prompts.countTokens(prompt)} tokens`);
        assert.ok(prompt.startsWith(defaults.lead), `${language}: opens with the clinical sentence: ${prompt.slice(0, 80)}`);
        assert.ok(prompt.includes(defaults.terms[0]), `${language}: the first default term is kept`);
        // The session's terms come after the defaults (nearer the audio) and are never dropped before them.
        const lastTerm = `${VOCABULARY[language].at(-1)}.`;
        const termList = prompt.slice(defaults.lead.length, prompt.indexOf(lastTerm) + lastTerm.length);
        const lastDefault = Math.max(...defaults.terms.map((t) => termList.indexOf(` ${t},`)));
        for (const term of VOCABULARY[language]) assert.ok(termList.indexOf(` ${term}`) > lastDefault, `${language}: "${term}" after the defaults in ${prompt}`);
        // What follows the terms is what was said before on the same track, in order.
        const previous = normalizeText(prompt.slice(prompt.indexOf(`${VOCABULARY[language].at(-1)}.`) + VOCABULARY[language].at(-1)!.length + 1)).join(' ');
        if (previous) {
          continued++;
          assert.ok(trackTexts.some((t) => t.includes(previous)), `${language}: "${previous}" is the track's own words`);
        }
      }
      // The first window of each track, partials before any stable word, and finals sent while the one
      // before them is still at the recognizer have nothing before them: how many do depends on timing.
      assert.ok(continued >= 3, `${language}: ${continued} of ${calls.length} prompts carry the previous words, e.g. ${calls.slice(-3).map((c) => c.prompt).join(' | ')}`);
    }));
  } finally {
    await h.close();
  }
});

test('a model that refuses prompts is found out at start and gets none: the visit is transcribed all the same', async () => {
  const h = await startHarness({ STT_MODEL: 'gpt-4o-transcribe-diarize' }, { dialect: 'openai-text-only', refusePrompt: true });
  try {
    const transcript = await visit(h, 'no-prompts', 'en', VOCABULARY.en, 0);
    const reference = await loadReference('en');
    assert.is(wordErrorRate(reference.tracks.mix.map((w) => w.word).join(' '), transcript.segments.map((s) => s.text).join(' ')).wer, 0);
    const windows = h.stt.calls.filter((c) => !c.fileName.startsWith('probe.'));
    assert.ok(windows.length > 0 && windows.every((c) => c.prompt === undefined && c.status === 200));
  } finally {
    await h.close();
  }
});

test.run();
