/** Connection lifecycle: producers that vanish without a close, and a gateway shutting down mid-visit. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocket } from 'ws';
import { CloseCode, type SessionEvent } from '../../client-sdk/src/protocol.ts';
import { loadReference } from '../../scripts/make-corpus.ts';
import { startHarness } from '../support/harness.ts';
import { chunksFor, ingestUrl, streamChunks } from '../support/producer.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { wordErrorRate } from '../support/wer.ts';

async function producerVanishes(env: Record<string, string>): Promise<void> {
  const h = await startHarness({ WS_HEARTBEAT_MS: '200', PRODUCER_RESUME_MS: '500', ...env });
  try {
    const viewer = await CaptionCollector.connect(h.baseUrl, 'vanish', await h.token('viewer', 'vanish'));
    const url = ingestUrl(h.baseUrl, 'vanish', 'mic', { format: 'pcm16', sampleRate: 16000, role: 'doctor', access_token: await h.token('producer', 'vanish') });
    const silent = new WebSocket(url, { autoPong: false });
    silent.on('error', () => {});
    await new Promise((resolve) => silent.once('open', resolve));
    silent.send(Buffer.alloc(6400));
    await viewer.waitFor((e) => e.type === 'session' && e.tracks.some((t) => t.state === 'reconnecting'), 5000);
    const ended = (await viewer.tracksEnded(['mic'], 5000)) as SessionEvent;
    assert.equal(ended.tracks[0].state, 'ended');
    viewer.close();
    silent.terminate();
  } finally {
    await h.close();
  }
}

test('a producer whose network dies (no close, no pong) is dropped; its track waits PRODUCER_RESUME_MS, then ends', () => producerVanishes({}));

// Its 200 ms are all still in the denoiser's worker thread when the connection dies: they count as received.
test('the same with RNNoise on: audio still in the denoiser is audio the track has', () => producerVanishes({ AUDIO_NOISE_SUPPRESSION: 'rnnoise' }));

test('shutdown drains: producers are told to reconnect (1001), and what they sent is transcribed and stored first', async () => {
  const h = await startHarness();
  try {
    const viewer = await CaptionCollector.connect(h.baseUrl, 'drain', await h.token('viewer', 'drain'));
    const chunks = await chunksFor({ format: 'ogg', file: `${h.corpusDir}/en/doctor` });
    const streaming = streamChunks(ingestUrl(h.baseUrl, 'drain', 'doctor', { format: 'ogg', role: 'doctor', access_token: await h.token('producer', 'drain') }), chunks, 4);
    await viewer.waitFor((e) => e.type === 'final' && e.seq >= 3, 30000);
    const closing = h.gateway.close();
    const result = await streaming;
    assert.equal(result.closeCode, CloseCode.goingAway);
    assert.match(result.closeReason, /reconnect/);
    await closing;
    // Every word the producer had sent (up to the last second, which may be mid-word) reached the viewers.
    const reference = await loadReference('en');
    const cutoff = result.sentMs - 1000;
    const sentWords = reference.tracks.doctor.filter((w) => w.endMs <= cutoff).map((w) => w.word).join(' ');
    const heard = viewer.finals.flatMap((f) => f.words).filter((w) => w.endMs <= cutoff).map((w) => w.word).join(' ');
    assert.equal(wordErrorRate(sentWords, heard).wer, 0, `sent: ${sentWords}\nheard: ${heard}`);
    assert.ok(sentWords.split(' ').length >= 10, 'the producer was well into the visit');
    viewer.close();
  } finally {
    await h.close();
  }
});

test('a producer sending a whole recording at once holds no one up: a viewer\'s 2 s heartbeat is answered throughout, and every word arrives', async () => {
  // RNNoise on (as in a room with a fan) makes each second of audio cost what it does in a clinic. The
  // gateway used to take such a burst in one go (read ahead, then decoded, denoised and segmented without
  // a break): seconds in which no ping was answered, and the viewer was dropped as dead.
  const h = await startHarness({ WS_HEARTBEAT_MS: '2000', AUDIO_NOISE_SUPPRESSION: 'rnnoise' });
  try {
    const viewer = await CaptionCollector.connect(h.baseUrl, 'burst', await h.token('viewer', 'burst'));
    const chunks = await chunksFor({ format: 'opus', file: `${h.corpusDir}/en/doctor` });
    const producer = new WebSocket(ingestUrl(h.baseUrl, 'burst', 'doctor', { format: 'opus', role: 'doctor', access_token: await h.token('producer', 'burst') }));
    const closed = new Promise<number>((resolve) => producer.once('close', resolve));
    let ackedMs = 0;
    producer.on('message', (data) => (ackedMs = Math.max(ackedMs, (JSON.parse(data.toString()) as { receivedMs?: number }).receivedMs ?? 0)));
    await new Promise((resolve) => producer.once('open', resolve));
    for (const chunk of chunks) producer.send(chunk.data);
    // Closed once the gateway has it all (a close behind a minute of unread audio would wait on TCP).
    const lastMs = chunks.at(-1)!.atMs;
    while (ackedMs < lastMs - 250 && producer.readyState === WebSocket.OPEN) await new Promise((resolve) => setTimeout(resolve, 20));
    producer.close(1000);
    assert.is(await closed, 1000);
    await viewer.tracksEnded(['doctor'], 120000);
    assert.is(viewer.socketState, 'open', 'the viewer was dropped while the burst went through');
    const reference = (await loadReference('en')).tracks.doctor.map((w) => w.word).join(' ');
    assert.is(wordErrorRate(reference, viewer.transcript()).wer, 0);
    viewer.close();
  } finally {
    await h.close();
  }
});

test.run();
