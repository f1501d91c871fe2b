/**
 * Invariants of the diarizer and of the roles (fast-check, fixed seed):
 *  - whatever the audio (voices, noise, silence) and maxSpeakers: a window's turns are in order, cover it
 *    exactly, never name more speakers than asked, and a recording's turns likewise cover the file;
 *  - with distinct voices (random pitch and vowel colour, random turns and pauses): each turn's speech is
 *    labelled with one consistent speaker per voice, and a change of speaker is placed within 300 ms of
 *    the real one (live, window by window, and over a whole recording);
 *  - a final cut by speaker keeps every word once, in order, each run of one speaker;
 *  - a diarizing recognizer's labels become the track's speakers: one speaker per label, the one its
 *    segments overlap most (the label's name kept), numbered in order without local turns;
 *  - roles: a speaker's role never changes once decided, there is at most one doctor, and a doctor's
 *    enrolled print finds the doctor whoever speaks first;
 *  - prints: merging adds frames, merging a print with itself changes nothing, a stored print is valid.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { adoptLabels, LiveDiarizer, RecordingDiarizer, splitBySpeaker, VoicePrinter, type SpeakerTurn } from '../../src/diarizer/diarizer.ts';
import { RoleBook } from '../../src/diarizer/roles.ts';
import { isVoicePrint, mergePrints, voiceDistance } from '../../src/diarizer/voice-print.ts';

const RUNS = { numRuns: 40, seed: 20261201 };
const RATE = 16000;
const FRAME = 320;

interface Voice {
  pitchHz: number;
  /** Centre of the voice's strongest resonance (its vowel colour). */
  formantHz: number;
}

/** A voiced sound, source and filter: a pulse train at the pitch through a resonance (the vowel colour). */
function speak(voice: Voice, samples: number, rand: () => number): Float64Array {
  const out = new Float64Array(samples);
  const r = Math.exp((-Math.PI * 150) / RATE);
  const a1 = 2 * r * Math.cos((2 * Math.PI * voice.formantHz) / RATE);
  const a2 = -r * r;
  const period = (RATE / voice.pitchHz) * (1 + (rand() - 0.5) * 0.06);
  let next = rand() * period;
  let y1 = 0;
  let y2 = 0;
  for (let i = 0; i < samples; i++) {
    let x = 0;
    if (i >= next) {
      x = 1;
      next += period;
    }
    const y = x + a1 * y1 + a2 * y2;
    y2 = y1;
    y1 = y;
    out[i] = y * (1 - r);
  }
  return out;
}

function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

interface Visit {
  pcm: Int16Array;
  speech: Uint8Array;
  /** The true turns: voice index and span, ms. */
  turns: { voice: number; startMs: number; endMs: number }[];
}

/** Turns of random voices separated by pauses, as 16 kHz PCM with the true speech of each frame. */
function visit(voices: Voice[], plan: { voice: number; ms: number; pauseMs: number }[], seed: number): Visit {
  const rand = seeded(seed);
  const totalMs = plan.reduce((t, p) => t + p.ms + p.pauseMs, 400);
  const pcm = new Int16Array(Math.ceil((totalMs * RATE) / 1000 / FRAME) * FRAME);
  const speech = new Uint8Array(pcm.length / FRAME);
  const turns: Visit['turns'] = [];
  let t = 200;
  for (const p of plan) {
    const start = Math.round((t * RATE) / 1000 / FRAME) * FRAME;
    const sound = speak(voices[p.voice], Math.round((p.ms * RATE) / 1000 / FRAME) * FRAME, rand);
    for (let i = 0; i < sound.length; i++) pcm[start + i] = Math.round(sound[i] * 3000);
    speech.fill(1, start / FRAME, (start + sound.length) / FRAME);
    turns.push({ voice: p.voice, startMs: (start / RATE) * 1000, endMs: ((start + sound.length) / RATE) * 1000 });
    t += p.ms + p.pauseMs;
  }
  for (let i = 0; i < pcm.length; i++) pcm[i] += Math.round((rand() - 0.5) * 60);
  return { pcm, speech, turns };
}

function feed(target: { frame(samples: Int16Array, isSpeech: boolean): void }, v: Visit): void {
  for (let f = 0; f < v.speech.length; f++) target.frame(v.pcm.subarray(f * FRAME, (f + 1) * FRAME), v.speech[f] === 1);
}

function checkCover(turns: readonly SpeakerTurn[], startMs: number, endMs: number, maxSpeakers: number): void {
  if (turns.length === 0) return;
  assert.is(turns[0].startMs, startMs);
  assert.is(turns.at(-1)!.endMs, endMs);
  for (let i = 0; i < turns.length; i++) {
    assert.ok(turns[i].startMs <= turns[i].endMs, 'a turn ends after it starts');
    assert.ok(turns[i].speaker >= 1 && turns[i].speaker <= maxSpeakers, `speaker ${turns[i].speaker} within 1..${maxSpeakers}`);
    if (i > 0) {
      assert.is(turns[i].startMs, turns[i - 1].endMs, 'turns touch');
      assert.is.not(turns[i].speaker, turns[i - 1].speaker, 'a turn is a change of speaker');
    }
  }
}

/** Speaker of the middle of a span under the turns. */
const speakerAt = (turns: readonly SpeakerTurn[], ms: number) => turns.find((t) => ms >= t.startMs && ms < t.endMs)?.speaker;

/** Well-separated voices: a low and a high pitch, different vowel colours (a man and a woman). */
const distinctVoices = fc.tuple(fc.integer({ min: 85, max: 125 }), fc.integer({ min: 190, max: 240 }), fc.integer({ min: 500, max: 800 }), fc.integer({ min: 1400, max: 2000 }))
  .map(([low, high, f1, f2]): Voice[] => [{ pitchHz: low, formantHz: f1 }, { pitchHz: high, formantHz: f2 }]);
const turnPlan = fc.array(fc.record({ voice: fc.integer({ min: 0, max: 1 }), ms: fc.integer({ min: 1200, max: 3500 }), pauseMs: fc.integer({ min: 400, max: 1200 }) }), { minLength: 2, maxLength: 8 })
  .filter((plan) => new Set(plan.map((p) => p.voice)).size === 2);

test('turns cover each window in order with at most maxSpeakers, whatever the audio', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ voice: fc.integer({ min: 0, max: 3 }), ms: fc.integer({ min: 100, max: 3000 }), pauseMs: fc.integer({ min: 0, max: 1500 }) }), { minLength: 1, maxLength: 8 }),
      fc.array(fc.record({ pitchHz: fc.integer({ min: 70, max: 300 }), formantHz: fc.integer({ min: 300, max: 3000 }) }), { minLength: 4, maxLength: 4 }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.integer({ min: 200, max: 6000 }), { minLength: 1, maxLength: 6 }),
      fc.integer(),
      (plan, voices, maxSpeakers, cuts, seed) => {
        const v = visit(voices, plan, seed);
        const live = new LiveDiarizer({ maxSpeakers, frameMs: 20 });
        const recording = new RecordingDiarizer({ maxSpeakers, frameMs: 20 });
        feed({ frame: (s, speech) => (live.frame(s, speech), recording.frame(s, speech)) }, v);
        const durationMs = (v.speech.length * 20);
        let at = 0;
        for (const cut of cuts) {
          const end = Math.min(durationMs, at + cut);
          checkCover(live.window(at, end, true), at, end, maxSpeakers);
          at = end;
        }
        assert.ok(live.prints().length <= maxSpeakers);
        const whole = recording.turns();
        checkCover(whole.turns, 0, durationMs, maxSpeakers);
        assert.ok(whole.prints.length <= maxSpeakers);
      },
    ),
    RUNS,
  );
});

test('distinct voices: one consistent speaker per voice, changes placed within 300 ms (live and recording)', () => {
  fc.assert(
    fc.property(distinctVoices, turnPlan, fc.integer(), (voices, plan, seed) => {
      const v = visit(voices, plan, seed);
      const live = new LiveDiarizer({ maxSpeakers: 2, frameMs: 20 });
      const recording = new RecordingDiarizer({ maxSpeakers: 2, frameMs: 20 });
      feed({ frame: (s, speech) => (live.frame(s, speech), recording.frame(s, speech)) }, v);
      // Live: one final window per true turn (from the end of the previous speech), as the segmenter cuts at pauses.
      const liveTurns = v.turns.flatMap((turn, i) => live.window(i === 0 ? 0 : v.turns[i - 1].endMs, turn.endMs, true));
      for (const [name, turns] of [['live', liveTurns], ['recording', recording.turns().turns]] as const) {
        const label = new Map<number, number>();
        for (const turn of v.turns) {
          const speaker = speakerAt(turns, (turn.startMs + turn.endMs) / 2);
          assert.ok(speaker !== undefined, `${name}: the turn's middle has a speaker`);
          if (!label.has(turn.voice)) label.set(turn.voice, speaker!);
          assert.is(speaker, label.get(turn.voice), `${name}: voice ${turn.voice} keeps its speaker`);
        }
        assert.is(new Set(label.values()).size, 2, `${name}: two voices, two speakers`);
        // Every change of voice has a boundary within 300 ms of the pause between the turns.
        for (let i = 1; i < v.turns.length; i++) {
          if (v.turns[i].voice === v.turns[i - 1].voice) continue;
          const near = turns.some((t) => t.startMs >= v.turns[i - 1].endMs - 300 && t.startMs <= v.turns[i].startMs + 300);
          assert.ok(near, `${name}: a boundary near the change at ${v.turns[i].startMs} ms`);
        }
      }
    }),
    { ...RUNS, numRuns: 25 },
  );
});

test('a final cut by speaker keeps every word once, in order, one speaker per run', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ startMs: fc.integer({ min: 0, max: 20000 }), lengthMs: fc.integer({ min: 0, max: 800 }) }), { maxLength: 30 }),
      fc.array(fc.record({ speaker: fc.integer({ min: 1, max: 3 }), lengthMs: fc.integer({ min: 1, max: 5000 }) }), { maxLength: 6 }),
      (spans, plan) => {
        const words = spans.sort((a, b) => a.startMs - b.startMs).map((s, i) => ({ word: `w${i}`, startMs: s.startMs, endMs: s.startMs + s.lengthMs }));
        let t = 0;
        const turns = plan.map((p) => ({ speaker: p.speaker, startMs: t, endMs: (t += p.lengthMs) }));
        const runs = splitBySpeaker(words, turns);
        assert.equal(runs.flatMap((r) => r.words), words);
        for (let i = 1; i < runs.length; i++) assert.is.not(runs[i].speaker, runs[i - 1].speaker);
        for (const run of runs) assert.ok(run.words.length > 0);
      },
    ),
    RUNS,
  );
});

test("a diarizing recognizer's labels: one track speaker per label, the one it overlaps most", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ label: fc.constantFrom('A', 'B', 'C', 'doctor'), lengthMs: fc.integer({ min: 1, max: 4000 }) }), { minLength: 1, maxLength: 10 }),
      fc.array(fc.record({ speaker: fc.integer({ min: 1, max: 3 }), lengthMs: fc.integer({ min: 1, max: 6000 }) }), { maxLength: 6 }),
      (spans, plan) => {
        let t = 0;
        const labelled = spans.map((s) => ({ label: s.label, startMs: t, endMs: (t += s.lengthMs) }));
        let u = 0;
        const local = plan.map((p) => ({ speaker: p.speaker, startMs: u, endMs: (u += p.lengthMs) }));
        const adopted = adoptLabels(labelled, local);
        assert.is(adopted.length, labelled.length);
        const byLabel = new Map<string, number>();
        for (const [i, turn] of adopted.entries()) {
          assert.is(turn.name, labelled[i].label);
          assert.equal([turn.startMs, turn.endMs], [labelled[i].startMs, labelled[i].endMs]);
          if (byLabel.has(turn.name!)) assert.is(turn.speaker, byLabel.get(turn.name!), 'one speaker per label');
          byLabel.set(turn.name!, turn.speaker);
        }
        for (const [label, speaker] of byLabel) {
          const overlapWith = (s: number) => labelled.filter((l) => l.label === label).reduce((sum, l) => sum + local.filter((x) => x.speaker === s).reduce((o, x) => o + Math.max(0, Math.min(l.endMs, x.endMs) - Math.max(l.startMs, x.startMs)), 0), 0);
          const best = Math.max(0, ...[1, 2, 3].map(overlapWith));
          if (best > 0) assert.is(overlapWith(speaker), best, `label ${label} goes to the speaker it overlaps most`);
        }
        if (local.length === 0) assert.equal([...byLabel.values()], [...byLabel.keys()].map((_, i) => i + 1), 'numbered in order of appearance');
      },
    ),
    RUNS,
  );
});

test('roles: decided once, at most one doctor; the enrolled print finds the doctor whoever speaks first', () => {
  fc.assert(
    fc.property(distinctVoices, fc.array(fc.record({ speaker: fc.integer({ min: 1, max: 3 }), text: fc.constantFrom('How are you?', 'I have a cough.', 'Thank you.', 'Yes.', 'Any fever or chills?') }), { minLength: 1, maxLength: 12 }), fc.boolean(), fc.integer(), (voices, finals, doctorFirst, seed) => {
      const printOf = (voice: Voice) => {
        const printer = new VoicePrinter();
        const sound = speak(voice, RATE * 3, seeded(seed));
        for (let i = 0; i + FRAME <= sound.length; i += FRAME) printer.frame(Int16Array.from(sound.subarray(i, i + FRAME), (x) => Math.round(x * 3000)), true);
        return printer.print();
      };
      const [doctorVoice, patientVoice] = voices;
      const enrolled = printOf(doctorVoice);
      const plain = new RoleBook({ language: 'en', isClinicalTerm: () => false });
      const byVoice = new RoleBook({ doctorPrint: enrolled, language: 'en', isClinicalTerm: () => false });
      const prints = new Map([[1, printOf(doctorFirst ? doctorVoice : patientVoice)], [2, printOf(doctorFirst ? patientVoice : doctorVoice)], [3, printOf(patientVoice)]]);
      const first = new Map<number, string>();
      for (const { speaker, text } of finals) {
        const decision = plain.decide(speaker, undefined, text);
        const voiced = byVoice.decide(speaker, prints.get(speaker), text);
        const key = `${decision.role}/${decision.roleSource}`;
        if (!first.has(speaker)) first.set(speaker, key);
        assert.is(key, first.get(speaker), 'a decided role never changes');
        assert.is(voiced.roleSource, 'voice');
        const doctorSpeaker = doctorFirst ? 1 : 2;
        assert.is(voiced.role, speaker === doctorSpeaker ? 'doctor' : 'patient', 'the voice finds the doctor');
      }
      assert.ok([...first.values()].filter((k) => k.startsWith('doctor')).length <= 1, 'at most one doctor');
    }),
    { ...RUNS, numRuns: 30 },
  );
});

test('prints: merging adds frames; a print merged with itself is itself; stored prints validate', () => {
  fc.assert(
    fc.property(fc.array(fc.double({ min: -50, max: 50, noNaN: true }), { minLength: 16, maxLength: 16 }), fc.option(fc.double({ min: 6, max: 8.6, noNaN: true }), { nil: null }), fc.integer({ min: 1, max: 10000 }), (cepstra, pitch, frames) => {
      const print = { frames, cepstra, pitch };
      assert.ok(isVoicePrint(print));
      const twice = mergePrints(print, print);
      assert.is(twice.frames, frames * 2);
      assert.ok(voiceDistance(twice, print) < 1e-9);
      assert.not.ok(isVoicePrint({ ...print, cepstra: cepstra.slice(1) }));
    }),
    RUNS,
  );
});

test.run();
