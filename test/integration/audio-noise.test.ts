/**
 * Audio conditioning under broadband noise, end to end (the runs of audio-conditioning.test.ts): under a
 * fan's hiss (10 and 5 dB SNR) only noise suppression helps: RNNoise on the track where its noise floor
 * calls for it (`auto`, the setting for rooms with fans; the VAD hears the denoised audio, so windows are cut at the pauses the
 * hiss hid) must bring both to ≤ 2 %, live and uploaded, where the other steps alone leave them > 50 %.
 * A waiting room's babble (speech, reversed) at 10 dB SNR no step removes: measured, and RNNoise must not
 * make it worse (at 5 dB both are lost). RNNoise's runs cover the fan in all three languages; the runs
 * without it (that the noise buries the words: the same noise in every language) and babble take one
 * language each, in turn.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BABBLE, FAN, format, LANGUAGES, measure } from '../support/conditioning-runs.ts';

/** One language per variant where one is enough: fan at 10 dB in en, at 5 dB in fa, babble in ar. */
const ONE_LANGUAGE: Record<string, string> = { fan10: 'en', fan5: 'fa', babble10: 'ar' };
const one = (variant: string) => [ONE_LANGUAGE[variant]];

test('under a fan\'s broadband hiss: RNNoise where the floor calls for it (auto) is what helps; babble nothing removes', async () => {
  const plain = await measure({ AUDIO_NOISE_SUPPRESSION: 'off' }, 'fan-plain', [...FAN, ...BABBLE], one);
  // Two denoiser workers: one is busy the whole run (nine streams at full speed at once), and the test measures quality, not cost.
  const denoised = await measure({ AUDIO_NOISE_SUPPRESSION: 'auto', AUDIO_NOISE_SUPPRESSION_THREADS: '2' }, 'fan-auto', [...FAN, ...BABBLE], (variant) => (variant.startsWith('babble') ? one(variant) : LANGUAGES));
  assert.is(denoised.size, (FAN.length * LANGUAGES.length + BABBLE.length) * 2, 'every run with RNNoise measured');
  console.log(`fan, conditioning without RNNoise: ${format(plain)}\nfan, with RNNoise on auto:         ${format(denoised)}`);
  for (const [key, value] of denoised) {
    // Babble is speech: no step takes it out (measured, not a goal); it must not make things worse.
    if (key.includes('babble')) {
      assert.ok(value <= plain.get(key)! + 0.02, `${key}: RNNoise makes babble worse`);
      continue;
    }
    assert.ok(value <= 0.02, `${key}: WER ${(value * 100).toFixed(1)} % with RNNoise`);
  }
  // Without it the hiss buries the words: the corpus tests noise suppression, not the recognizer.
  const fanWithout = [...plain].filter(([key]) => key.includes('fan'));
  assert.is(fanWithout.length, FAN.length * 2, 'the fan without RNNoise measured live and uploaded');
  for (const [key, value] of fanWithout) assert.ok(value > 0.5, `${key}: ${(value * 100).toFixed(1)} % without RNNoise`);
});

test.run();
