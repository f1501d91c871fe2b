/** The network fuzzer at its bounded size (fixed seed); `npm run fuzz` runs it longer. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runNetworkFuzz } from '../fuzz/network-fuzz.ts';

test('fuzzed network inputs: documented answers only, the gateway up, a healthy visit whole, no leak', async () => {
  const report = await runNetworkFuzz(Number(process.env.FUZZ_SCALE ?? 1));
  console.log(`  fuzz: ${report.total} inputs ${JSON.stringify(report.counts)}; healthy WER ${(report.healthyWer * 100).toFixed(2)}%; RSS ${report.rssGrowthMb.toFixed(1)} MB, heap ${report.heapGrowthMb.toFixed(1)} MB after GC; ${report.loadedSessions} sessions loaded; held ${JSON.stringify(report.heldBefore)} → ${JSON.stringify(report.heldAfter)}`);
  assert.equal(report.failures, []);
  assert.ok(report.healthyWer <= 0.02, `healthy WER ${report.healthyWer}`);
  // V8 and the allocator keep pages they grew into, so RSS is reported, not asserted; the live heap after
  // GC is what would show a leak (the fuzz leaves a few dozen active sessions loaded, by design).
  assert.ok(report.heapGrowthMb < 50, `heap grew ${report.heapGrowthMb} MB`);
  // The healthy visit's producer and viewer were open at the start: nothing may be open beyond that.
  for (const [what, count] of Object.entries(report.heldAfter)) assert.ok(count <= report.heldBefore[what], `${what}: ${report.heldBefore[what]} → ${count}`);
});

test.run();
