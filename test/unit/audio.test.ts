import opus from '@discordjs/opus';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Decimator48To16 } from '../../src/audio/decimator.ts';
import { Framer } from '../../src/audio/framer.ts';
import { OpusDecoder } from '../../src/audio/opus-decoder.ts';
import { PacketSequencer } from '../../src/audio/packet-sequencer.ts';
import { decodeWav, encodeWav } from '../../src/audio/wav.ts';
import { OPUS_SILENCE_FRAME } from '../../src/archive/track-archive.ts';

const tone = (hz: number, rate: number, seconds: number, amplitude = 10000) =>
  Int16Array.from({ length: rate * seconds }, (_, i) => Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / rate)));
const rms = (s: Int16Array) => Math.sqrt(s.reduce((a, v) => a + v * v, 0) / s.length);

const sequencer = suite('packet sequencer (lost and late packets)');

sequencer('in-order packets pass through', () => {
  const s = new PacketSequencer<string>();
  assert.equal(s.push(1, 'a'), [{ kind: 'packet', packet: 'a' }]);
  assert.equal(s.push(2, 'b'), [{ kind: 'packet', packet: 'b' }]);
  assert.equal(s.stats, { received: 2, lost: 0, late: 0 });
});

sequencer('a gap becomes lost packets to conceal', () => {
  const s = new PacketSequencer<string>();
  s.push(10, 'a');
  assert.equal(s.push(13, 'd'), [{ kind: 'lost', count: 2 }, { kind: 'packet', packet: 'd' }]);
  assert.equal(s.stats.lost, 2);
});

sequencer('a late or duplicate packet is dropped, its slot was concealed', () => {
  const s = new PacketSequencer<string>();
  s.push(10, 'a');
  s.push(12, 'c');
  assert.equal(s.push(11, 'b'), []);
  assert.equal(s.push(12, 'c'), []);
  assert.equal(s.stats.late, 2);
});

sequencer('sequence numbers wrap at 65535', () => {
  const s = new PacketSequencer<string>();
  s.push(65534, 'a');
  assert.equal(s.push(65535, 'b'), [{ kind: 'packet', packet: 'b' }]);
  assert.equal(s.push(1, 'd'), [{ kind: 'lost', count: 1 }, { kind: 'packet', packet: 'd' }]);
});

sequencer('a huge jump is a restart of numbering, not minutes of loss', () => {
  const s = new PacketSequencer<string>(50);
  s.push(100, 'a');
  assert.equal(s.push(5000, 'b'), [{ kind: 'packet', packet: 'b' }]);
  assert.equal(s.stats.lost, 0);
});

sequencer.run();

const decoder = suite('opus decoder');

decoder('decodes 20 ms packets straight to 16 kHz and conceals lost ones with the same length', () => {
  const encoder = new opus.OpusEncoder(48000, 1);
  const pcm = tone(440, 48000, 0.02);
  const packet = encoder.encode(Buffer.from(pcm.buffer));
  const d = new OpusDecoder();
  assert.equal(d.decode(packet).length, 320);
  assert.equal(d.conceal(3).length, 960);
});

decoder('a corrupt packet is concealed and counted, never thrown', () => {
  const d = new OpusDecoder();
  const out = d.decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00]));
  assert.equal(out.length, 320);
  assert.equal(d.corruptPackets, 1);
  assert.equal(d.consecutiveCorrupt, 1);
});

decoder('the archive\'s silence frame is 20 ms of digital silence to libopus', () => {
  const d = new OpusDecoder();
  const out = d.decode(OPUS_SILENCE_FRAME);
  assert.is(d.corruptPackets, 0);
  assert.is(out.length, 320);
  assert.ok(out.every((x) => x === 0));
});

decoder.run();

const pcm = suite('pcm helpers');

pcm('48 kHz → 16 kHz keeps speech-band tones and removes what would alias', () => {
  const d = new Decimator48To16();
  const low = tone(1000, 48000, 0.5);
  const outLow = Int16Array.from([...d.process(low.subarray(0, 7001)), ...d.process(low.subarray(7001))]);
  assert.ok(Math.abs(outLow.length - 8000) <= 22, `length ${outLow.length}`);
  assert.ok(Math.abs(rms(outLow.subarray(100, 7900)) - rms(low)) / rms(low) < 0.02, '1 kHz passes');
  const high = new Decimator48To16().process(tone(10000, 48000, 0.5));
  assert.ok(rms(high.subarray(100)) < rms(low) * 0.01, '10 kHz is filtered out');
});

pcm('framer cuts any chunking into fixed frames and pads the last', () => {
  const f = new Framer(320);
  assert.equal(f.push(new Int16Array(100)).length, 0);
  const frames = f.push(new Int16Array(700));
  assert.equal(frames.length, 2);
  assert.equal(f.flush()[0].length, 320);
  assert.equal(f.flush().length, 0);
});

pcm('WAV round-trips; streaming WAV with an unset data size is read to the end', () => {
  const samples = tone(300, 16000, 0.1);
  const wav = encodeWav(samples, 16000);
  assert.equal(decodeWav(wav).samples, samples);
  wav.writeUInt32LE(0x7ffff000, 40);
  assert.equal(decodeWav(wav).samples.length, samples.length);
  assert.throws(() => decodeWav(Buffer.from('hello world, not audio')), /RIFF/);
});

pcm.run();
