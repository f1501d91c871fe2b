import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { containerTruncated, sniffUploadFormat } from '../../src/demux/upload-format.ts';
import { randomBytes } from 'node:crypto';
import { AudioSealer, LocalKeyEncryptionKey } from '../../src/archive/data-keys.ts';
import { DirectoryWindowAudio, InProcessWindowQueue, type WindowJob } from '../../src/stt/window-queue.ts';

const bytes = (...parts: (string | ArrayLike<number>)[]) => new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...Buffer.from(p, 'latin1')] : Array.from(p))));

const sniff = suite('upload type from the bytes');

sniff('each container by its magic number', () => {
  assert.is(sniffUploadFormat(bytes('RIFF', [0, 0, 0, 0], 'WAVEfmt ')), 'wav');
  assert.is(sniffUploadFormat(bytes('OggS', [0, 2])), 'ogg');
  assert.is(sniffUploadFormat(bytes('fLaC', [0, 0, 0, 34])), 'flac');
  assert.is(sniffUploadFormat(bytes([0x1a, 0x45, 0xdf, 0xa3, 0x9f])), 'webm');
  assert.is(sniffUploadFormat(bytes([0, 0, 0, 0x1c], 'ftypM4A ')), 'm4a');
  assert.is(sniffUploadFormat(bytes([0xff, 0xfb, 0x90, 0x64])), 'mp3');
});

sniff('an ID3 tag is skipped to the audio behind it', () => {
  const tag = (size: number) => bytes('ID3', [4, 0, 0, 0, 0, 0, size]);
  assert.is(sniffUploadFormat(bytes(tag(4), [0, 0, 0, 0], [0xff, 0xfb, 0x90, 0x64])), 'mp3');
  assert.is(sniffUploadFormat(bytes(tag(4), [0, 0, 0, 0], 'fLaC')), 'flac');
  assert.is(sniffUploadFormat(bytes(tag(4), [0, 0, 0, 0], 'hello')), undefined);
});

sniff('text, images and AAC streams are not taken for audio containers', () => {
  assert.is(sniffUploadFormat(bytes('Patient notes: follow up')), undefined);
  assert.is(sniffUploadFormat(bytes([0x89], 'PNG')), undefined);
  assert.is(sniffUploadFormat(bytes([0xff, 0xf1, 0x50, 0x80])), undefined, 'ADTS AAC has layer bits 00');
  assert.is(sniffUploadFormat(new Uint8Array(0)), undefined);
});

const truncation = suite('a container cut short');

function wav(dataBytes: number, present: number): { head: Uint8Array; size: number } {
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(Math.min(0xffffffff, 36 + dataBytes), 4);
  header.write('WAVEfmt ', 8, 'latin1');
  header.writeUInt32LE(16, 16);
  header.write('data', 36, 'latin1');
  header.writeUInt32LE(dataBytes, 40);
  return { head: header, size: 44 + present };
}

truncation('a WAV whose data chunk claims more than the file holds', () => {
  const whole = wav(32000, 32000);
  const cut = wav(32000, 19200);
  assert.is(containerTruncated('wav', whole.head, new Uint8Array(), whole.size), false);
  assert.is(containerTruncated('wav', cut.head, new Uint8Array(), cut.size), true);
  assert.is(containerTruncated('wav', wav(0xffffffff, 100).head, new Uint8Array(), 144), false, 'a streaming writer leaves the size unknown');
});

truncation('an Ogg stream whose last page is not end-of-stream', () => {
  const page = (flags: number) => bytes('OggS', [0, flags], new Array(21).fill(0), [0xaa, 0xbb, 0xcc]);
  assert.is(containerTruncated('ogg', page(0), bytes(page(0), page(0x04)), 1000), false);
  assert.is(containerTruncated('ogg', page(0), bytes(page(0), page(0)), 1000), true);
});

const queue = suite('the in-process window queue (same rules as BullMQ)');

const sealer = new AudioSealer(new LocalKeyEncryptionKey(randomBytes(32)));
const dataKey = await sealer.newDataKey();
const job = (index: number): WindowJob => ({ id: `s.upload.${index}`, sessionId: 's', trackId: 'upload', index, startMs: index * 1000, endMs: index * 1000 + 900, dataKey });

async function withQueue(run: (q: InProcessWindowQueue, dir: string) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), 'helssa-queue-'));
  const q = new InProcessWindowQueue(new DirectoryWindowAudio(dir, sealer), { attempts: 3, backoffMs: 20 });
  try {
    await run(q, dir);
  } finally {
    await q.close();
    await rm(dir, { recursive: true, force: true });
  }
}

queue('a job that fails twice is tried a third time, after exponential pauses, and completes', () =>
  withQueue(async (q) => {
    const tries: number[] = [];
    q.startWorker(async (j, audio) => {
      tries.push(performance.now());
      if (tries.length < 3) throw new Error(`STT down (${tries.length})`);
      return { words: [{ word: `${j.index}:${audio.length}`, startMs: j.startMs, endMs: j.endMs }], sttMs: 1 };
    }, 1);
    const done = new Promise<[number, number, string]>((resolve) => q.listen({ completed: (j, r, attempts) => resolve([j.index, attempts, r.words[0].word]), dead: () => undefined }));
    await q.add([{ job: job(4), audio: new Int16Array(320) }], 'normal');
    assert.equal(await done, [4, 3, '4:320']);
    assert.ok(tries[1] - tries[0] >= 18 && tries[2] - tries[1] >= 38, `pauses ${tries[1] - tries[0]}, ${tries[2] - tries[1]} ms`);
  }),
);

queue('a job that fails every attempt is dead-lettered, keeps its audio, and can be retried', () =>
  withQueue(async (q) => {
    let healthy = false;
    q.startWorker(async (j) => {
      if (!healthy) throw new Error('STT down');
      return { words: [], sttMs: j.index };
    }, 2);
    let settle!: (outcome: string) => void;
    q.listen({ completed: (_j, _r, attempts) => settle(`completed after ${attempts}`), dead: (_j, error, attempts) => settle(`dead after ${attempts}: ${error}`) });
    let outcome = new Promise<string>((resolve) => (settle = resolve));
    await q.add([{ job: job(1), audio: new Int16Array(160) }], 'normal');
    assert.is(await outcome, 'dead after 3: STT down');
    healthy = true;
    outcome = new Promise<string>((resolve) => (settle = resolve));
    await q.retry([job(1)]);
    assert.is(await outcome, 'completed after 1');
  }),
);

queue('high-priority uploads are taken before normal ones', () =>
  withQueue(async (q) => {
    const order: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let finished = 0;
    const all = new Promise<void>((resolve) => q.listen({ completed: () => ++finished === 4 && resolve(), dead: () => undefined }));
    q.startWorker(async (j) => {
      order.push(j.index);
      if (j.index === 0) await gate;
      return { words: [], sttMs: 0 };
    }, 1);
    await q.add([{ job: job(0), audio: new Int16Array(1) }], 'normal');
    await q.add([{ job: job(1), audio: new Int16Array(1) }, { job: job(2), audio: new Int16Array(1) }], 'normal');
    await q.add([{ job: job(3), audio: new Int16Array(1) }], 'high');
    release();
    await all;
    assert.equal(order, [0, 3, 1, 2]);
  }),
);

sniff.run();
truncation.run();
queue.run();
