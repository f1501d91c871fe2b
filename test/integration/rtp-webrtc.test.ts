/**
 * RTP ingest without a browser: ffmpeg streams corpus audio as Opus RTP into a port the API opened; a
 * werift peer in this process plays a WebRTC sender for WHIP. Bad offers, wrong tokens, a DTLS handshake
 * that never completes and a sender that vanishes end in clear errors or state changes, and every UDP
 * socket the gateway opened is closed again.
 */
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RTCPeerConnection, RtpHeader, RtpPacket, type MediaStreamTrack } from 'werift';
import opus from '@discordjs/opus';
import { loadReference } from '../../scripts/make-corpus.ts';
import { decodeWav } from '../../src/audio/wav.ts';
import { readFile } from 'node:fs/promises';
import { startHarness, type Harness } from '../support/harness.ts';
import { CaptionCollector } from '../support/viewer.ts';
import { senderPeer } from '../support/whip-publisher.ts';
import { doubledWords, wordErrorRate } from '../support/wer.ts';
import { RESUME_TOKEN_HEADER, type SessionEvent } from '../../client-sdk/src/protocol.ts';

const run = promisify(execFile);

const openUdpSockets = () => process.getActiveResourcesInfo().filter((r) => r === 'UDPWRAP' || r === 'UDPSocketWrap').length;

async function api(h: Harness, method: string, path: string, token: string, body?: string, type = 'application/sdp') {
  const response = await fetch(`${h.baseUrl}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': type } : {}) }, body });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, json: response.headers.get('content-type')?.includes('json') ? JSON.parse(text) : undefined };
}

async function endAndRead(h: Harness, sessionId: string): Promise<string> {
  const token = await h.token('service');
  await api(h, 'POST', `/v1/sessions/${sessionId}/end`, token);
  const doc = (await api(h, 'GET', `/v1/sessions/${sessionId}/transcript`, token)).json;
  return doc.segments.map((s: { text: string }) => s.text).join(' ');
}

async function waitUntil(condition: () => boolean, timeoutMs = 15000, what = 'condition'): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !condition(); await new Promise((r) => setTimeout(r, 25))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

test('plain RTP: ffmpeg streams a consultation track as Opus RTP into an allocated port', async () => {
  const h = await startHarness({ RTP_BIND_HOST: '127.0.0.1', RTP_IDLE_TIMEOUT_MS: '2000' });
  const before = openUdpSockets();
  try {
    const sessionId = 'rtp-visit';
    const token = await h.token('producer', sessionId);
    const opened = await api(h, 'POST', `/v1/sessions/${sessionId}/tracks/doctor/rtp?role=doctor&participant=Dr.%20Rahimi&language=en&payloadType=111`, token);
    assert.is(opened.status, 201, opened.text);
    assert.is(opened.json.host, '127.0.0.1');
    assert.is(h.gateway.transports().rtpPorts, 1);
    const busy = await api(h, 'POST', `/v1/sessions/${sessionId}/tracks/doctor/rtp?role=doctor`, token);
    assert.is(busy.status, 409);
    assert.is(busy.json.error.code, 'track_busy');
    // Ten times real time: fast, yet paced so the loopback socket buffer never overflows.
    await run('ffmpeg', ['-v', 'error', '-readrate', '10', '-i', `${h.corpusDir}/en/doctor.wav`, '-c:a', 'libopus', '-b:a', '32k', '-payload_type', '111', '-f', 'rtp', `rtp://127.0.0.1:${opened.json.port}`]);
    const closed = await api(h, 'DELETE', `/v1/sessions/${sessionId}/tracks/doctor/rtp`, token);
    assert.is(closed.status, 200);
    const reference = (await loadReference('en')).tracks.doctor.map((w) => w.word).join(' ');
    const wer = wordErrorRate(reference, await endAndRead(h, sessionId));
    console.log(`  plain RTP from ffmpeg: WER ${(wer.wer * 100).toFixed(2)}% over ${wer.referenceWords} words`);
    assert.ok(wer.wer <= 0.02, `WER ${(wer.wer * 100).toFixed(2)}%`);
    assert.is(h.gateway.transports().rtpPorts, 0);
    assert.is(openUdpSockets(), before);
  } finally {
    await h.close();
  }
});

test('plain RTP: a sender that stops is detected, its track ended and its port closed', async () => {
  const h = await startHarness({ RTP_BIND_HOST: '127.0.0.1', RTP_IDLE_TIMEOUT_MS: '700' });
  const before = openUdpSockets();
  try {
    const sessionId = 'rtp-vanish';
    const opened = await api(h, 'POST', `/v1/sessions/${sessionId}/tracks/patient/rtp?role=patient`, await h.token('producer', sessionId));
    const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
    const encoder = new opus.OpusEncoder(48000, 1);
    const sender = createSocket('udp4');
    for (let i = 0; i < 25; i++) {
      const header = Buffer.from([0x80, 111, 0, i, 0, 0, 0, i * 960 >> 8, 0, 0, 0, 42]);
      sender.send(Buffer.concat([header, encoder.encode(Buffer.alloc(1920))]), opened.json.port, '127.0.0.1');
    }
    await viewer.waitFor((e) => e.type === 'error' && e.code === 'track_failed' && /vanished/.test(e.message), 5000);
    await viewer.waitFor((e) => e.type === 'session' && e.tracks.every((t) => t.state === 'ended'), 5000);
    sender.close();
    await waitUntil(() => h.gateway.transports().rtpPorts === 0, 5000, 'the port to close');
    assert.is(openUdpSockets(), before);
  } finally {
    await h.close();
  }
});

async function whipOffer(h: Harness, sessionId: string, trackId: string, token: string, pc: RTCPeerConnection) {
  await pc.setLocalDescription(await pc.createOffer());
  await waitUntil(() => pc.iceGatheringState === 'complete', 10000, 'ICE gathering');
  return api(h, 'POST', `/v1/sessions/${sessionId}/tracks/${trackId}/whip?role=doctor&language=en`, token, pc.localDescription!.sdp);
}

test('WHIP: a werift sender streams a consultation track; DELETE ends it; no peer or socket is left', async () => {
  const h = await startHarness();
  const before = openUdpSockets();
  try {
    const sessionId = 'whip-visit';
    const token = await h.token('producer', sessionId);
    const { pc, track } = senderPeer();
    const answered = await whipOffer(h, sessionId, 'doctor', token, pc);
    assert.is(answered.status, 201, answered.text);
    assert.match(answered.headers.get('content-type') ?? '', /application\/sdp/);
    const location = answered.headers.get('location')!;
    assert.match(location, /^\/v1\/sessions\/whip-visit\/tracks\/doctor\/whip\//);
    assert.match(answered.text, /a=candidate:/);
    await pc.setRemoteDescription({ type: 'answer', sdp: answered.text });
    await waitUntil(() => pc.connectionState === 'connected', 10000, 'the WebRTC connection');
    const trickle = await api(h, 'PATCH', location, token, 'a=candidate:1 1 udp 1 127.0.0.1 9 typ host', 'application/trickle-ice-sdpfrag');
    assert.is(trickle.status, 405);
    // 20 ms Opus packets at about 25 times real time, as RTP with increasing sequence numbers.
    const { samples } = decodeWav(await readFile(`${h.corpusDir}/en/doctor-48k.wav`));
    const encoder = new opus.OpusEncoder(48000, 1);
    for (let i = 0, sequence = 0; i + 960 <= samples.length; i += 960, sequence++) {
      const payload = encoder.encode(Buffer.from(samples.buffer, samples.byteOffset + i * 2, 1920));
      track.writeRtp(new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: sequence & 0xffff, timestamp: (i >>> 0) & 0xffffffff, marker: false }), payload));
      if (sequence % 25 === 0) await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 300));
    const deleted = await api(h, 'DELETE', location, token);
    assert.is(deleted.status, 200);
    await pc.close();
    const reference = (await loadReference('en')).tracks.doctor.map((w) => w.word).join(' ');
    const wer = wordErrorRate(reference, await endAndRead(h, sessionId));
    console.log(`  WHIP from a werift sender: WER ${(wer.wer * 100).toFixed(2)}% over ${wer.referenceWords} words`);
    assert.ok(wer.wer <= 0.02, `WER ${(wer.wer * 100).toFixed(2)}%`);
    assert.is(h.gateway.transports().peers, 0);
    await waitUntil(() => openUdpSockets() === before, 5000, 'UDP sockets to close');
  } finally {
    await h.close();
  }
});

test('WHIP bad input: malformed SDP, no audio, no Opus, wrong token; DTLS that never completes; a peer that vanishes', async () => {
  const h = await startHarness({ WEBRTC_CONNECT_TIMEOUT_MS: '1500', RTP_IDLE_TIMEOUT_MS: '1500', PRODUCER_RESUME_MS: '1000' });
  const before = openUdpSockets();
  try {
    const sessionId = 'whip-bad';
    const token = await h.token('producer', sessionId);
    const path = `/v1/sessions/${sessionId}/tracks/doctor/whip?role=doctor`;
    const malformed = await api(h, 'POST', path, token, 'hello, this is not SDP');
    assert.equal([malformed.status, malformed.json.error.code], [400, 'invalid_sdp']);
    const videoOnly = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n';
    const noAudio = await api(h, 'POST', path, token, videoOnly);
    assert.equal([noAudio.status, noAudio.json.error.code], [422, 'no_audio']);
    const pcmu = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n';
    const noOpus = await api(h, 'POST', path, token, pcmu);
    assert.equal([noOpus.status, noOpus.json.error.code], [422, 'opus_required']);
    assert.match(noOpus.json.error.message, /Opus/);
    const wrongSession = await api(h, 'POST', path, await h.token('producer', 'another-session'), pcmu);
    assert.is(wrongSession.status, 403);
    const noToken = await fetch(`${h.baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pcmu });
    assert.is(noToken.status, 401);
    const wrongType = await api(h, 'POST', path, token, pcmu, 'text/plain');
    assert.is(wrongType.status, 415);
    assert.is(h.gateway.transports().peers, 0);

    // An offer answered, but the sender never connects: ICE/DTLS never completes.
    const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
    const silent = senderPeer();
    const answered = await whipOffer(h, sessionId, 'doctor', token, silent.pc);
    assert.is(answered.status, 201);
    await silent.pc.close();
    await viewer.waitFor((e) => e.type === 'error' && e.code === 'track_failed' && /did not complete/.test(e.message), 8000).catch((error) => {
      throw new Error(`${error.message}: ${JSON.stringify(viewer.events)}`);
    });
    await waitUntil(() => h.gateway.transports().peers === 0, 5000, 'the peer connection to close');

    // A sender that connects, streams, then vanishes without DELETE (its packets just stop).
    const vanishing = senderPeer();
    const offer = await whipOffer(h, sessionId, 'patient', token, vanishing.pc);
    assert.is(offer.status, 201, offer.text);
    await vanishing.pc.setRemoteDescription({ type: 'answer', sdp: offer.text });
    await waitUntil(() => vanishing.pc.connectionState === 'connected', 10000, 'the WebRTC connection');
    const encoder = new opus.OpusEncoder(48000, 1);
    for (let sequence = 0; sequence < 50; sequence++) {
      vanishing.track.writeRtp(new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: sequence, timestamp: sequence * 960 }), encoder.encode(Buffer.alloc(1920))));
    }
    await viewer.waitFor((e) => e.type === 'error' && e.code === 'track_failed' && e.trackId === 'patient' && /vanished/.test(e.message), 8000);
    // It waits PRODUCER_RESUME_MS for a resumed WHIP session, then ends.
    await viewer.waitFor((e) => e.type === 'session' && e.tracks.some((t) => t.trackId === 'patient' && t.state === 'reconnecting'), 8000);
    await viewer.waitFor((e) => e.type === 'session' && e.tracks.length === 2 && e.tracks.every((t) => t.state === 'ended'), 8000);
    const status = await api(h, 'GET', `/v1/sessions/${sessionId}`, token);
    assert.equal(status.json.tracks.map((t: { failure?: string }) => /did not complete|vanished/.test(t.failure ?? '')), [true, true], 'the status says why each track ended');
    await vanishing.pc.close();
    await waitUntil(() => h.gateway.transports().peers === 0, 5000, 'the peer connection to close');
    await waitUntil(() => openUdpSockets() === before, 5000, 'UDP sockets to close');
  } finally {
    await h.close();
  }
});

test('WHIP resume: a new WHIP session with the resume token replaces the old peer and continues the track', async () => {
  const h = await startHarness();
  try {
    const sessionId = 'whip-resume';
    const token = await h.token('producer', sessionId);
    const viewer = await CaptionCollector.connect(h.baseUrl, sessionId, await h.token('viewer', sessionId));
    const { samples } = decodeWav(await readFile(`${h.corpusDir}/en/doctor-48k.wav`));
    const words = (await loadReference('en')).tracks.doctor;
    // The connection is lost between two words of the middle of the track.
    const middle = words.findIndex((w) => w.startMs > words.at(-1)!.endMs / 2);
    const cutSample = Math.round(((words[middle - 1].endMs + words[middle].startMs) / 2) * 48) - (Math.round(((words[middle - 1].endMs + words[middle].startMs) / 2) * 48) % 960);
    const encoder = new opus.OpusEncoder(48000, 1);
    const send = async (track: MediaStreamTrack, from: number, to: number) => {
      for (let i = from, sequence = 0; i + 960 <= to; i += 960, sequence++) {
        const payload = encoder.encode(Buffer.from(samples.buffer, samples.byteOffset + i * 2, 1920));
        track.writeRtp(new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: sequence & 0xffff, timestamp: (i >>> 0) & 0xffffffff, marker: false }), payload));
        if (sequence % 25 === 0) await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 300));
    };
    const connectPeer = async (resume?: string) => {
      const peer = senderPeer();
      await peer.pc.setLocalDescription(await peer.pc.createOffer());
      await waitUntil(() => peer.pc.iceGatheringState === 'complete', 10000, 'ICE gathering');
      const answered = await api(h, 'POST', `/v1/sessions/${sessionId}/tracks/doctor/whip?role=doctor&language=en${resume ? `&resume=${resume}` : ''}`, token, peer.pc.localDescription!.sdp);
      assert.is(answered.status, 201, answered.text);
      await peer.pc.setRemoteDescription({ type: 'answer', sdp: answered.text });
      await waitUntil(() => peer.pc.connectionState === 'connected', 10000, 'the WebRTC connection');
      return { ...peer, location: answered.headers.get('location')!, resumeToken: answered.headers.get(RESUME_TOKEN_HEADER)! };
    };
    const first = await connectPeer();
    assert.match(first.resumeToken, /^[A-Za-z0-9_-]{20,}$/);
    await send(first.track, 0, cutSample);
    // A new WHIP session with another token is refused: the track is busy.
    const intruder = senderPeer();
    await intruder.pc.setLocalDescription(await intruder.pc.createOffer());
    await waitUntil(() => intruder.pc.iceGatheringState === 'complete', 10000, 'ICE gathering');
    const refused = await api(h, 'POST', `/v1/sessions/${sessionId}/tracks/doctor/whip?role=doctor&resume=${'x'.repeat(24)}`, token, intruder.pc.localDescription!.sdp);
    assert.is(refused.status, 409);
    await intruder.pc.close();
    // The phone's network changes: its old peer connection is still up on the gateway's side.
    const second = await connectPeer(first.resumeToken);
    await waitUntil(() => h.gateway.transports().peers === 1, 5000, 'the old peer to be replaced');
    await send(second.track, cutSample, samples.length);
    assert.is((await api(h, 'DELETE', second.location, token)).status, 200);
    await Promise.all([first.pc.close(), second.pc.close()]);
    const states = viewer.events.filter((e): e is SessionEvent => e.type === 'session').map((e) => e.tracks.find((t) => t.trackId === 'doctor')?.state);
    assert.is(states.indexOf('ended'), states.length - 1, `the track ended only once it was deleted (${states.join(',')})`);
    const reference = words.map((w) => w.word).join(' ');
    const transcript = await endAndRead(h, sessionId);
    const wer = wordErrorRate(reference, transcript);
    console.log(`  WHIP resumed mid-track: WER ${(wer.wer * 100).toFixed(2)}% over ${wer.referenceWords} words`);
    assert.ok(wer.wer <= 0.02, `WER ${(wer.wer * 100).toFixed(2)}%\n  ${transcript}`);
    assert.is(doubledWords(reference, transcript), 0);
    assert.ok(viewer.finals.every((f) => f.utteranceId.startsWith('doctor.1.')), 'one connection epoch: the resumed session continued it');
    viewer.close();
  } finally {
    await h.close();
  }
});

test.run();
