import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { JitterBuffer } from '../../src/audio/jitter-buffer.ts';
import { parseRtp } from '../../src/demux/rtp-packet.ts';
import { announceAddress, checkOffer } from '../../src/demux/sdp-offer.ts';

const jitter = suite('RTP jitter buffer');
const order = (released: { sequence: number }[]) => released.map((r) => r.sequence);

jitter('in-order packets pass straight through', () => {
  const buffer = new JitterBuffer<string>(3);
  assert.equal(order(buffer.push(10, 'a')), [10]);
  assert.equal(order(buffer.push(11, 'b')), [11]);
});

jitter('a packet overtaken by the next two is put back in its place', () => {
  const buffer = new JitterBuffer<string>(3);
  buffer.push(1, 'a');
  assert.equal(order(buffer.push(3, 'c')), []);
  assert.equal(order(buffer.push(4, 'd')), []);
  assert.equal(order(buffer.push(2, 'b')), [2, 3, 4]);
});

jitter('a packet that never comes is given up once the buffer is full; order holds across the 16-bit wrap', () => {
  const buffer = new JitterBuffer<string>(2);
  buffer.push(65534, 'a');
  assert.equal(order(buffer.push(0, 'c')), []);
  assert.equal(order(buffer.push(1, 'd')), []);
  assert.equal(order(buffer.push(2, 'e')), [0, 1, 2]);
  assert.equal(order(buffer.push(65535, 'late')), [65535], 'too late: passed on for the sequencer to drop');
});

jitter('flush releases what is held, in order', () => {
  const buffer = new JitterBuffer<string>(5);
  buffer.push(7, 'a');
  buffer.push(9, 'c');
  buffer.push(11, 'e');
  assert.equal(order(buffer.flush()), [9, 11]);
});

const rtp = suite('RTP packets');

rtp('header, CSRCs, extension and padding are skipped to the payload', () => {
  const packet = Buffer.from([0xb1, 0x6f, 0x01, 0x02, 0, 0, 0x03, 0xc0, 0, 0, 0, 9, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 1, 2, 3, 4, 0xaa, 0xbb, 0, 2]);
  const parsed = parseRtp(packet)!;
  assert.equal([parsed.payloadType, parsed.sequence, parsed.timestamp, parsed.ssrc], [111, 258, 960, 9]);
  assert.equal([...parsed.payload], [0xaa, 0xbb]);
});

rtp('RTCP, STUN and short datagrams are not RTP', () => {
  assert.is(parseRtp(Buffer.from([0x81, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0])), undefined);
  assert.is(parseRtp(Buffer.from([0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0])), undefined);
  assert.is(parseRtp(Buffer.from([0x80, 111])), undefined);
});

const sdp = suite('WHIP offers');
const SECURITY = 'a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef0123456789\r\na=fingerprint:sha-256 AB:CD:EF\r\na=setup:actpass\r\n';
const offer = (media: string, security = SECURITY) => `v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n${security}${media}`;

sdp('an audio offer with Opus passes; otherwise the problem is named', () => {
  assert.is(checkOffer(offer('m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n')), undefined);
  assert.is(checkOffer('not sdp')?.code, 'invalid_sdp');
  assert.is(checkOffer(offer('m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n'))?.code, 'no_audio');
  const bundle = 'a=group:BUNDLE 0 1\r\n';
  assert.is(checkOffer(offer(`${bundle}m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=rtpmap:0 PCMU/8000\r\nm=video 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n`))?.code, 'opus_required', 'Opus must be in the audio section');
});

sdp('offers without DTLS fingerprint, ICE credentials or a valid setup, or with many or unbundled sections, are invalid_sdp', () => {
  const audio = 'm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n';
  const without = (line: string) => SECURITY.split('\r\n').filter((l) => l && !l.startsWith(line)).map((l) => `${l}\r\n`).join('');
  assert.match(checkOffer(offer(audio, without('a=fingerprint')))!.message, /fingerprint/);
  assert.match(checkOffer(offer(audio, without('a=ice-pwd')))!.message, /ICE credentials/);
  assert.match(checkOffer(offer(audio, without('a=setup') + 'a=setup:sideways\r\n'))!.message, /setup/);
  const many = Array.from({ length: 98 }, (_, i) => `m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:${i}\r\na=rtpmap:111 opus/48000/2\r\n`).join('');
  assert.match(checkOffer(offer(many))!.message, /98 media sections/);
  const two = `m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n`;
  assert.match(checkOffer(offer(two))!.message, /BUNDLE/);
  assert.match(checkOffer(offer(audio + audio))!.message, /2 audio sections/);
  for (const problem of [offer(audio, without('a=fingerprint')), offer(many)]) assert.is(checkOffer(problem)!.code, 'invalid_sdp');
});

sdp('the announced address is added beside each host candidate', () => {
  const answer = 'a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\na=end-of-candidates\r\n';
  assert.is(announceAddress(answer, '203.0.113.7'), 'a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\na=candidate:1a 1 udp 2130706432 203.0.113.7 40000 typ host\r\na=end-of-candidates\r\n');
});

jitter.run();
rtp.run();
sdp.run();
