/**
 * End to end in a real browser: Debian's Chromium (headless, driven by playwright-core) with a fake
 * microphone playing corpus speech. The producer page streams through the client SDK, a second page shows
 * the captions, and the test reads the final captions off that page and scores them against the
 * reference. Once over WebRTC (WHIP) with the page's "two people at this microphone" (the captions must
 * show each speaker's lines with the right role), once with UDP blocked so the SDK falls back to the
 * WebSocket ingest. Screenshots of the captions page are kept in test-artifacts/. These run in real time.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadReference } from '../../scripts/make-corpus.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { ffmpeg } from '../support/upload.ts';
import { FlakyProxy } from '../support/flaky-proxy.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { doubledWords, roleAttributedWer, wordErrorRate } from '../support/wer.ts';

const ARTIFACTS = join(import.meta.dirname, '../../test-artifacts');
// Autoplay allowed: the producer page starts by itself, without the click that would let its AudioContext run.
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'];
/** About half a minute of the consultation (both voices, as a room microphone hears it), cut in a pause. */
const EXCERPT_MS = 30000;

async function excerpt(h: Harness, language: string): Promise<{ wav: string; reference: string; roles: { word: string; role: string }[]; durationMs: number }> {
  const words = (await loadReference(language)).tracks.mix;
  // Cut in the middle of the first real pause (≥ 600 ms) after EXCERPT_MS: no word is cut in half.
  const index = words.findIndex((w, i) => w.endMs >= EXCERPT_MS && i + 1 < words.length && words[i + 1].startMs - w.endMs >= 600);
  const durationMs = Math.round((words[index].endMs + words[index + 1].startMs) / 2);
  const last = words[index];
  const wav = join(h.dataDir, `mic-${language}.wav`);
  // Three seconds of quiet first and two after, as when a doctor presses Start, waits for the page to say
  // it is streaming, speaks, and then stops. (The fake microphone starts with the page, not with the
  // connection: with one second, a WebRTC set-up slowed by the other tests beside it (CI) lost "Good morni".)
  await ffmpeg(['-t', String(durationMs / 1000), '-i', `${h.corpusDir}/${language}/mix-48k.wav`, '-af', 'adelay=3000:all=1,apad=pad_dur=2', wav]);
  const said = words.filter((w) => w.endMs <= last.endMs);
  return { wav, reference: said.map((w) => w.word).join(' '), roles: said.map((w) => ({ word: w.word, role: w.speaker === 'doctor' ? 'doctor' : 'patient' })), durationMs: durationMs + 5000 };
}

async function launch(microphoneWav: string, extraFlags: string[] = []): Promise<{ browser: BrowserContext; profile: string }> {
  // A fresh profile every time: nothing carried over between runs.
  const profile = await mkdtemp(join(tmpdir(), 'helssa-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_FLAGS, '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${microphoneWav}%noloop`, ...extraFlags],
  });
  return { browser, profile };
}

async function streamThroughPages(h: Harness, options: { sessionId: string; language: string; speakers?: number; blockUdp?: boolean; dropEveryMs?: number; failPeerAtMs?: number; expectTransport: 'webrtc' | 'websocket'; screenshot: string }) {
  const mic = await excerpt(h, options.language);
  const { browser, profile } = await launch(mic.wav);
  try {
    const captions = await browser.newPage();
    await captions.goto(`${h.baseUrl}/captions.html?session=${options.sessionId}&token=${await h.token('viewer', options.sessionId)}`);
    await captions.waitForSelector('#connection[data-state="open"]');
    const producer = await browser.newPage();
    if (options.failPeerAtMs) {
      // The browser's view of a network change: its peer connection reports `failed` (the media path of
      // this loopback test cannot really break). Everything after, the new WHIP session included, is real.
      await producer.addInitScript(() => {
        const peers: RTCPeerConnection[] = [];
        const Native = window.RTCPeerConnection;
        window.RTCPeerConnection = class extends Native {
          constructor(configuration?: RTCConfiguration) {
            super(configuration);
            peers.push(this);
          }
        };
        Object.assign(window, {
          failFirstPeer: () => {
            Object.defineProperty(peers[0], 'connectionState', { get: () => 'failed' });
            peers[0].dispatchEvent(new Event('connectionstatechange'));
          },
          peerCount: () => peers.length,
        });
      });
    }
    if (options.blockUdp) {
      // A network where UDP is blocked and no TURN relay is configured: ICE finds no usable candidate.
      await producer.addInitScript(() => {
        const Native = window.RTCPeerConnection;
        window.RTCPeerConnection = class extends Native {
          constructor(configuration?: RTCConfiguration) {
            super({ ...configuration, iceTransportPolicy: 'relay' });
          }
        };
      });
    }
    const query = new URLSearchParams({ session: options.sessionId, track: 'doctor', role: 'doctor', participant: 'Room microphone', language: options.language, token: await h.token('producer', options.sessionId), autostart: '1', connectTimeoutMs: '4000' });
    if (options.speakers) query.set('speakers', String(options.speakers));
    // A phone's network: the page (and so its ingest WebSocket) goes through a proxy that cuts it.
    const proxy = options.dropEveryMs ? await FlakyProxy.start(Number(new URL(h.baseUrl).port)) : undefined;
    if (proxy) query.set('transport', 'websocket');
    await producer.goto(`${proxy?.url ?? h.baseUrl}/producer.html?${query}`);
    await producer.waitForSelector('#state[data-state="streaming"]', { timeout: 20000 });
    assert.is(await producer.getAttribute('#transport', 'data-transport'), options.expectTransport);
    // The fake microphone plays the excerpt once, in real time.
    const streamingUntil = Date.now() + mic.durationMs + 500;
    if (options.failPeerAtMs) {
      await producer.waitForTimeout(options.failPeerAtMs);
      await producer.evaluate(() => (window as unknown as { failFirstPeer(): void }).failFirstPeer());
      await producer.waitForSelector('#state[data-state="reconnecting"]');
      await producer.waitForSelector('#state[data-state="streaming"]', { timeout: 15000 });
      assert.is(await producer.evaluate(() => (window as unknown as { peerCount(): number }).peerCount()), 2);
      assert.is(h.gateway.transports().peers, 1, 'the old peer connection was replaced');
    }
    while (proxy && Date.now() + options.dropEveryMs! < streamingUntil) {
      await producer.waitForTimeout(options.dropEveryMs!);
      proxy.drop();
    }
    await producer.waitForTimeout(Math.max(0, streamingUntil - Date.now()));
    if (proxy) {
      await producer.waitForSelector('#state[data-state="streaming"]');
      const reconnects = Number(await producer.getAttribute('#state', 'data-reconnects'));
      assert.ok(reconnects >= proxy.drops, `the page showed each drop as reconnecting (${reconnects} for ${proxy.drops} cuts)`);
      console.log(`  ${proxy.drops} network cuts, ${reconnects} reconnections shown by the page`);
    }
    await producer.click('#stop');
    await producer.waitForSelector('#state[data-state="stopped"]');
    await proxy?.close();
    const ended = await fetch(`${h.baseUrl}/v1/sessions/${options.sessionId}/end`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` } });
    assert.is(ended.status, 200);
    await captions.waitForSelector('body[data-session="ended"]', { timeout: 20000 });
    const shown = await captions.$$eval('.caption.final .text', (lines) => lines.map((line) => line.textContent).join(' '));
    await mkdir(ARTIFACTS, { recursive: true });
    await captions.screenshot({ path: join(ARTIFACTS, options.screenshot), fullPage: true });
    const wer = wordErrorRate(mic.reference, shown);
    console.log(`  ${options.expectTransport}: WER ${(wer.wer * 100).toFixed(2)}% over ${wer.referenceWords} words (${wer.substitutions} substituted, ${wer.deletions} lost, ${wer.insertions} inserted)\n    shown:     ${shown}\n    reference: ${mic.reference}`);
    assert.is(doubledWords(mic.reference, shown), 0, 'no doubled words');
    assert.ok(wer.wer <= 0.03, `${options.expectTransport}: WER ${(wer.wer * 100).toFixed(2)}%\n  shown: ${shown}\n  reference: ${mic.reference}`);
    if (options.language !== 'en') assert.ok(await captions.$$eval('.caption.final', (lines) => lines.every((line) => getComputedStyle(line).direction === 'rtl')), 'right to left');
    if (options.speakers) {
      // Each line is one speaker's, labelled, in the role the gateway gave it.
      const lines = await captions.$$eval('.caption.final', (found) => found.map((line) => ({ speaker: line.querySelector('.speaker')!.textContent!, role: line.classList.contains('doctor') ? 'doctor' : 'patient', text: line.querySelector('.text')!.textContent! })));
      assert.equal([...new Set(lines.map((l) => l.speaker))].sort(), ['S1 · doctor', 'S2 · patient']);
      const roleWer = roleAttributedWer(mic.roles, lines.flatMap((l) => l.text.split(/\s+/).filter(Boolean).map((word) => ({ word, role: l.role }))));
      console.log(`    role-attributed WER on the page: ${(roleWer.wer * 100).toFixed(2)}%`);
      assert.ok(roleWer.wer <= 0.03, `role-attributed WER ${(roleWer.wer * 100).toFixed(2)}%`);
    }
  } finally {
    await browser.close();
    await rm(profile, { recursive: true, force: true });
  }
}

test('the producer page streams over WebRTC (WHIP), two people at one microphone; the captions page shows who said what', async () => {
  const h = await startHarness();
  try {
    await streamThroughPages(h, { sessionId: 'browser-webrtc', language: 'en', speakers: 2, expectTransport: 'webrtc', screenshot: 'captions-webrtc.png' });
    assert.is(h.gateway.transports().peers, 0);
  } finally {
    await h.close();
  }
});

test('with UDP blocked the SDK falls back to the WebSocket ingest; Persian captions are laid out right to left', async () => {
  const h = await startHarness();
  try {
    await streamThroughPages(h, {
      sessionId: 'browser-fallback',
      language: 'fa',
      blockUdp: true,
      expectTransport: 'websocket',
      screenshot: 'captions-websocket-fallback-fa.png',
    });
  } finally {
    await h.close();
  }
});

test('the SDK over the WebSocket ingest through a network cut every 7 s: it reconnects, resends, and no word is lost or doubled', async () => {
  const h = await startHarness();
  try {
    await streamThroughPages(h, { sessionId: 'browser-drops', language: 'en', dropEveryMs: 7000, expectTransport: 'websocket', screenshot: 'captions-websocket-drops.png' });
  } finally {
    await h.close();
  }
});

test('WebRTC: a failed peer connection is replaced by a resumed WHIP session that continues the track', async () => {
  const h = await startHarness();
  try {
    const viewer = await CaptionCollector.connect(h.baseUrl, 'browser-whip-resume', await h.token('viewer', 'browser-whip-resume'));
    await streamThroughPages(h, { sessionId: 'browser-whip-resume', language: 'ar', failPeerAtMs: 12000, expectTransport: 'webrtc', screenshot: 'captions-webrtc-resumed-ar.png' });
    const epochs = new Set(viewer.finals.map((f) => f.utteranceId.split('.').slice(0, 2).join('.')));
    assert.equal([...epochs], ['doctor.1'], 'one connection epoch: the new WHIP session continued the track');
    const states = viewer.events.flatMap((e) => (e.type === 'session' ? e.tracks.map((t) => t.state) : []));
    assert.ok(states.indexOf('ended') === -1 || states.indexOf('ended') > states.lastIndexOf('live'), `the track did not end in between (${states.join(',')})`);
    viewer.close();
  } finally {
    await h.close();
  }
});

test.run();
