/**
 * Invariants of transcript corrections (fast-check, fixed seed), over random transcripts and random
 * corrections: the new version has the corrected text, each corrected segment's words are its text's
 * words, in order, inside the segment's own time span; segments not corrected are untouched; the
 * recognizer's text is kept as `originalText` (the first one, through corrections of corrections); the
 * document's text matches its segments; a correction naming no segment, or one twice, or empty, is refused.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { TranscriptDocument } from '../../client-sdk/src/protocol.ts';
import { correctTranscript, CorrectionRejected } from '../../src/transcript/corrections.ts';

const RUNS = { numRuns: 200, seed: 20261201 };
const word = fc.stringMatching(/^[a-zA-Z\u0600-\u06FF]{1,9}$/);

const transcript = fc.array(fc.record({ words: fc.array(word, { minLength: 1, maxLength: 12 }), gapMs: fc.integer({ min: 0, max: 3000 }), wordMs: fc.integer({ min: 50, max: 900 }) }), { minLength: 1, maxLength: 8 }).map((parts): TranscriptDocument => {
  let t = 0;
  const segments = parts.map((p, i) => {
    t += p.gapMs;
    const words = p.words.map((w) => ({ word: w, startMs: t, endMs: (t += p.wordMs) }));
    return { id: `s.${i + 1}`, seq: i + 1, trackId: 't', role: 'doctor' as const, roleSource: 'track' as const, speaker: 'Dr', startMs: words[0].startMs, endMs: words.at(-1)!.endMs, text: p.words.join(' '), words };
  });
  return { sessionId: 's', version: 1, encounterRef: null, language: null, completedAt: new Date(0).toISOString(), durationMs: t, speakers: [], segments, text: segments.map((s) => `Dr: ${s.text}`).join('\n') };
});

test('a correction makes the next version: corrected words inside their segment, the rest untouched', () => {
  fc.assert(
    fc.property(transcript, fc.array(fc.tuple(fc.nat(), fc.array(word, { minLength: 1, maxLength: 15 })), { minLength: 1, maxLength: 4 }), (doc, picks) => {
      const chosen = new Map<string, string>();
      for (const [n, words] of picks) chosen.set(doc.segments[n % doc.segments.length].id, words.join(' '));
      const corrections = [...chosen].map(([id, text]) => ({ id, text }));
      const next = correctTranscript(doc, corrections, 'reviewer', new Date(5), 2);
      assert.is(next.version, 2);
      assert.equal(next.correction, { by: 'reviewer', at: new Date(5).toISOString(), basedOn: 1 });
      for (const [i, segment] of next.segments.entries()) {
        const before = doc.segments[i];
        const text = chosen.get(segment.id);
        if (text === undefined || text === before.text) {
          assert.equal(segment, before);
          continue;
        }
        assert.is(segment.text, text);
        assert.is(segment.originalText, before.text);
        assert.equal(segment.words.map((w) => w.word), text.split(' '));
        assert.equal([segment.startMs, segment.endMs], [before.startMs, before.endMs]);
        for (const [k, w] of segment.words.entries()) {
          assert.ok(w.startMs >= before.startMs && w.endMs <= before.endMs && w.startMs <= w.endMs, 'inside the span');
          if (k > 0) assert.ok(w.startMs >= segment.words[k - 1].startMs, 'in order');
        }
      }
      assert.is(next.text, next.segments.map((s) => `${s.speaker}: ${s.text}`).join('\n'));
      // A correction of the correction keeps the recognizer's text.
      const again = correctTranscript(next, corrections.map((c) => ({ ...c, text: `${c.text} x` })), 'second', new Date(6), 3);
      for (const [i, segment] of again.segments.entries()) if (chosen.has(segment.id)) assert.is(segment.originalText, doc.segments[i].text);
      assert.equal(doc.version, 1, 'the corrected version is not changed');
    }),
    RUNS,
  );
});

test('a correction naming no segment, one twice, or with no text is refused', () => {
  fc.assert(
    fc.property(transcript, (doc) => {
      const id = doc.segments[0].id;
      assert.throws(() => correctTranscript(doc, [{ id: 'nope', text: 'x' }], 'r', new Date(), 2), (e: unknown) => e instanceof CorrectionRejected);
      assert.throws(() => correctTranscript(doc, [{ id, text: 'a' }, { id, text: 'b' }], 'r', new Date(), 2), (e: unknown) => e instanceof CorrectionRejected);
      assert.throws(() => correctTranscript(doc, [{ id, text: '   ' }], 'r', new Date(), 2), (e: unknown) => e instanceof CorrectionRejected);
    }),
    { ...RUNS, numRuns: 50 },
  );
});

test.run();
