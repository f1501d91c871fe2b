/** Audio-conditioning runs shared by the conditioning tests: the noisy corpora live and uploaded, WER per variant. */
import { loadReference } from '../../scripts/make-corpus.ts';
import * as assert from 'uvu/assert';
import { startHarness, type Harness } from './harness.ts';
import { chunksFor, ingestUrl, streamChunks } from './producer.ts';
import { uploadedTranscript } from './transcripts.ts';
import { CaptionCollector } from './viewer.ts';
import { wordErrorRate } from './wer.ts';

export const LANGUAGES = ['en', 'fa', 'ar'] as const;
const TRACKS = ['doctor', 'patient'] as const;
export const VARIANTS = ['quiet', 'hum10', 'hum5'] as const;
export const FAN = ['fan10', 'fan5'] as const;
export const BABBLE = ['babble10'] as const;
export const OFF = { AUDIO_HIGH_PASS_HZ: '0', AUDIO_HUM_NOTCH: 'false', AUDIO_NORMALIZE: 'false', AUDIO_NOISE_SUPPRESSION: 'off' };

async function liveFinals(h: Harness, sessionId: string, language: string, variant: string): Promise<string> {
  const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
  const token = await h.token('producer', sessionId);
  await Promise.all(
    TRACKS.map(async (track) => {
      const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/${language}/${track}-${variant}` });
      const result = await streamChunks(ingestUrl(h.baseUrl, sessionId, track, { format: 'opus', role: track, language, access_token: token }), chunks, 0);
      assert.is(result.closeCode, 1000, result.closeReason);
    }),
  );
  // Streamed as fast as taken: with RNNoise on the event loop a visit's tracks take a while to go through under CI load.
  await viewer.tracksEnded([...TRACKS], 300000);
  viewer.close();
  return viewer.transcript();
}

/** WER per variant and language, live (both tracks) and uploaded (the doctor's track). */
/** `languagesOf`: the languages a variant is measured in (all three unless it says fewer). */
export async function measure(env: Record<string, string>, label: string, variants: readonly string[] = VARIANTS, languagesOf: (variant: string) => readonly string[] = () => LANGUAGES): Promise<Map<string, number>> {
  const h = await startHarness({ STT_SPEECH_CHECK: 'silero', ...env });
  const wer = new Map<string, number>();
  try {
    for (const variant of variants) {
      await Promise.all(
        languagesOf(variant).map(async (language) => {
          const { tracks } = await loadReference(language);
          const reference = (track: 'mix' | 'doctor') => tracks[track].map((w) => w.word).join(' ');
          wer.set(`live ${variant} ${language}`, wordErrorRate(reference('mix'), await liveFinals(h, `${label}-${variant}-${language}`, language, variant)).wer);
          wer.set(`upload ${variant} ${language}`, wordErrorRate(reference('doctor'), await uploadedTranscript(h, `${h.corpusDir}/${language}/doctor-${variant}.wav`, language)).wer);
        }),
      );
    }
  } finally {
    await h.close();
  }
  return wer;
}

/** A run's WER may be this high in one language; a live run's windows follow its timing (one word in a visit of 110 is 0.9 %). */
const ONE_LANGUAGE_BOUND = 0.05;

/**
 * Asserts the goal on runs keyed `<live|upload> <variant> <language>` (`measure`'s): per path and variant
 * the corpus's WER, its languages' words pooled (as WER is reported), at most `bound`, and no language
 * above ONE_LANGUAGE_BOUND. Returns the pooled figures, for the log.
 */
export async function assertCorpusWer(runs: Map<string, number>, bound: number, what: string): Promise<string> {
  const groups = new Map<string, { errors: number; words: number }>();
  for (const [key, wer] of runs) {
    const [path, variant, language] = key.split(' ');
    const { tracks } = await loadReference(language);
    const words = tracks[path === 'live' ? 'mix' : 'doctor'].length;
    const group = groups.get(`${path} ${variant}`) ?? { errors: 0, words: 0 };
    group.errors += wer * words;
    group.words += words;
    groups.set(`${path} ${variant}`, group);
    assert.ok(wer <= ONE_LANGUAGE_BOUND, `${key}: WER ${(wer * 100).toFixed(1)} % with ${what}`);
  }
  for (const [group, { errors, words }] of groups) assert.ok(errors / words <= bound, `${group}: corpus WER ${((errors / words) * 100).toFixed(1)} % with ${what}`);
  return [...groups].map(([group, { errors, words }]) => `${group} ${((errors / words) * 100).toFixed(1)}%`).join(', ');
}

export const format = (wer: Map<string, number>) => [...wer].map(([k, v]) => `${k} ${(v * 100).toFixed(1)}%`).join(', ');

