/**
 * `npm run bench:diarization`: how well and at what cost the in-process diarizer tells the speakers of
 * the corpus's single-track visits apart (en/fa/ar consultations and the three-person visit), live
 * (window by window, as the segmenter cuts finals) and over a whole recording (an upload).
 *  - DER: the share of reference speech time (the words' spans) given to the wrong speaker (after the
 *    best mapping of found speakers to true ones) or to none; turns span the pauses between words by
 *    design, so false alarms are not counted;
 *  - change error: for every change of speaker, how far the nearest boundary lies outside the pause
 *    between the two turns (0 inside it);
 *  - CPU: the diarizer's time per second of audio, as a share of one core for a real-time track, and as a
 *    ratio to the baseline measured in the same run (the VAD and segmenter of the same audio); and per
 *    upload hour (the features of every frame, then the whole-file pass).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CORPUS_DIR, ensureCorpus, FAMILY_VISIT_DIR, loadReference } from '../scripts/make-corpus.ts';
import { decodeWav } from '../src/audio/wav.ts';
import { WebRtcVad } from '../src/audio/vad.ts';
import { LiveDiarizer, RecordingDiarizer, type SpeakerTurn } from '../src/diarizer/diarizer.ts';
import { VoiceWindows } from '../src/segmenter/voice-windows.ts';

await ensureCorpus();
const FRAME = 320;

function der(turns: readonly SpeakerTurn[], words: readonly { startMs: number; endMs: number; speaker: string }[]): number {
  // Speech time per (found, true) pair, 10 ms steps; the best mapping is greedy on the largest overlaps.
  const overlap = new Map<string, number>();
  let total = 0;
  for (const word of words) {
    for (let t = word.startMs; t < word.endMs; t += 10) {
      total += 10;
      const found = turns.find((turn) => t >= turn.startMs && t < turn.endMs)?.speaker ?? 0;
      overlap.set(`${found}|${word.speaker}`, (overlap.get(`${found}|${word.speaker}`) ?? 0) + 10);
    }
  }
  const mapped = new Map<string, string>();
  const used = new Set<string>();
  for (const [key] of [...overlap].sort((a, b) => b[1] - a[1])) {
    const [found, truth] = key.split('|');
    if (found === '0' || mapped.has(found) || used.has(truth)) continue;
    mapped.set(found, truth);
    used.add(truth);
  }
  let right = 0;
  for (const [key, ms] of overlap) {
    const [found, truth] = key.split('|');
    if (mapped.get(found) === truth) right += ms;
  }
  return 1 - right / total;
}

function changeError(turns: readonly SpeakerTurn[], reference: { speaker: string; startMs: number; endMs: number }[]): number[] {
  const errors: number[] = [];
  for (let i = 1; i < reference.length; i++) {
    if (reference[i].speaker === reference[i - 1].speaker) continue;
    const pauseStart = Math.min(reference[i - 1].endMs, reference[i].startMs);
    const pauseEnd = Math.max(reference[i - 1].endMs, reference[i].startMs);
    const distances = turns.slice(1).map((t) => (t.startMs < pauseStart ? pauseStart - t.startMs : t.startMs > pauseEnd ? t.startMs - pauseEnd : 0));
    errors.push(Math.min(Infinity, ...distances));
  }
  return errors;
}

const rows: string[] = [];
for (const visit of ['en', 'fa', 'ar', FAMILY_VISIT_DIR]) {
  const reference = await loadReference(visit);
  const { samples } = decodeWav(await readFile(join(CORPUS_DIR, visit, 'mix.wav')));
  const audioS = samples.length / 16000;
  const maxSpeakers = visit === FAMILY_VISIT_DIR ? 3 : 2;
  const timed = (withDiarizers: boolean) => {
    const live = new LiveDiarizer({ maxSpeakers, frameMs: 20 });
    const recording = new RecordingDiarizer({ maxSpeakers, frameMs: 20 });
    const vad = new WebRtcVad(16000, 3);
    const liveTurns: SpeakerTurn[] = [];
    let diarizerMs = 0;
    const windows = new VoiceWindows(vad, { sampleRate: 16000 }, {
      window: (w) => {
        if (w.kind !== 'final' || !withDiarizers) return;
        const started = performance.now();
        liveTurns.push(...live.window(w.startMs, w.endMs, true));
        diarizerMs += performance.now() - started;
      },
      frame: withDiarizers ? (frame, isSpeech) => {
        const started = performance.now();
        live.frame(frame, isSpeech);
        recording.frame(frame, isSpeech);
        diarizerMs += performance.now() - started;
      } : undefined,
    });
    const started = performance.now();
    for (let i = 0; i < samples.length; i += FRAME) windows.push(samples.subarray(i, i + FRAME));
    void windows.flush();
    const totalMs = performance.now() - started;
    const recordingStarted = performance.now();
    const whole = withDiarizers ? recording.turns().turns : [];
    const recordingMs = performance.now() - recordingStarted;
    return { liveTurns, whole, totalMs, diarizerMs, recordingMs };
  };
  const baseline = timed(false);
  const measured = timed(true);
  // Each frame went to two diarizers (live and recording): half is one track's cost.
  const liveMsPerS = measured.diarizerMs / 2 / audioS;
  const words = reference.tracks.mix;
  const found = (turns: SpeakerTurn[]) => new Set(turns.map((t) => t.speaker)).size;
  const fmt = (errors: number[]) => `max ${Math.max(0, ...errors).toFixed(0)} ms, ${errors.filter((e) => e > 300).length}/${errors.length} over 300 ms`;
  rows.push(
    `${visit.padEnd(9)} ${audioS.toFixed(0)} s, ${new Set(words.map((w) => w.speaker)).size} voices | live: DER ${(der(measured.liveTurns, words) * 100).toFixed(1)} %, ${found(measured.liveTurns)} speakers, changes ${fmt(changeError(measured.liveTurns, reference.turns))}` +
      ` | recording: DER ${(der(measured.whole, words) * 100).toFixed(1)} %, ${found(measured.whole)} speakers, changes ${fmt(changeError(measured.whole, reference.turns))}` +
      ` | CPU ${liveMsPerS.toFixed(2)} ms per audio s = ${(liveMsPerS / 10).toFixed(3)} % of a core per real-time track, ${(liveMsPerS / (baseline.totalMs / audioS)).toFixed(2)}× the VAD+segmenter baseline; an upload hour ${(((liveMsPerS * audioS + measured.recordingMs) / audioS) * 3.6).toFixed(1)} CPU-s (features ${(liveMsPerS * 3.6).toFixed(1)} s, whole-file pass ${((measured.recordingMs / audioS) * 3.6).toFixed(2)} s)`,
  );
}
console.log(rows.join('\n'));
