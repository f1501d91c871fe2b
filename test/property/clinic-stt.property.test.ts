/**
 * Invariants of the cores that keep invented words out (fast-check, fixed seed):
 *  - speech stretches from any probabilities: ordered, disjoint, inside the audio, none shorter than the
 *    shortest speech, every long enough run above the threshold covered, none without a chunk above it;
 *  - where words count as heard (`confirmedRuns`) from any checked stretches, frame-VAD runs and blips:
 *    ordered and disjoint; every checked stretch inside; every point outside the checked stretches lies
 *    in a frame-VAD run (runs `joinMs` apart taken as one) that meets an agreeing stretch, between
 *    `widenMs` before the first such stretch and `widenMs` after the last; and every such point is covered;
 *  - the hallucination filter over random dictations with random stock phrases, loops and noise words
 *    mixed in: the output is a subsequence of the input; every spoken word inside checked speech that
 *    is not part of a loop survives (a cough next to speech costs no word); every word invented outside
 *    speech, every listed phrase over no speech and every loop beyond its first occurrence is dropped;
 *    the counts by reason add up to what was dropped; filtering twice changes nothing;
 *  - the partial budget: over any sequence of audio received, partials asked for (with any reserve) and
 *    speculative finals wasted (charged), what it lets through never exceeds budget × received + the
 *    credit it starts with + one charge (speculation goes only out of debt);
 *  - the prompt builder, with the real tokenizer, any terms (en/fa/ar) and any limit: never over the
 *    limit; what it keeps of the previous words is their end, in order, last in the prompt; the session's
 *    terms go only after every default term and the opening sentence have gone;
 *  - term correction over random lexicons and words one edit off: the words keep their number and
 *    order, a word is changed only toward a lexicon term and then keeps the original, terms themselves
 *    never change, and correcting twice changes nothing more.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Word } from '../../client-sdk/src/protocol.ts';
import { confirmedRuns, speechStretches, stretchesMs, DEFAULT_SPEECH_STRETCH_OPTIONS } from '../../src/audio/speech-stretches.ts';
import { PartialBudget } from '../../src/stt/stt-cost.ts';
import { correctTerms, PromptBuilder, termLexicon } from '../../src/stt/clinical-prompt.ts';
import { ClinicalPrompts } from '../../src/stt/clinical-vocabulary.ts';
import { normalizeWord } from '../../src/transcript/words.ts';
import { collapseLoops, DEFAULT_FILTER_OPTIONS, filterHallucinations, parsePhrases } from '../../src/stt/hallucination-filter.ts';

const RUNS = { numRuns: 300, seed: 20261130 };

test('speech stretches: ordered, disjoint, inside the audio; long runs above the threshold covered', () => {
  fc.assert(
    fc.property(
      fc.array(fc.float({ min: 0, max: 1, noNaN: true }), { maxLength: 400 }),
      fc.record({ threshold: fc.float({ min: Math.fround(0.3), max: Math.fround(0.9), noNaN: true }), minSpeechMs: fc.integer({ min: 0, max: 300 }), minSilenceMs: fc.integer({ min: 32, max: 400 }), padMs: fc.integer({ min: 0, max: 200 }) }),
      (probabilities, o) => {
        const options = { ...o, negThreshold: o.threshold - 0.15 };
        const chunkMs = 32;
        const stretches = speechStretches(probabilities, chunkMs, options);
        const total = probabilities.length * chunkMs;
        stretches.forEach(([a, b], i) => {
          assert.ok(a >= 0 && b <= total && b > a, `inside the audio: ${a}–${b} of ${total}`);
          if (i > 0) assert.ok(a > stretches[i - 1][1], 'ordered and disjoint');
          const unpadded = b - a;
          assert.ok(unpadded >= Math.min(options.minSpeechMs, total), `no stretch shorter than minSpeechMs: ${unpadded}`);
          const chunks = probabilities.slice(Math.floor(a / chunkMs), Math.ceil(b / chunkMs));
          assert.ok(chunks.some((p) => p >= options.threshold), 'every stretch has a chunk above the threshold');
        });
        // A run above the threshold, longer than the shortest speech, is speech.
        const need = Math.ceil(Math.max(options.minSpeechMs, 1) / chunkMs);
        for (let i = 0; i + need <= probabilities.length; i++) {
          if (probabilities.slice(i, i + need).every((p) => p >= options.threshold)) {
            const mid = (i + need / 2) * chunkMs;
            assert.ok(stretches.some(([a, b]) => mid >= a && mid <= b), `run at chunk ${i} covered`);
          }
        }
        assert.ok(stretchesMs(stretches) <= total);
      },
    ),
    RUNS,
  );
  assert.equal(speechStretches(new Float32Array(100).fill(0.2), 32), [], 'all below the threshold: no speech');
  assert.equal(speechStretches(new Float32Array(10).fill(0.9), 32, { padMs: 0 }), [[0, 320]]);
  assert.ok(DEFAULT_SPEECH_STRETCH_OPTIONS.negThreshold < DEFAULT_SPEECH_STRETCH_OPTIONS.threshold);
});

const PHRASES = parsePhrases('thank you for watching\nsubtitles by *\nyou\nزیرنویس توسط *\nاشتركوا في القناة\n');
const SPOKEN = ['chest', 'pain', 'since', 'monday', 'metformin', 'درد', 'قفسه', 'سینه', 'ألم', 'الصدر', 'you', 'thank', 'no', 'yes'];
const INVENTED = [['thank', 'you', 'for', 'watching'], ['subtitles', 'by', 'amara'], ['you'], ['زیرنویس', 'توسط', 'امیر'], ['اشتركوا', 'في', 'القناة']];

interface Piece {
  kind: 'spoken' | 'invented' | 'loop';
  words: string[];
  /** Spoken pieces lie in speech; invented ones outside it; a loop in speech. */
}

const piece: fc.Arbitrary<Piece> = fc.oneof(
  { weight: 5, arbitrary: fc.array(fc.constantFrom(...SPOKEN), { minLength: 1, maxLength: 5 }).map((words): Piece => ({ kind: 'spoken', words })) },
  { weight: 2, arbitrary: fc.constantFrom(...INVENTED).map((words): Piece => ({ kind: 'invented', words: [...words] })) },
  { weight: 1, arbitrary: fc.tuple(fc.array(fc.constantFrom('the', 'pain', 'is'), { minLength: 1, maxLength: 3 }), fc.integer({ min: 4, max: 8 })).map(([gram, times]): Piece => ({ kind: 'loop', words: Array.from({ length: times }, () => gram).flat() })) },
);

/** Lays the pieces out in time: spoken and loop pieces inside speech stretches, invented ones in noise 1 s away. */
function layout(pieces: Piece[]): { words: Word[]; speech: [number, number][]; spoken: Word[]; loops: Word[][] } {
  const words: Word[] = [];
  const speech: [number, number][] = [];
  const spoken: Word[] = [];
  const loops: Word[][] = [];
  let t = 0;
  for (const p of pieces) {
    t += 1000;
    const placed = p.words.map((word, i) => ({ word, startMs: t + i * 300, endMs: t + i * 300 + 250 }));
    if (p.kind !== 'invented') speech.push([t, t + p.words.length * 300]);
    if (p.kind === 'spoken') spoken.push(...placed);
    if (p.kind === 'loop') loops.push(placed);
    words.push(...placed);
    t += p.words.length * 300;
  }
  return { words, speech, spoken, loops };
}

function isSubsequence(sub: readonly Word[], of: readonly Word[]): boolean {
  let i = 0;
  for (const w of of) if (i < sub.length && sub[i] === w) i++;
  return i === sub.length;
}

/** Ordered, disjoint stretches with integer bounds under `span` ms (from sorted distinct cut points). */
const stretchesUnder = (span: number) =>
  fc.uniqueArray(fc.integer({ min: 0, max: span }), { maxLength: 16 }).map((cuts) => {
    const sorted = [...cuts].sort((a, b) => a - b);
    const out: [number, number][] = [];
    for (let i = 0; i + 1 < sorted.length; i += 2) out.push([sorted[i], sorted[i + 1]]);
    return out;
  });

const inside = (t: number, stretches: readonly (readonly [number, number])[]) => stretches.some(([a, b]) => t >= a && t <= b);

test('heard speech: checked stretches widened only into frame-VAD runs that agree, by at most widenMs', () => {
  fc.assert(
    fc.property(stretchesUnder(3000), stretchesUnder(3000), stretchesUnder(3000), fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 500 }), (checked, heard, blips, joinMs, widenMs) => {
      // What agrees: the checked stretches and blips of their own (as the transcriber gives them).
      const agreeing = [...checked, ...blips].sort((x, y) => x[0] - y[0]);
      const out = confirmedRuns(checked, heard, { joinMs, widenMs, agreeing });
      out.forEach(([a, b], i) => {
        assert.ok(b >= a, 'no negative stretch');
        if (i > 0) assert.ok(a > out[i - 1][1], 'ordered and disjoint');
      });
      for (const [a, b] of checked) assert.ok(out.some(([x, y]) => x <= a && b <= y), `checked ${a}–${b} inside`);
      // The frame VAD's runs as the function joins them.
      const runs: [number, number][] = [];
      for (const [a, b] of heard) {
        const last = runs.at(-1);
        if (last && a - last[1] <= joinMs) last[1] = Math.max(last[1], b);
        else runs.push([a, b]);
      }
      const meets = (run: readonly [number, number]) => agreeing.filter(([a, b]) => a < run[1] && b > run[0]);
      // Inside a run that agrees somewhere, from widenMs before its first agreeing stretch to widenMs after its last.
      const widened = (t: number) =>
        runs.some((run) => {
          const agree = meets(run);
          return agree.length > 0 && t >= run[0] && t <= run[1] && t >= agree[0][0] - widenMs && t <= Math.max(...agree.map(([, b]) => b)) + widenMs;
        });
      for (let t = 0.5; t < 3000; t += 1) {
        if (!inside(t, checked)) assert.is(inside(t, out), widened(t), `${t} ms: heard exactly where a run agrees, within widenMs`);
      }
      assert.equal(confirmedRuns([], heard, { joinMs, widenMs, agreeing: [] }), [], 'runs nothing agrees with add nothing');
    }),
    RUNS,
  );
});

test('hallucination filter: spoken words survive, invented ones and loops go, counts add up', () => {
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 12 }), (pieces) => {
      const { words, speech, spoken, loops } = layout(pieces);
      const options = { ...DEFAULT_FILTER_OPTIONS, phrases: PHRASES };
      const out = filterHallucinations(words, { speech, checked: true, timed: true }, options);
      assert.ok(isSubsequence(out.words, words), 'a subsequence of the input');
      const dropped = Object.values(out.dropped).reduce((a, b) => a + b, 0);
      assert.is(dropped, words.length - out.words.length, 'counts by reason add up');
      // A loop keeps one occurrence of its n-gram; every word of it is spoken, so nothing else of it is invented.
      const loopWords = new Set(loops.flat());
      const kept = new Set(out.words);
      for (const w of spoken) {
        // A spoken piece that itself forms a loop (four times "no") may be collapsed; every other spoken word stays.
        if (!kept.has(w)) assert.ok(out.dropped.loop, `spoken "${w.word}" at ${w.startMs} lost`);
      }
      for (const w of out.words) assert.ok(speech.some(([a, b]) => (w.startMs + w.endMs) / 2 >= a && (w.startMs + w.endMs) / 2 <= b), `"${w.word}" at ${w.startMs} kept outside speech`);
      for (const loop of loops) assert.ok(loop.filter((w) => kept.has(w)).length < loop.length, 'a loop is collapsed');
      assert.ok([...loopWords].every((w) => words.includes(w)));
      const again = filterHallucinations(out.words, { speech, checked: true, timed: true }, options);
      assert.equal(again.words, out.words, 'filtering twice changes nothing');
    }),
    RUNS,
  );
});

test('hallucination filter without timestamps: a listed phrase goes only where the window holds weak speech', () => {
  fc.assert(
    fc.property(fc.constantFrom(...INVENTED), fc.array(fc.constantFrom(...SPOKEN.filter((w) => w !== 'you')), { minLength: 1, maxLength: 6 }), fc.integer({ min: 0, max: 3000 }), (phrase, said, speechMs) => {
      const words = [...said, ...phrase].map((word, i) => ({ word, startMs: i * 100, endMs: i * 100 + 90 }));
      const out = filterHallucinations(words, { speech: speechMs > 0 ? [[0, speechMs]] : [], checked: true, timed: false }, { ...DEFAULT_FILTER_OPTIONS, phrases: PHRASES });
      const weak = speechMs < DEFAULT_FILTER_OPTIONS.weakSpeechMs;
      const kept = out.words.map((w) => w.word);
      assert.equal(kept.slice(0, said.length), said, 'what was said before it is kept');
      if (weak) assert.ok(kept.length < words.length, 'the phrase goes over weak speech');
      else assert.is(kept.length, words.length, 'over strong speech the phrase stays (a person said it)');
    }),
    RUNS,
  );
});

test('loops: collapsing keeps the order and one occurrence; three "no" stay', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom('a', 'b', 'c'), { maxLength: 40 }), (items) => {
      const { kept, dropped } = collapseLoops(items, (x) => x);
      assert.is(kept.length + dropped, items.length);
      assert.ok(collapseLoops(kept, (x) => x).dropped <= collapseLoops(items, (x) => x).dropped);
    }),
    RUNS,
  );
  assert.equal(collapseLoops(['no', 'no', 'no'], (x) => x).kept, ['no', 'no', 'no']);
  assert.equal(collapseLoops(['you', 'you', 'you', 'you', 'you'], (x) => x).kept, ['you']);
  assert.equal(collapseLoops(['the', 'pain', 'the', 'pain', 'the', 'pain', 'is'], (x) => x).kept, ['the', 'pain', 'is']);
});

test('partial budget: partials and charged speculation stay within budget × received + its starting credit + one charge', () => {
  const step = fc.oneof(
    fc.record({ kind: fc.constant('receive' as const), ms: fc.integer({ min: 0, max: 5000 }) }),
    fc.record({ kind: fc.constant('partial' as const), ms: fc.integer({ min: 0, max: 30000 }), reserveMs: fc.integer({ min: 0, max: 5000 }) }),
    // A speculative final (or the partial sent with it): goes when out of debt; `wasted` ones are charged.
    fc.record({ kind: fc.constant('speculate' as const), ms: fc.integer({ min: 0, max: 30000 }), wasted: fc.boolean() }),
  );
  fc.assert(
    fc.property(fc.double({ min: 0, max: 3, noNaN: true }), fc.integer({ min: 0, max: 20000 }), fc.array(step, { maxLength: 200 }), (budget, maxCreditMs, steps) => {
      const partials = new PartialBudget({ budget, maxCreditMs });
      let received = 0;
      let extra = 0;
      let largestCharge = 0;
      for (const s of steps) {
        if (s.kind === 'receive') {
          received += s.ms;
          partials.earn(s.ms);
        } else if (s.kind === 'partial') {
          const before = partials.allowsSpeculation;
          if (partials.take(s.ms, s.reserveMs)) {
            extra += s.ms;
            // A partial never spends the reserve: what was out of debt stays out of debt.
            assert.ok(!before || partials.allowsSpeculation);
          }
        } else if (partials.allowsSpeculation && s.wasted) {
          partials.charge(s.ms);
          extra += s.ms;
          largestCharge = Math.max(largestCharge, s.ms);
        }
        assert.ok(extra <= budget * received + maxCreditMs + largestCharge + 1e-6, `${extra} ms extra after ${received} ms received`);
      }
    }),
    RUNS,
  );
});

const { countTokens } = await ClinicalPrompts.load();
const POOL = ['metformin', 'lisinopril', 'troponin', 'electrocardiogram', 'متفورمین', 'تروپونین', 'نوار قلب', 'الميتفورمين', 'تخطيط القلب', 'HbA1c', 'mg/dL'];

test('prompt builder: within the limit, the previous words last and in order, session terms outrank defaults', () => {
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom(...POOL), { maxLength: 60 }),
      fc.array(fc.constantFrom(...POOL, 'Rahimi', 'Ozempic'), { maxLength: 100 }),
      fc.array(fc.constantFrom('the', 'pain', 'درد', 'ألم', 'sinə', 'chest,', 'morning.'), { maxLength: 120 }),
      fc.boolean(),
      fc.integer({ min: 20, max: 400 }),
      (defaults, vocabulary, previousWords, withLead, maxTokens) => {
        const lead = withLead ? 'A medical consultation between a doctor and a patient. Clinical terms:' : undefined;
        const builder = new PromptBuilder({ lead, defaults, vocabulary }, countTokens, maxTokens);
        const prompt = builder.build(previousWords.join(' ')) ?? '';
        assert.ok(countTokens(prompt) <= maxTokens, `${countTokens(prompt)} > ${maxTokens}`);
        // The previous words kept are their last ones, at the end of the prompt.
        const tailWords = prompt.split(' ');
        let kept = 0;
        while (kept < previousWords.length && kept < tailWords.length && tailWords[tailWords.length - 1 - kept] === previousWords[previousWords.length - 1 - kept]) kept++;
        if (maxTokens >= 200 && previousWords.length > 0) assert.ok(kept > 0, 'some previous words kept under a roomy limit');
        // A default term present means every session term is too (they go last of the terms).
        const hasDefault = defaults.filter((t) => !vocabulary.some((v) => v.includes(t))).some((t) => prompt.includes(`${t},`) || prompt.includes(`${t}.`));
        if (hasDefault || (lead && prompt.startsWith(lead))) for (const t of vocabulary) assert.ok(prompt.includes(t), `session term ${t} dropped before a default term or the lead`);
      },
    ),
    { ...RUNS, numRuns: 150 },
  );
});

test('prompt token counts: "A B" counts as "A" plus " B" (what lets the builder count each window by parts)', () => {
  const piece = fc.array(fc.constantFrom(...POOL, 'the', "don't", "'s", 'pain,', '81', 'mg.', '(BP)', 'درد', 'ألم', '—', '…', 'x2'), { minLength: 1, maxLength: 8 }).map((w) => w.join(' '));
  fc.assert(
    fc.property(piece, piece, (a, b) => {
      assert.is(countTokens(`${a} ${b}`), countTokens(a) + countTokens(` ${b}`));
    }),
    { ...RUNS, numRuns: 300 },
  );
  // The builder, window after window (its counts remembered), prompts within the limit.
  const builder = new PromptBuilder({ lead: 'A consultation.', defaults: POOL, vocabulary: [] }, countTokens, 60);
  for (const previous of ['the pain', 'the pain is worse مساء', 'HbA1c 7.2 mg/dL, the pain', '', 'الميتفورمين درد']) assert.ok(countTokens(builder.build(previous) ?? '') <= 60);
});

const letters = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz');
const termArb = fc.array(letters, { minLength: 5, maxLength: 12 }).map((l) => l.join(''));

test('term correction: only toward a term, the original kept, terms unchanged, idempotent', () => {
  fc.assert(
    fc.property(fc.uniqueArray(termArb, { maxLength: 20 }), fc.array(fc.tuple(fc.nat(), fc.nat(), letters, fc.constantFrom('same', 'typo', 'other')), { maxLength: 30 }), fc.array(termArb, { maxLength: 10 }), (terms, picks, others) => {
      const lexicon = termLexicon(terms);
      const words = picks.map(([i, at, letter, kind], k) => {
        let word = kind === 'other' || terms.length === 0 ? others[k % Math.max(1, others.length)] ?? 'word' : terms[i % terms.length];
        if (kind === 'typo' && terms.length > 0) word = word.slice(0, at % word.length) + letter + word.slice((at % word.length) + 1);
        return { word, startMs: k * 100, endMs: k * 100 + 90 };
      });
      const out = correctTerms(words, lexicon);
      assert.is(out.length, words.length);
      out.forEach((w, k) => {
        assert.is(w.startMs, words[k].startMs);
        if (w.word === words[k].word) return assert.is(w.original, undefined);
        assert.is(w.original, words[k].word, 'a corrected word keeps the original');
        assert.ok(lexicon.terms.has(normalizeWord(w.word)), `corrected toward a term: ${w.word}`);
        assert.not.ok(lexicon.terms.has(normalizeWord(words[k].word)), 'a term itself is never changed');
      });
      assert.equal(correctTerms(out, lexicon).map((w) => w.word), out.map((w) => w.word), 'correcting twice changes nothing more');
    }),
    RUNS,
  );
});

test.run();
