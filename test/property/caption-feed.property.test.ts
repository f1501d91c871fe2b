/**
 * Several gateways' caption feeds of one session over one bus that loses messages (fast-check), with the
 * store numbering the finals:
 *  - every viewer, on any gateway, joining at any point with any `after`, gets each final after `after`
 *    exactly once and in seq order, with the stored text, whichever gateway produced it;
 *  - a final whose bus message was lost reaches the other gateways from the store, when a later final
 *    shows the gap (after GAP_WAIT_MS) or when they catch up.
 */
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { CaptionEvent, FinalEvent } from '../../client-sdk/src/protocol.ts';
import { createLogger } from '../../src/log.ts';
import { createMetrics } from '../../src/metrics.ts';
import { InProcessCaptionBus, type CaptionBus } from '../../src/session/caption-bus.ts';
import { CaptionFeed } from '../../src/session/caption-feed.ts';
import { MemoryStore } from '../../src/store/testing/memory-store.ts';

const log = createLogger('silent');
const metrics = createMetrics();

/** A gateway's end of the bus whose published messages are dropped where `lost()` says. */
function lossy(bus: CaptionBus, lost: () => boolean): CaptionBus {
  return { ...bus, instanceId: bus.instanceId, publish: (message) => (lost() ? undefined : bus.publish(message)) };
}

function part(text: string) {
  return { speaker: 'S', role: 'doctor' as const, roleSource: 'track' as const, words: text ? text.split(' ').map((word, i) => ({ word, startMs: i * 100, endMs: i * 100 + 90 })) : [] };
}

const scenario = fc.record({
  gateways: fc.integer({ min: 2, max: 4 }),
  finals: fc.array(fc.record({ gateway: fc.nat(), words: fc.integer({ min: 0, max: 2 }), together: fc.boolean() }), { maxLength: 40 }),
  losses: fc.array(fc.boolean(), { maxLength: 80 }),
  lateViewers: fc.array(fc.record({ gateway: fc.nat(), atFinal: fc.nat(), after: fc.nat() }), { maxLength: 4 }),
});

test('caption feeds of several gateways: every viewer gets every final once, in seq order, over a bus that loses messages', async () => {
  await fc.assert(
    fc.asyncProperty(scenario, async ({ gateways, finals, losses, lateViewers }) => {
      const store = new MemoryStore();
      const bus = new InProcessCaptionBus();
      let lossIndex = 0;
      const lost = () => losses[lossIndex++ % Math.max(1, losses.length)] ?? false;
      const feeds = Array.from({ length: gateways }, (_, i) => new CaptionFeed('s', [], store, lossy(bus.connect(`g${i}`), lost), log, metrics));
      const viewers: { after: number; seen: FinalEvent[] }[] = [];
      const watch = (feed: CaptionFeed, after: number) => {
        const viewer = { after, seen: [] as FinalEvent[] };
        viewers.push(viewer);
        feed.addViewer({ send: (e: CaptionEvent) => void (e.type === 'final' && viewer.seen.push(e)) }, after, []);
      };
      for (const feed of feeds) watch(feed, 0);
      let pending: Promise<void>[] = [];
      for (const [i, final] of finals.entries()) {
        for (const late of lateViewers.filter((v) => v.atFinal % (finals.length + 1) === i)) {
          const feed = feeds[late.gateway % gateways];
          watch(feed, late.after % (feed.lastSeq + 1));
        }
        const text = ['a', 'b', 'c'].slice(0, final.words).map((w) => `${w}${i}`).join(' ');
        pending.push(feeds[final.gateway % gateways].publish(`t${final.gateway % gateways}`, `u${i}`, part(text)));
        if (!final.together) {
          await Promise.all(pending);
          pending = [];
        }
      }
      await Promise.all(pending);
      await Promise.all(feeds.map((f) => f.catchUp()));
      const stored = store.segments;
      assert.equal(stored.map((f) => f.seq), stored.map((_, i) => i + 1), 'the store numbers finals 1..N');
      assert.is(stored.length, finals.filter((f) => f.words > 0).length, 'one stored final per final with words');
      for (const viewer of viewers) {
        const expected = stored.filter((f) => f.seq > viewer.after);
        assert.equal(viewer.seen.map((f) => f.seq), expected.map((f) => f.seq), `a viewer after ${viewer.after}: each final once, in order`);
        assert.equal(viewer.seen.map((f) => f.text), expected.map((f) => f.text), 'the stored text');
      }
      for (const feed of feeds) feed.close();
    }),
    { numRuns: 200, seed: 20261201 },
  );
});

test('a final whose message was lost reaches the other gateway from the store once a later final shows the gap', async () => {
  const store = new MemoryStore();
  const bus = new InProcessCaptionBus();
  let dropNext = true;
  const a = new CaptionFeed('s', [], store, lossy(bus.connect('a'), () => (dropNext ? !(dropNext = false) : false)), log, metrics);
  const b = new CaptionFeed('s', [], store, bus.connect('b'), log, metrics);
  const seen: number[] = [];
  b.addViewer({ send: (e) => void (e.type === 'final' && seen.push(e.seq)) }, 0, []);
  await a.publish('doctor', 'u1', part('lost message'));
  await a.publish('doctor', 'u2', part('next one'));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(seen, [], 'held back over the gap');
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(seen, [1, 2], 'the gap filled from the store, in order');
  a.close();
  b.close();
});

test.run();
