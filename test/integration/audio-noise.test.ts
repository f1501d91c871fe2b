/**
 * Audio conditioning under broadband noise, end to end (the runs of audio-conditioning.test.ts): under a
 * fan's hiss (10 and 5 dB SNR) only noise suppression helps: the spectral suppressor (the default) and
 * RNNoise, each on the track where its noise floor calls for it (the VAD hears the denoised audio, so
 * windows are cut at the pauses the hiss hid), must bring both to ≤ 2 % (the corpus's WER, its languages
 * pooled; none above 5 %: a live run's windows follow its timing), live and uploaded, where the
 * other steps alone leave them > 50 %. A waiting room's babble (speech, reversed) at 10 dB SNR no step
 * removes: measured, and neither suppressor may make it worse (at 5 dB all are lost). The spectral
 * suppressor's fan runs are in all three languages; RNNoise's, the runs without suppression (that the
 * noise buries the words: the same noise in every language) and babble take one language each, in turn.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertCorpusWer, BABBLE, FAN, format, LANGUAGES, measure } from '../support/conditioning-runs.ts';

/** One language per variant where one is enough, in turn: without suppression fan at 10 dB in en, at 5 dB in fa, babble in ar. */
const ONE_LANGUAGE: Record<string, string> = { fan10: 'en', fan5: 'fa', babble10: 'ar' };
const one = (variant: string) => [ONE_LANGUAGE[variant]];
/** RNNoise's: the next language round. */
const NEXT: Record<string, string> = { en: 'fa', fa: 'ar', ar: 'en' };
const next = (variant: string) => [NEXT[ONE_LANGUAGE[variant]]];

test('under a fan\'s broadband hiss: a noise suppressor where the floor calls for it is what helps; babble nothing removes', async () => {
  const plain = await measure({ AUDIO_NOISE_SUPPRESSION: 'off' }, 'fan-plain', [...FAN, ...BABBLE], one);
  const spectral = await measure({ AUDIO_NOISE_SUPPRESSION: 'spectral' }, 'fan-spectral', [...FAN, ...BABBLE], (variant) => (variant.startsWith('babble') ? one(variant) : LANGUAGES));
  assert.is(spectral.size, (FAN.length * LANGUAGES.length + BABBLE.length) * 2, 'every run with the spectral suppressor measured');
  // Two denoiser workers: one is busy the whole run (streams at full speed at once), and the test measures quality, not cost.
  const rnnoise = await measure({ AUDIO_NOISE_SUPPRESSION: 'auto', AUDIO_NOISE_SUPPRESSION_THREADS: '2' }, 'fan-auto', [...FAN, ...BABBLE], next);
  assert.is(rnnoise.size, (FAN.length + BABBLE.length) * 2, 'every run with RNNoise measured');
  console.log(`fan, conditioning without noise suppression: ${format(plain)}\nfan, spectral suppressor:  ${format(spectral)}\nfan, RNNoise on auto:      ${format(rnnoise)}`);
  const babbleWithout = [...plain].filter(([key]) => key.includes('babble')).map(([, value]) => value);
  for (const [name, runs] of [['the spectral suppressor', spectral], ['RNNoise', rnnoise]] as const) {
    // Babble is speech: no step takes it out (measured, not a goal); a suppressor must not make it worse.
    for (const [key, value] of runs) if (key.includes('babble')) assert.ok(value <= Math.max(...babbleWithout) + 0.02, `${key}: ${name} makes babble worse`);
    const fan = new Map([...runs].filter(([key]) => key.includes('fan')));
    console.log(`fan, ${name}, the corpus's WER: ${await assertCorpusWer(fan, 0.02, name)}`);
  }
  // Without it the hiss buries the words: the corpus tests noise suppression, not the recognizer.
  const fanWithout = [...plain].filter(([key]) => key.includes('fan'));
  assert.is(fanWithout.length, FAN.length * 2, 'the fan without noise suppression measured live and uploaded');
  for (const [key, value] of fanWithout) assert.ok(value > 0.5, `${key}: ${(value * 100).toFixed(1)} % without noise suppression`);
});

test.run();
