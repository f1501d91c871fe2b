/**
 * The diarizer on the corpus's single-track visits (pure code, no sockets): the consultations' mixes in
 * en/fa/ar through the VAD and segmenter as a live track cuts them, and whole as an upload. Every word's
 * time must fall in a turn of its own speaker (one found speaker per true one), and every change of
 * speaker must have a boundary within 300 ms of the pause between the two turns. The three-person visit:
 * never more speakers than asked, every word in some turn.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CORPUS_DIR, ensureCorpus, FAMILY_VISIT_DIR, loadReference } from '../../scripts/make-corpus.ts';
import { WebRtcVad } from '../../src/audio/vad.ts';
import { decodeWav } from '../../src/audio/wav.ts';
import { LiveDiarizer, RecordingDiarizer, speakerOf, type SpeakerTurn } from '../../src/diarizer/diarizer.ts';
import { VoiceWindows } from '../../src/segmenter/voice-windows.ts';

async function diarize(visit: string, maxSpeakers: number): Promise<{ live: SpeakerTurn[]; recording: SpeakerTurn[] }> {
  const { samples } = decodeWav(await readFile(join(CORPUS_DIR, visit, 'mix.wav')));
  const live = new LiveDiarizer({ maxSpeakers, frameMs: 20 });
  const recording = new RecordingDiarizer({ maxSpeakers, frameMs: 20 });
  const turns: SpeakerTurn[] = [];
  const windows = new VoiceWindows(new WebRtcVad(16000, 3), { sampleRate: 16000 }, {
    window: (w) => void (w.kind === 'final' && turns.push(...live.window(w.startMs, w.endMs, true))),
    frame: (frame, isSpeech) => (live.frame(frame, isSpeech), recording.frame(frame, isSpeech)),
  });
  for (let i = 0; i < samples.length; i += 320) windows.push(samples.subarray(i, i + 320));
  void windows.flush();
  return { live: turns, recording: recording.turns().turns };
}

test.before(async () => {
  await ensureCorpus();
});

for (const language of ['en', 'fa', 'ar']) {
  test(`${language}: every word in its speaker's turn, every change within 300 ms of the pause (live and upload)`, async () => {
    const reference = await loadReference(language);
    const { live, recording } = await diarize(language, 2);
    for (const [name, turns] of [['live', live], ['upload', recording]] as const) {
      const found = new Map<string, number>();
      for (const word of reference.tracks.mix) {
        const speaker = speakerOf(turns, word.startMs, word.endMs)!;
        if (!found.has(word.speaker)) found.set(word.speaker, speaker);
        assert.is(speaker, found.get(word.speaker), `${name}: "${word.word}" at ${word.startMs} ms`);
      }
      assert.is(new Set(found.values()).size, 2, `${name}: two speakers`);
      for (let i = 1; i < reference.turns.length; i++) {
        const [before, after] = [reference.turns[i - 1], reference.turns[i]];
        if (before.speaker === after.speaker) continue;
        const near = turns.slice(1).some((t) => t.startMs >= before.endMs - 300 && t.startMs <= after.startMs + 300);
        assert.ok(near, `${name}: a boundary within 300 ms of the change at ${after.startMs} ms`);
      }
    }
  });
}

test('three voices, two or three asked for: never more speakers than asked, every word in a turn', async () => {
  const reference = await loadReference(FAMILY_VISIT_DIR);
  for (const maxSpeakers of [2, 3]) {
    const { live, recording } = await diarize(FAMILY_VISIT_DIR, maxSpeakers);
    for (const turns of [live, recording]) {
      assert.ok(new Set(turns.map((t) => t.speaker)).size <= maxSpeakers);
      for (const word of reference.tracks.mix) assert.ok(speakerOf(turns, word.startMs, word.endMs) !== undefined);
    }
  }
});

test.run();
