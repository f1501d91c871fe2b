/**
 * The live pipeline end to end: corpus consultations streamed over the WebSocket ingest into a real
 * gateway, captions read over the captions WebSocket, STT by the listening test server.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { IngestFormat, PartialEvent } from '../../client-sdk/src/protocol.ts';
import { loadReference } from '../../scripts/make-corpus.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { doubledWords, wordErrorRate } from '../support/wer.ts';

const LANGUAGES = ['en', 'fa', 'ar'] as const;
const TRACKS = ['doctor', 'patient'] as const;

interface Consultation {
  sessionId: string;
  language: string;
  format: IngestFormat;
  sampleRate?: number;
  speed: number;
  dropSequences?: Set<number>;
}

/** Streams both tracks of a consultation and returns the viewer once both tracks have ended. */
async function streamConsultation(h: Harness, c: Consultation): Promise<CaptionCollector> {
  const viewer = await CaptionCollector.connect(h.baseUrl, c.sessionId, await h.token('viewer', c.sessionId));
  const producerToken = await h.token('producer', c.sessionId);
  const results = await Promise.all(
    TRACKS.map(async (track) => {
      const chunks = await chunksFor({ format: c.format, file: `${h.corpusDir}/${c.language}/${track}`, sampleRate: c.sampleRate, dropSequences: c.dropSequences });
      const url = ingestUrl(h.baseUrl, c.sessionId, track, { format: c.format, sampleRate: c.sampleRate, role: track, participant: `${track}-${c.language}`, language: c.language, access_token: producerToken });
      return streamChunks(url, chunks, c.speed);
    }),
  );
  for (const r of results) assert.equal(r.closeCode, 1000, `producer closed normally (${r.closeReason})`);
  await viewer.tracksEnded([...TRACKS], 120000);
  return viewer;
}

async function assertTranscript(viewer: CaptionCollector, language: string, maxWer: number, label: string) {
  const reference = await loadReference(language);
  const refText = reference.tracks.mix.map((w) => w.word).join(' ');
  const hypothesis = viewer.transcript();
  const result = wordErrorRate(refText, hypothesis);
  assert.ok(result.wer <= maxWer, `${label}: WER ${(result.wer * 100).toFixed(2)}% > ${maxWer * 100}%\n  ref: ${refText}\n  hyp: ${hypothesis}`);
  assert.equal(doubledWords(refText, hypothesis), 0, `${label}: no doubled words`);
  for (const track of TRACKS) {
    const perTrack = wordErrorRate(reference.tracks[track].map((w) => w.word).join(' '), viewer.transcript(track));
    assert.ok(perTrack.wer <= maxWer, `${label}/${track}: WER ${(perTrack.wer * 100).toFixed(2)}%`);
    const finals = viewer.finals.filter((f) => f.trackId === track);
    assert.ok(finals.length > 0 && finals.every((f) => f.role === track && f.speaker === `${track}-${language}`), 'finals labelled with role and speaker');
  }
  const seqs = viewer.finals.map((f) => f.seq);
  assert.equal(seqs, seqs.map((_, i) => i + 1), 'final seq numbers are 1..n without gaps');
  return result.wer;
}

test('faster than real time: every language in every ingest format, windows cut every 6 s (seams)', async () => {
  const h = await startHarness({ SEGMENT_MAX_WINDOW_MS: '6000', SEGMENT_SILENCE_MS: '1500', STT_SPEECH_CHECK: 'silero' });
  try {
    const formats: { format: IngestFormat; sampleRate?: number }[] = [
      { format: 'webm' }, { format: 'ogg' }, { format: 'opus' }, { format: 'pcm16', sampleRate: 16000 }, { format: 'pcm16', sampleRate: 48000 },
    ];
    for (const language of LANGUAGES) {
      await Promise.all(
        formats.map(async ({ format, sampleRate }) => {
          const sessionId = `fast-${language}-${format}-${sampleRate ?? ''}`;
          const viewer = await streamConsultation(h, { sessionId, language, format, sampleRate, speed: 0 });
          const turns = 12;
          assert.ok(viewer.finals.length >= turns + 6, `long turns were cut into several windows (${viewer.finals.length} finals for ${turns} turns)`);
          await assertTranscript(viewer, language, 0.02, sessionId);
          viewer.close();
        }),
      );
    }
  } finally {
    await h.close();
  }
});

test('real time: three consultations at once, live partials that never flicker, finals that keep them', async () => {
  const h = await startHarness({ STT_SPEECH_CHECK: 'silero' });
  try {
    const formats: IngestFormat[] = ['webm', 'ogg', 'opus'];
    await Promise.all(
      LANGUAGES.map(async (language, i) => {
        const viewer = await streamConsultation(h, { sessionId: `live-${language}`, language, format: formats[i], speed: 1 });
        await assertTranscript(viewer, language, 0.02, `live-${language}`);
        const partials = viewer.events.filter((e): e is PartialEvent => e.type === 'partial' && (e.stable !== '' || e.unstable !== ''));
        assert.ok(partials.length >= 10, `${language}: partial captions while speaking (${partials.length})`);
        const byUtterance = Map.groupBy(partials, (p) => p.utteranceId);
        for (const [utteranceId, events] of byUtterance) {
          for (let k = 1; k < events.length; k++) {
            assert.ok(events[k].stable.startsWith(events[k - 1].stable), `${utteranceId}: stable text only grows ("${events[k - 1].stable}" → "${events[k].stable}")`);
          }
          const final = viewer.finals.find((f) => f.utteranceId === utteranceId);
          const lastStable = events.at(-1)!.stable;
          if (final && lastStable) assert.ok(final.text.startsWith(lastStable), `${utteranceId}: the final keeps the stable words`);
          const finalIndex = viewer.events.findIndex((e) => e.type === 'final' && e.utteranceId === utteranceId);
          if (finalIndex >= 0) assert.ok(viewer.events.indexOf(events[0]) < finalIndex, 'partials come before their final');
        }
        viewer.close();
      }),
    );
  } finally {
    await h.close();
  }
});

test('lost Opus packets (3%) are concealed; the transcript survives', async () => {
  const h = await startHarness();
  try {
    const drop = new Set<number>();
    let seed = 7;
    for (let seq = 0; seq < 6000; seq++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      if (seed / 2 ** 31 < 0.03) drop.add(seq);
    }
    const viewer = await streamConsultation(h, { sessionId: 'lossy', language: 'en', format: 'opus', speed: 0, dropSequences: drop });
    await assertTranscript(viewer, 'en', 0.02, 'lossy');
    const metrics = await h.gateway.metrics.registry.getSingleMetricAsString('helssa_lost_packets_total');
    assert.match(metrics, /helssa_lost_packets_total \d{2,}/, 'losses counted');
    viewer.close();
  } finally {
    await h.close();
  }
});

test('a late viewer gets the session state and every final so far; ?after=N resumes without repeats', async () => {
  const h = await startHarness();
  try {
    const live = await streamConsultation(h, { sessionId: 'late', language: 'fa', format: 'ogg', speed: 0 });
    const late = await CaptionCollector.connect(h.baseUrl, 'late', await h.token('viewer', 'late'));
    await late.waitFor((e) => e.type === 'final' && e.seq === live.finals.length);
    assert.equal(late.events[0].type, 'session');
    assert.equal(late.finals.map((f) => f.segmentId), live.finals.map((f) => f.segmentId));
    const resumed = await CaptionCollector.connect(h.baseUrl, 'late', await h.token('viewer', 'late'), 5);
    await resumed.waitFor((e) => e.type === 'final' && e.seq === live.finals.length);
    assert.equal(resumed.finals[0].seq, 6);
    assert.equal(resumed.finals.length, live.finals.length - 5);
    for (const v of [live, late, resumed]) v.close();

    const status = await fetch(`${h.baseUrl}/v1/sessions/late`, { headers: { authorization: `Bearer ${await h.token('service')}` } });
    const body = await status.json();
    assert.equal(body.lastSeq, live.finals.length);
    assert.equal(body.tracks.map((t: { state: string }) => t.state), ['ended', 'ended']);
    const ended = await fetch(`${h.baseUrl}/v1/sessions/late/end`, { method: 'POST', headers: { authorization: `Bearer ${await h.token('service')}` } });
    assert.equal((await ended.json()).state, 'completed');
  } finally {
    await h.close();
  }
});

test.run();
