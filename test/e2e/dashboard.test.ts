/**
 * The clinic manager's dashboard in a real browser (Debian's Chromium, headless, playwright-core): two
 * uploaded visits (English, Persian) and a refused upload; the page, given a service token, draws its
 * charts (Chart.js served by the gateway) and its tables, and the numbers it shows must be the API's.
 * Loading, empty (a period without sessions) and error (a viewer's token) states are checked; screenshots
 * are kept in test-artifacts/.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AnalyticsReport } from '../../client-sdk/src/protocol.ts';
import { startHarness } from '../support/harness.ts';
import { uploadFile } from '../support/upload.ts';

const ARTIFACTS = join(import.meta.dirname, '../../test-artifacts');

test('the dashboard shows the API\'s figures, per language, with charts; empty and error states', async () => {
  const h = await startHarness();
  const profile = await mkdtemp(join(tmpdir(), 'helssa-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, { executablePath: '/usr/bin/chromium', headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
  try {
    const token = await h.token('service');
    const ids: string[] = [];
    for (const [file, language] of [['en/doctor.wav', 'en'], ['fa/patient.wav', 'fa']]) {
      const response = await uploadFile(h.baseUrl, token, `${h.corpusDir}/${file}`, { language, encounterType: 'consultation' });
      assert.is(response.status, 202);
      ids.push(response.json.id);
    }
    assert.is((await fetch(`${h.baseUrl}/v1/uploads`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: new Uint8Array(0) })).status, 400);
    for (const id of ids) {
      for (const deadline = Date.now() + 60000; (await (await fetch(`${h.baseUrl}/v1/sessions/${id}`, { headers: { authorization: `Bearer ${token}` } })).json()).state !== 'completed'; await new Promise((r) => setTimeout(r, 100))) {
        if (Date.now() > deadline) throw new Error('upload did not complete');
      }
    }
    const api = (await (await fetch(`${h.baseUrl}/v1/analytics?groupBy=language`, { headers: { authorization: `Bearer ${token}` } })).json()) as AnalyticsReport;

    const page = await browser.newPage();
    await page.goto(`${h.baseUrl}/dashboard.html?groupBy=language&token=${encodeURIComponent(token)}`);
    await page.waitForSelector('body[data-state="ready"]', { timeout: 20000 });
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    const total = (name: string) => page.$eval(`[data-total="${name}"] b`, (b) => b.textContent);
    assert.is(await total('sessions'), String(api.totals.sessions));
    assert.is(await total('minutes'), (api.totals.minutes.live + api.totals.minutes.upload).toFixed(1));
    assert.is(await total('stt-minutes'), (api.totals.stt!.audioSeconds / 60).toFixed(1));
    assert.is(await total('cost'), `$${api.totals.stt!.estimatedCost!.toFixed(2)}`);
    const rows = await page.$$eval('#groups tbody tr', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent)));
    assert.equal(rows.map((r) => r[0]), api.groups.map((g) => g.key));
    for (const [i, g] of api.groups.entries()) {
      assert.is(rows[i][1], String(g.sessions));
      assert.is(rows[i][3], g.minutes.upload.toFixed(1));
      assert.is(rows[i][5], String(g.stt!.calls));
    }
    assert.equal(await page.$$eval('#errors tbody tr', (trs) => trs.map((tr) => tr.dataset.error)), ['empty_file']);
    const drawn = await page.$$eval('canvas', (canvases) => canvases.map((c) => (c as HTMLCanvasElement).width > 0 && (window as unknown as { Chart: { getChart(c: HTMLCanvasElement): unknown } }).Chart.getChart(c as HTMLCanvasElement) !== undefined));
    assert.equal(drawn, [true, true, true, true], 'four charts drawn');

    // A period without sessions: the empty state, no stale figures.
    await page.fill('input[name="from"]', '2020-01-01');
    await page.fill('input[name="to"]', '2020-01-31');
    await page.click('button[type="submit"]');
    await page.waitForSelector('body[data-state="empty"]');
    assert.not.ok(await page.isVisible('#report'));
    // A viewer's token: the error state with the API's message.
    await page.fill('input[name="token"]', await h.token('viewer', 'x'));
    await page.click('button[type="submit"]');
    await page.waitForSelector('body[data-state="error"]');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-error.png') });
  } finally {
    await browser.close();
    await rm(profile, { recursive: true, force: true });
    await h.close();
  }
});

test.run();
