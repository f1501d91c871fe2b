/**
 * Audio conditioning before STT (`npm run bench:conditioning`), over the corpus's doctor and patient
 * tracks in en/fa/ar: the clean ones, the quiet ones (speech at −45 dBFS), the hum-laden ones (mains
 * hum with harmonics and a sub-bass rumble), the fan ones (broadband pink hiss) and the babble ones
 * (six reversed talkers), each at 10 and 5 dB SNR.
 *
 *  1. CPU: each step alone and all together over the windows the live VAD cuts, in ms of CPU per second
 *     of audio, and as % of a core per real-time track (a track sends about its own length to STT: the
 *     cost factor of `npm run bench`), against a baseline measured in the same run: copying the same
 *     windows' samples in and out (what any stage costs at least); and the two noise suppressors, which
 *     run on all of a track's audio as it streams (the spectral one, on by default, and RNNoise), each
 *     running all the time (their `auto` lets them go on a quiet track).
 *  2. Segmental SNR (20 ms frames, each clipped to [−10, 35] dB) of the audio sent to STT against the
 *     clean track, in the speech, with conditioning off and on (on: against the clean track through the
 *     same high-pass, so the filter's own phase shift is not counted as noise; the notch's dent in the
 *     voice is); for the hum, fan and babble variants also with a noise suppressor on the track, the
 *     spectral one and RNNoise (the windows then cut from the denoised audio, as the gateway does).
 *  3. Windows the VAD opens on noise alone (no word of the reference in them), with the VAD hearing the
 *     track as received, through the track filter (notched once hum is found), through the spectral
 *     suppressor and the track filter (what the gateway does by default), and through RNNoise and the
 *     track filter, against the clean track's; and the track filter's CPU per
 *     real-time track (it runs on all the audio, not only on windows).
 */
import { readFile } from 'node:fs/promises';
import { ensureCorpus, loadReference, type ReferenceWord } from '../scripts/make-corpus.ts';
import { conditionWindow, DEFAULT_CONDITIONER_OPTIONS, type ConditionerOptions } from '../src/audio/conditioner.ts';
import { FilteredVad, WebRtcVad, type VoiceActivityDetector } from '../src/audio/vad.ts';
import { decodeWav } from '../src/audio/wav.ts';
import { denoiseWhole, Rnnoise, streamOn, type StreamDenoiser } from '../src/audio/noise-suppressor.ts';
import { SpectralDenoiser } from '../src/audio/spectral-denoiser.ts';
import type { AudioWindow } from '../src/segmenter/segmenter.ts';
import { VoiceWindows } from '../src/segmenter/voice-windows.ts';

const RATE = 16000;
const corpusDir = await ensureCorpus();
const LANGUAGES = ['en', 'fa', 'ar'];
const TRACKS = ['doctor', 'patient'] as const;
const VARIANTS = ['', '-quiet', '-hum10', '-hum5', '-fan10', '-fan5', '-babble10', '-babble5'];
const ALL: ConditionerOptions = { ...DEFAULT_CONDITIONER_OPTIONS, sampleRate: RATE };
const NONE: ConditionerOptions = { ...ALL, highPassHz: 0, humNotch: false, normalize: false };
const STEPS: Record<string, ConditionerOptions> = {
  'high-pass': { ...NONE, highPassHz: ALL.highPassHz },
  'hum detect + notch': { ...NONE, humNotch: true },
  'normalize + limiter': { ...NONE, normalize: true },
  'all steps': ALL,
};

interface Track {
  name: string;
  samples: Int16Array;
  clean: Int16Array;
  words: ReferenceWord[];
}

async function load(): Promise<Track[]> {
  const tracks: Track[] = [];
  for (const language of LANGUAGES) {
    const reference = await loadReference(language);
    for (const track of TRACKS) {
      const clean = decodeWav(await readFile(`${corpusDir}/${language}/${track}.wav`)).samples;
      for (const variant of VARIANTS) {
        const samples = variant ? decodeWav(await readFile(`${corpusDir}/${language}/${track}${variant}.wav`)).samples : clean;
        tracks.push({ name: `${language}/${track}${variant}`, samples, clean, words: reference.tracks[track] });
      }
    }
  }
  return tracks;
}

const rnnoise = await Rnnoise.load();
/** The noise suppressors, each a track's stream running all the time. */
const SUPPRESSORS = { spectral: () => streamOn(new SpectralDenoiser()), RNNoise: () => rnnoise.stream() } satisfies Record<string, () => StreamDenoiser>;
type Suppressor = keyof typeof SUPPRESSORS;

/**
 * The final windows the live VAD (hearing the track as received, or through the track filter) and
 * segmenter cut from `samples`; with `denoised`, the track goes through that suppressor first (the windows too).
 */
function windowsOf(samples: Int16Array, filtered = false, denoised?: Suppressor): AudioWindow[] {
  const windows: AudioWindow[] = [];
  const vad: VoiceActivityDetector = filtered ? new FilteredVad(new WebRtcVad(RATE, 2), ALL) : new WebRtcVad(RATE, 2);
  const cutter = new VoiceWindows(vad, { sampleRate: RATE }, { window: (w) => void (w.kind === 'final' && windows.push(w)) }, denoised && SUPPRESSORS[denoised]());
  for (let i = 0; i < samples.length; i += 320) cutter.push(samples.subarray(i, i + 320));
  void cutter.close();
  return windows;
}

const relative = (w: AudioWindow): [number, number][] => w.speech.map(([a, b]) => [a - w.startMs, b - w.startMs]);

function cpuMs(run: () => void): number {
  const before = process.cpuUsage();
  run();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

/** Segmental SNR of `test` against `clean` over the frames inside words, dB. */
function segmentalSnr(clean: Int16Array, test: Int16Array, words: ReferenceWord[]): number {
  const frame = RATE / 50;
  // The conditioned audio is louder or quieter as a whole: compare it at the clean speech's level.
  let cs = 0;
  let ts = 0;
  for (const w of words) for (let i = Math.round(w.startMs * 16); i < Math.round(w.endMs * 16); i++) [cs, ts] = [cs + clean[i] * clean[i], ts + test[i] * test[i]];
  const scale = Math.sqrt(cs / (ts || 1));
  let sum = 0;
  let count = 0;
  for (const w of words) {
    for (let f = Math.ceil((w.startMs * 16) / frame); (f + 1) * frame <= w.endMs * 16; f++) {
      let signal = 0;
      let error = 0;
      for (let i = f * frame; i < (f + 1) * frame; i++) {
        signal += clean[i] * clean[i];
        error += (clean[i] - test[i] * scale) ** 2;
      }
      sum += Math.max(-10, Math.min(35, 10 * Math.log10((signal + 1) / (error + 1))));
      count++;
    }
  }
  return sum / count;
}

const tracks = await load();
const cut = tracks.map((t) => ({ track: t, windows: windowsOf(t.samples) }));
const audioSeconds = cut.reduce((s, c) => s + c.windows.reduce((a, w) => a + w.audio.length, 0), 0) / RATE;

// 1. CPU, each configuration three times, alternated so drift on the machine hits them alike.
const totals = new Map<string, number>([['baseline (copy in and out)', 0], ...Object.keys(STEPS).map((k): [string, number] => [k, 0])]);
for (let round = 0; round < 3; round++) {
  totals.set('baseline (copy in and out)', totals.get('baseline (copy in and out)')! + cpuMs(() => {
    for (const { windows } of cut) for (const w of windows) Int16Array.from(Float32Array.from(w.audio));
  }));
  for (const [name, options] of Object.entries(STEPS)) {
    totals.set(name, totals.get(name)! + cpuMs(() => {
      for (const { windows } of cut) for (const w of windows) conditionWindow(w.audio, relative(w), options);
    }));
  }
}
const baseline = totals.get('baseline (copy in and out)')! / 3;
console.log(`cpu        ${audioSeconds.toFixed(0)} s of windows, ms of CPU per s of audio (% of a core per real-time track at 1× sent; × the baseline):`);
for (const [name, total] of totals) {
  const perSecond = total / 3 / audioSeconds;
  console.log(`           ${name.padEnd(28)} ${perSecond.toFixed(3)} ms/s  (${(perSecond / 10).toFixed(3)} %)  ${(total / 3 / baseline).toFixed(1)}×`);
}
// The suppressors run on all of a track's audio (not only its windows): over a third of the tracks (RNNoise is slow).
const sample = tracks.filter((_, i) => i % 3 === 0);
const sampleSeconds = sample.reduce((s, t) => s + t.samples.length, 0) / RATE;
const spectralMs = cpuMs(() => {
  for (const t of sample) denoiseWhole(new SpectralDenoiser(), t.samples);
}) / sampleSeconds;
const rnnoiseMs = cpuMs(() => {
  for (const t of sample) rnnoise.denoise(t.samples);
}) / sampleSeconds;
console.log(`           ${'spectral suppressor, track'.padEnd(28)} ${spectralMs.toFixed(3)} ms/s of track  (${(spectralMs / 10).toFixed(3)} %)`);
console.log(`           ${'RNNoise on the track (off)'.padEnd(28)} ${rnnoiseMs.toFixed(3)} ms/s of track  (${(rnnoiseMs / 10).toFixed(3)} %)  ${(rnnoiseMs / spectralMs).toFixed(0)}× the spectral suppressor`);

// 2. Segmental SNR, the whole track conditioned as one window per VAD window (as sent), off and on.
console.log('segsnr     segmental SNR against the clean track, in the speech (dB): off → on');
for (const variant of VARIANTS.filter(Boolean)) {
  const rows = cut.filter((c) => c.track.name.endsWith(variant));
  const snr = (options: ConditionerOptions, denoise?: Suppressor) => {
    let sum = 0;
    for (const { track, windows: asReceived } of rows) {
      const sent = new Int16Array(track.samples.length);
      for (const w of denoise ? windowsOf(track.samples, true, denoise) : asReceived) {
        const at = (w.startMs * RATE) / 1000;
        sent.set(conditionWindow(w.audio, relative(w), options).audio.subarray(0, sent.length - at), at);
      }
      const reference = options.highPassHz > 0 ? conditionWindow(track.clean, [], { ...NONE, highPassHz: options.highPassHz }).audio : track.clean;
      sum += segmentalSnr(reference, sent, track.words);
    }
    return sum / rows.length;
  };
  const denoised = /hum|fan|babble/.test(variant) ? ` (with the spectral suppressor first: ${snr(ALL, 'spectral').toFixed(1)}; with RNNoise: ${snr(ALL, 'RNNoise').toFixed(1)})` : '';
  console.log(`           ${variant.slice(1).padEnd(6)} ${snr(NONE).toFixed(1)} → ${snr(ALL).toFixed(1)}${denoised}`);
}

// 3. Windows opened on noise alone.
console.log('vad        windows opened on noise alone (no reference word in them), of all windows: VAD on the track as received / through the track filter (hum notch) / through the spectral suppressor and the track filter / through RNNoise and the track filter');
for (const variant of VARIANTS) {
  const rows = cut.filter((c) => (variant ? c.track.name.endsWith(variant) : !/-(quiet|hum\d+|fan\d+|babble\d+)$/.test(c.track.name)));
  const count = (windowsFor: (t: Track) => AudioWindow[]) => {
    let noise = 0;
    let all = 0;
    for (const { track } of rows) {
      for (const w of windowsFor(track)) {
        all++;
        if (!track.words.some((word) => word.endMs > w.startMs && word.startMs < w.endMs)) noise++;
      }
    }
    return `${noise}/${all}`;
  };
  const filtered = (t: Track) => windowsOf(t.samples, true);
  // RNNoise (slow) where it is meant to help, and on the clean tracks to show what it costs them.
  const denoised = !variant || /fan|babble/.test(variant) ? count((t) => windowsOf(t.samples, true, 'RNNoise')) : '—';
  console.log(`           ${(variant.slice(1) || 'clean').padEnd(6)} ${count((t) => windowsOf(t.samples))} / ${count(filtered)} / ${count((t) => windowsOf(t.samples, true, 'spectral'))} / ${denoised}`);
}
const trackSeconds = tracks.reduce((s, t) => s + t.samples.length, 0) / RATE;
const filterMs = (filtered: boolean) => cpuMs(() => {
  for (const t of tracks) {
    const vad: VoiceActivityDetector = filtered ? new FilteredVad({ isSpeech: () => false }, ALL) : { isSpeech: () => false };
    for (let i = 0; i + 320 <= t.samples.length; i += 320) vad.isSpeech(t.samples.subarray(i, i + 320));
  }
});
const plainMs = filterMs(false);
const filteredMs = filterMs(true) - plainMs;
console.log(`           track filter before the VAD: ${(filteredMs / trackSeconds).toFixed(3)} ms/s (${(filteredMs / trackSeconds / 10).toFixed(3)} % of a core per real-time track)`);
