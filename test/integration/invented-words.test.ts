/**
 * Whisper as it behaves in a clinic: the noisy consultations (coughs, doors and chairs scraped between
 * turns and just before a word) streamed live and uploaded in en/fa/ar, to a test recognizer that
 * answers every window without speech with a confident stock phrase or a loop, in the window's
 * language (no_speech_prob 0.25, avg_logprob −0.45: past the segment thresholds). The stored transcript
 * must hold every spoken word and nothing else: 0 invented, 0 lost.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadReference } from '../../scripts/make-corpus.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import type { SttServerOptions } from '../support/stt-server.ts';
import { completedTranscript, uploadedTranscript } from '../support/transcripts.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { wordErrorRate, type WerResult } from '../support/wer.ts';

const LANGUAGES = ['en', 'fa', 'ar'] as const;
const TRACKS = ['doctor', 'patient'] as const;
const HALLUCINATING: Partial<SttServerOptions> = { confidentHallucinations: true, noisyCorpus: true };
/** The gateway as deployed: speech check and filter on. */
const GUARDED = { STT_SPEECH_CHECK: 'silero' };

/** Both noisy tracks live; the finals viewers saw and the transcript stored once the session ends. */
async function live(h: Harness, sessionId: string, language: string): Promise<{ finals: string; stored: string }> {
  const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
  const token = await h.token('producer', sessionId);
  await Promise.all(
    TRACKS.map(async (track) => {
      const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/${language}/${track}-noisy` });
      const result = await streamChunks(ingestUrl(h.baseUrl, sessionId, track, { format: 'opus', role: track, language, access_token: token }), chunks, 0);
      assert.is(result.closeCode, 1000, result.closeReason);
    }),
  );
  await viewer.tracksEnded([...TRACKS], 120000);
  viewer.close();
  await fetch(`${h.baseUrl}/v1/sessions/${sessionId}/end`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` } });
  return { finals: viewer.transcript(), stored: await completedTranscript(h, sessionId) };
}

/** One noisy track uploaded (one person's recording: its bursts while the other speaks stand alone). */
function uploaded(h: Harness, language: string, track: string): Promise<string> {
  return uploadedTranscript(h, `${h.corpusDir}/${language}/${track}-noisy.wav`, language);
}

interface Outcome {
  label: string;
  result: WerResult;
  hypothesis: string;
  reference: string;
}

/** Every language, live (finals and stored) and, with `uploads`, each track uploaded. */
async function runAll(h: Harness, prefix: string, uploads = true): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  await Promise.all(
    LANGUAGES.map(async (language) => {
      const { tracks } = await loadReference(language);
      const add = (label: string, track: 'doctor' | 'patient' | 'mix', hypothesis: string) => {
        const reference = tracks[track].map((w) => w.word).join(' ');
        outcomes.push({ label: `${label} ${language}`, result: wordErrorRate(reference, hypothesis), hypothesis, reference });
      };
      const { finals, stored } = await live(h, `${prefix}-${language}`, language);
      add('live finals', 'mix', finals);
      add('live stored', 'mix', stored);
      if (uploads) for (const track of TRACKS) add(`upload ${track}`, track, await uploaded(h, language, track));
    }),
  );
  return outcomes.sort((a, b) => a.label.localeCompare(b.label));
}

function report(name: string, outcomes: Outcome[]): string {
  const invented = outcomes.reduce((sum, o) => sum + o.result.insertions + o.result.substitutions, 0);
  const lost = outcomes.reduce((sum, o) => sum + o.result.deletions + o.result.substitutions, 0);
  const line = `${name}: ${invented} invented, ${lost} lost words; ${outcomes.map((o) => `${o.label} ${(o.result.wer * 100).toFixed(2)}%`).join(', ')}`;
  process.stderr.write(`${line}\n`);
  return line;
}

function assertExact(outcomes: Outcome[]): void {
  for (const o of outcomes) {
    assert.is(o.result.insertions + o.result.substitutions + o.result.deletions, 0, `${o.label}: ${JSON.stringify(o.result)}\n  ref: ${o.reference}\n  hyp: ${o.hypothesis}`);
  }
}

async function metric(h: Harness, name: string): Promise<string> {
  return h.gateway.metrics.registry.getSingleMetricAsString(name);
}

test('without the speech check and the filter, the noisy corpus gets invented words (the defect, measured)', async () => {
  const h = await startHarness({ STT_SPEECH_CHECK: 'off', STT_HALLUCINATION_FILTER: 'false' }, HALLUCINATING);
  try {
    const outcomes = await runAll(h, 'unguarded');
    report('unguarded', outcomes);
    for (const o of outcomes) assert.ok(o.result.insertions > 0, `${o.label}: the bursts made the recognizer invent words`);
    assert.ok(h.stt.hallucinated > 0);
  } finally {
    await h.close();
  }
});

test('default: windows without speech are not sent; 0 invented and 0 lost words, live and uploaded, en/fa/ar', async () => {
  const h = await startHarness(GUARDED, HALLUCINATING);
  try {
    const outcomes = await runAll(h, 'guarded');
    report('speech check + filter', outcomes);
    assertExact(outcomes);
    assert.match(await metric(h, 'helssa_windows_skipped_total'), /kind="(final|speculative)"\} [1-9]/);
    assert.match(await metric(h, 'helssa_windows_skipped_total'), /kind="upload"\} [1-9]/);
    process.stderr.write(`windows sent ${h.stt.calls.filter((c) => !c.fileName.startsWith('probe.')).length}, hallucinated answers ${h.stt.hallucinated}\n`);
  } finally {
    await h.close();
  }
});

// The filter alone is the same code for live and uploaded windows (the window transcriber's): live only here.
test('every window sent (STT_SPEECH_MIN_MS=0): the filter takes out what the recognizer invents, timed words', async () => {
  const h = await startHarness({ ...GUARDED, STT_SPEECH_MIN_MS: '0' }, HALLUCINATING);
  try {
    const outcomes = await runAll(h, 'filtered', false);
    report('filter alone, word timestamps', outcomes);
    assertExact(outcomes);
    assert.ok(h.stt.hallucinated > 0, 'noise windows reached the recognizer');
    assert.match(await metric(h, 'helssa_hallucinations_dropped_total'), /reason="outside_speech"\} [1-9]/);
  } finally {
    await h.close();
  }
});

test('every window sent to a text-only recognizer: stock phrases and loops over weak speech are dropped', async () => {
  const h = await startHarness({ ...GUARDED, STT_SPEECH_MIN_MS: '0', STT_MODEL: 'gpt-4o-transcribe' }, { ...HALLUCINATING, dialect: 'openai-text-only', model: 'gpt-4o-transcribe' });
  try {
    const outcomes = await runAll(h, 'text-only', false);
    report('filter alone, no word timestamps', outcomes);
    assertExact(outcomes);
    assert.ok(h.stt.hallucinated > 0, 'noise windows reached the recognizer');
    const dropped = await metric(h, 'helssa_hallucinations_dropped_total');
    assert.match(dropped, /reason="phrase"\} [1-9]/);
    assert.match(dropped, /reason="loop"\} [1-9]/);
  } finally {
    await h.close();
  }
});

test.run();
