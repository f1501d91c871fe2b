/**
 * Invariants of the gateway's own alerting (fast-check, fixed seed), over random sequences of samples:
 *  - an alert fires only once its condition has held for the rule's whole duration, and never twice in a
 *    row: per alert, changes alternate firing → resolved → firing…, each resolution when the condition
 *    stops holding;
 *  - the STT error rate needs at least 10 calls in the hour, and is computed over the last hour only;
 *  - the same samples with durations scaled to 0 fire at the first breaking sample.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ALERT_RULES, AlertEvaluator, type AlertSample } from '../../src/session/alert-rules.ts';

const RUNS = { numRuns: 200, seed: 20261201 };
const MINUTE = 60_000;

const samples = fc
  .array(fc.record({ stepMs: fc.integer({ min: 10_000, max: 5 * MINUTE }), failed: fc.nat(20), answered: fc.nat(50), pending: fc.nat(300), refusing: fc.boolean(), backlog: fc.nat(3), archive: fc.nat(2) }), { minLength: 1, maxLength: 80 })
  .map((steps) => {
    let at = 0;
    let failures = 0;
    let calls = 0;
    return steps.map((s): AlertSample => ({ at: (at += s.stepMs), sttFailures: (failures += s.failed), sttCalls: (calls += s.answered), uploadWindowsPending: s.pending, sttRefusing: s.refusing, sttBacklogWindows: s.backlog, archivePendingUploads: s.archive }));
  });

test('an alert fires only after its condition held for its duration; changes alternate per alert', () => {
  fc.assert(
    fc.property(samples, (sequence) => {
      const evaluator = new AlertEvaluator();
      const last = new Map<string, string>();
      for (const [i, sample] of sequence.entries()) {
        for (const change of evaluator.evaluate(sample)) {
          assert.is.not(last.get(change.alert), change.state, `${change.alert}: ${change.state} twice in a row`);
          last.set(change.alert, change.state);
          const rule = ALERT_RULES.find((r) => r.alert === change.alert)!;
          if (change.state === 'firing') {
            // Every sample over the rule's duration before this one broke the rule too.
            const window = sequence.slice(0, i + 1).filter((s) => s.at >= sample.at - rule.forMs);
            assert.ok(window.length > 0 && sequence[0].at <= sample.at - rule.forMs, 'held for the whole duration');
            for (let k = 0; k <= i; k++) {
              if (sequence[k].at < sample.at - rule.forMs) continue;
              assert.ok(rule.value(sequence.slice(0, k + 1)).breaking, `${change.alert} held at ${sequence[k].at}`);
            }
          } else {
            assert.not.ok(rule.value(sequence.slice(0, i + 1)).breaking, 'resolved when it stops holding');
          }
        }
      }
    }),
    RUNS,
  );
});

test('the STT error rate needs 10 calls in the last hour; durations scaled to 0 fire at once', () => {
  const base = { uploadWindowsPending: 0, sttRefusing: false, sttBacklogWindows: 0, archivePendingUploads: 0 };
  const quick = new AlertEvaluator(0);
  assert.equal(quick.evaluate({ ...base, at: 0, sttFailures: 0, sttCalls: 0 }), []);
  assert.equal(quick.evaluate({ ...base, at: MINUTE, sttFailures: 5, sttCalls: 3 }).map((c) => c.alert), [], 'eight calls are too few');
  assert.equal(quick.evaluate({ ...base, at: 2 * MINUTE, sttFailures: 9, sttCalls: 10 }).map((c) => [c.alert, c.state]), [['HelssaSttErrorRateHigh', 'firing']]);
  // Two hours later with no new failure: the hour's rate is 0, resolved.
  assert.equal(quick.evaluate({ ...base, at: 2 * 60 * MINUTE + 3 * MINUTE, sttFailures: 9, sttCalls: 200 }).map((c) => [c.alert, c.state]), [['HelssaSttErrorRateHigh', 'resolved']]);
  fc.assert(
    fc.property(samples, (sequence) => {
      const evaluator = new AlertEvaluator(0);
      for (const [i, sample] of sequence.entries()) {
        const fired = new Set(evaluator.evaluate(sample).filter((c) => c.state === 'firing').map((c) => c.alert));
        for (const rule of ALERT_RULES) {
          const now = rule.value(sequence.slice(0, i + 1)).breaking;
          const before = i > 0 && rule.value(sequence.slice(0, i)).breaking;
          if (now && !before) assert.ok(fired.has(rule.alert) || evaluator.active.includes(rule.alert), `${rule.alert} fires at its first breaking sample`);
        }
      }
    }),
    { ...RUNS, numRuns: 100 },
  );
});

test.run();
