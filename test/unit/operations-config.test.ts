/**
 * The operations files shipped in deploy/: the Prometheus alert rules pass `promtool check rules` and
 * their unit tests (`promtool test rules`: each alert fires on the series that should raise it and stays
 * quiet on the others); every metric the rules and the Grafana dashboard query exists in the gateway's
 * registry; no metric carries a label of unbounded cardinality (session, track, participant ids).
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createMetrics } from '../../src/metrics.ts';

const run = promisify(execFile);
const DEPLOY = join(import.meta.dirname, '../../deploy');
const UNBOUNDED = /session|track|participant|utterance|segment|user|ip/i;

/** Metric names an expression reads (label names and functions left out). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b(helssa_[a-z_]+)\b/g)].map((m) => m[1]);
}

async function registered(): Promise<Set<string>> {
  const { registry } = createMetrics();
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (metric.type === ('histogram' as never)) for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
    if (metric.type === ('summary' as never)) for (const suffix of ['_sum', '_count']) names.add(metric.name + suffix);
  }
  return names;
}

test('the alert rules pass promtool: syntax and their unit tests', async () => {
  const dir = join(DEPLOY, 'prometheus');
  const checked = await run('promtool', ['check', 'rules', 'helssa-alerts.yml'], { cwd: dir });
  assert.match(checked.stdout, /SUCCESS: 4 rules found/);
  const tested = await run('promtool', ['test', 'rules', 'helssa-alerts.test.yml'], { cwd: dir });
  assert.match(tested.stdout, /SUCCESS/);
});

test('every metric the rules and the Grafana dashboard read exists, with bounded labels', async () => {
  const names = await registered();
  const rules = await readFile(join(DEPLOY, 'prometheus/helssa-alerts.yml'), 'utf8');
  const dashboard = JSON.parse(await readFile(join(DEPLOY, 'grafana/helssa-live.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
  const read = [...metricsIn(rules), ...dashboard.panels.flatMap((p) => p.targets.flatMap((t) => metricsIn(t.expr)))];
  assert.ok(read.length > 20);
  for (const name of read) assert.ok(names.has(name), `${name} is not a metric of the gateway`);
  const { registry } = createMetrics();
  for (const metric of await registry.getMetricsAsJSON()) {
    if (!metric.name.startsWith('helssa_')) continue;
    const labels = (registry.getSingleMetric(metric.name) as unknown as { labelNames?: string[] }).labelNames ?? [];
    for (const label of labels) assert.not.ok(UNBOUNDED.test(label), `${metric.name} has label ${label}`);
  }
});

test.run();
