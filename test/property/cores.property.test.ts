/**
 * Invariants of the pure cores over random inputs and parameters (fast-check, fixed seeds):
 *  - stabilizer: stable words only grow, and a final begins with them;
 *  - track captions (seam merger): a random word sequence cut into windows at random points with random
 *    overlaps comes back whole, no word lost or doubled (words returned whole, as a recognizer does);
 *    and with a text-only recognizer (no word times: estimated over the VAD's speech, merged by text),
 *    with the words cut by a window edge garbled to a piece, no word is lost or doubled either;
 *  - recognizer answers: any body is read or refused (RecognizerRefused, nothing else); words come out in
 *    order with sane times, tokens joined into the same letters; word times estimated over speech lie
 *    inside the span and the speech, in order;
 *  - jitter buffer → packet sequencer: reordering within the depth, duplicates, loss and 16-bit wrap give
 *    packets in order, each once, and every gap counted as lost;
 *  - RTP parsing round-trips every header shape and never throws on noise;
 *  - the Ogg Opus writer round-trips any packet sizes through prism's independent demuxer;
 *  - upload sniffing, WHIP offer checks and path segments never throw, and path segments never escape;
 *  - WebVTT and SRT renderings parse back (the `subtitle` package) to the transcript's words;
 *  - the real-time guard is monotone: less media, or more time, is never refused where more was allowed.
 */
import fc from 'fast-check';
import prism from 'prism-media';
import { parseSync } from 'subtitle';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FinalEvent, Word } from '../../client-sdk/src/protocol.ts';
import { insideRoot, pathSegment } from '../../src/archive/safe-path.ts';
import { OggOpusWriter } from '../../src/archive/ogg-opus-writer.ts';
import { Framer } from '../../src/audio/framer.ts';
import { JitterBuffer } from '../../src/audio/jitter-buffer.ts';
import { PacketSequencer } from '../../src/audio/packet-sequencer.ts';
import { RealTimeGuard } from '../../src/audio/real-time-guard.ts';
import { parseRtp } from '../../src/demux/rtp-packet.ts';
import { checkOffer } from '../../src/demux/sdp-offer.ts';
import { containerTruncated, sniffUploadFormat } from '../../src/demux/upload-format.ts';
import { Stabilizer } from '../../src/transcript/stabilizer.ts';
import { recognizedWords, spreadWords } from '../../src/stt/recognized-words.ts';
import { readAnswer, RecognizerRefused } from '../../src/stt/recognizer-answer.ts';
import { wordLikeness } from '../../src/transcript/seam-merger.ts';
import { TrackCaptions } from '../../src/transcript/track-captions.ts';
import { buildTranscript, toSrt, toWebVtt } from '../../src/transcript/transcript-document.ts';

const RUNS = { numRuns: 300, seed: 20261127 };

/** Words one after another: each 100–600 ms, gaps of 0–400 ms, from a small vocabulary (repeats occur). */
const wordSequence = fc.array(fc.record({ word: fc.constantFrom('no', 'yes', 'pain', 'chest', 'left', 'arm', 'the', 'درد', 'ألم'), durationMs: fc.integer({ min: 100, max: 600 }), gapMs: fc.integer({ min: 0, max: 400 }) }), { minLength: 1, maxLength: 120 }).map((items) => {
  let t = 0;
  return items.map(({ word, durationMs, gapMs }) => {
    t += gapMs;
    const w: Word = { word, startMs: t, endMs: t + durationMs };
    t += durationMs;
    return w;
  });
});

/** The windows of a stretch of speech cut at the given lengths, each overlapping the next by `overlapMs`, seams in the middle. */
function cutIntoWindows(words: readonly Word[], lengths: readonly number[], overlapMs: number) {
  const endOfSpeech = words.at(-1)!.endMs + 1;
  const windows: { utteranceId: number; startMs: number; endMs: number; keepFromMs?: number; keepUntilMs?: number }[] = [];
  let start = 0;
  let keepFrom: number | undefined;
  for (let i = 0; start < endOfSpeech; i++) {
    const cut = start + Math.max(lengths[i % lengths.length], overlapMs * 2 + 1);
    const last = cut >= endOfSpeech;
    const seam = last ? undefined : cut - overlapMs / 2;
    windows.push({ utteranceId: i + 1, startMs: start, endMs: last ? endOfSpeech : cut, keepFromMs: keepFrom, keepUntilMs: seam });
    if (last) break;
    keepFrom = seam;
    start = cut - overlapMs;
  }
  return windows;
}

test('stabilizer: stable words only grow; the final begins with them', () => {
  fc.assert(
    fc.property(wordSequence, fc.array(fc.tuple(fc.nat(), fc.boolean()), { minLength: 1, maxLength: 30 }), (words, steps) => {
      const stabilizer = new Stabilizer();
      let previous: readonly Word[] = [];
      let shown = 0;
      for (const [grow, revise] of steps) {
        shown = Math.min(words.length, shown + (grow % 5));
        // A hypothesis: the words so far, sometimes with its last word misheard.
        const hypothesis = words.slice(0, shown).map((w, i) => (revise && i === shown - 1 ? { ...w, word: `${w.word}?` } : w));
        const { stable } = stabilizer.update(hypothesis);
        assert.ok(stable.length >= previous.length);
        previous.forEach((w, i) => assert.equal(stable[i], w));
        previous = [...stable];
      }
      const final = stabilizer.finalize(words);
      previous.forEach((w, i) => assert.equal(final[i], w));
    }),
    RUNS,
  );
});

test('track captions: windows cut at random points with random overlaps give every word once', () => {
  fc.assert(
    fc.property(wordSequence, fc.array(fc.integer({ min: 2000, max: 28000 }), { minLength: 1, maxLength: 12 }), fc.integer({ min: 600, max: 3000 }), (words, lengths, overlapMs) => {
      const captions = new TrackCaptions();
      // The recognizer returns the words lying whole inside the window.
      const out = cutIntoWindows(words, lengths, overlapMs).flatMap((window) => captions.final(window, words.filter((w) => w.startMs >= window.startMs && w.endMs <= window.endMs)));
      assert.equal(out.map((w) => `${w.word}@${w.startMs}`), words.map((w) => `${w.word}@${w.startMs}`));
    }),
    RUNS,
  );
});

/**
 * Dictation: words of 150–700 ms with gaps of 60–220 ms (no pause long enough to end an utterance), a
 * clinic's vocabulary; a word is never said twice in a row ("no no no" is as ambiguous to a text merge
 * as to a reader of the two windows' texts).
 */
const VOCABULARY = ['patient', 'reports', 'chest', 'pain', 'for', 'three', 'days', 'with', 'shortness', 'of', 'breath', 'no', 'fever', 'blood', 'pressure', 'is', 'high',
  'metformin', 'twice', 'daily', 'the', 'left', 'arm', 'and', 'jaw', 'درد', 'قفسه', 'سینه', 'دارد', 'ألم', 'في', 'الصدر', 'منذ', 'ثلاثة', 'أيام'];
const dictation = fc.array(fc.record({ word: fc.constantFrom(...VOCABULARY), durationMs: fc.integer({ min: 150, max: 700 }), gapMs: fc.integer({ min: 60, max: 220 }) }), { minLength: 1, maxLength: 150 }).map((items) => {
  let t = 0;
  let previous = '';
  return items.map(({ word, durationMs, gapMs }) => {
    t += gapMs;
    const said = word === previous ? VOCABULARY[(VOCABULARY.indexOf(word) + 1) % VOCABULARY.length] : word;
    previous = said;
    const w: Word = { word: said, startMs: t, endMs: t + durationMs };
    t += durationMs;
    return w;
  });
});

/** What a text-only recognizer hears of a window: whole words, and a piece of a word an edge cuts when most of it is inside. */
function heardText(words: readonly Word[], start: number, end: number): string {
  const heard: string[] = [];
  for (const w of words) {
    const inside = Math.min(w.endMs, end) - Math.max(w.startMs, start);
    if (inside <= 0) continue;
    if (w.startMs >= start && w.endMs <= end) heard.push(w.word);
    else if (inside / (w.endMs - w.startMs) >= 0.5) {
      const letters = [...w.word];
      const keep = Math.max(1, Math.floor(letters.length * (inside / (w.endMs - w.startMs)) * 0.7));
      heard.push(w.startMs < start ? letters.slice(-keep).join('') : letters.slice(0, keep).join(''));
    }
  }
  return heard.join(' ');
}

test('track captions, text-only recognizer: cuts inside speech with garbled edges lose and double no word', () => {
  fc.assert(
    fc.property(dictation, fc.array(fc.integer({ min: 4000, max: 28000 }), { minLength: 1, maxLength: 12 }), fc.integer({ min: 1000, max: 3000 }), (words, lengths, overlapMs) => {
      const captions = new TrackCaptions();
      const out = cutIntoWindows(words, lengths, overlapMs).flatMap((window) => {
        // The VAD's speech stretches: the words' own spans, clipped to the window.
        const speech = words.filter((w) => w.endMs > window.startMs && w.startMs < window.endMs).map((w): [number, number] => [Math.max(w.startMs, window.startMs), Math.min(w.endMs, window.endMs)]);
        const recognized = recognizedWords({ text: heardText(words, window.startMs, window.endMs) }, { ...window, speech });
        return captions.final(window, recognized.words, recognized.timed);
      });
      const said = words.map((w) => w.word);
      const got = out.map((w) => w.word);
      assert.is(got.length, said.length, `no word lost or doubled\n  said: ${said.join(' ')}\n  got:  ${got.join(' ')}`);
      got.forEach((word, i) => assert.ok(wordLikeness(word, said[i]) >= 1, `word ${i}: "${word}" for "${said[i]}"`));
      // Estimated times, but in the order spoken across finals too: a viewer ordering a track's words by time reads them as said.
      out.forEach((w, i) => assert.ok(w.endMs >= w.startMs && (i === 0 || w.startMs >= out[i - 1].startMs), `word ${i} "${w.word}" at ${w.startMs} ms, before the word published ahead of it (${out[i - 1]?.startMs} ms)`));
    }),
    RUNS,
  );
});

const timedWord = fc.record({ word: fc.string({ minLength: 1, maxLength: 12 }), start: fc.double({ min: -5, max: 40, noNaN: true }), end: fc.double({ min: -5, max: 40, noNaN: true }) });

test('recognizer answers: anything is read or refused; words in order, times sane, tokens joined', () => {
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), fc.string(), fc.constant(undefined)), fc.constantFrom('verbose_json', 'json', 'text') as fc.Arbitrary<'verbose_json' | 'json' | 'text'>, (body, format) => {
      try {
        readAnswer(body, format);
      } catch (error) {
        assert.instance(error, RecognizerRefused);
      }
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.array(timedWord, { maxLength: 30 }), fc.boolean(), fc.boolean(), (words, asTokens, inSegments) => {
      // whisper.cpp's tokens: the first of a word starts with a space; OpenAI's words have none.
      const listed = asTokens ? words.map((w, i) => ({ ...w, word: i % 3 === 1 ? w.word.trim() || 'x' : ` ${w.word}` })) : words;
      const body = inSegments ? { text: 't', segments: [{ start: 0, end: 1, text: 't', words: listed }] } : { text: 't', words: listed };
      const read = readAnswer(body, 'verbose_json').words ?? [];
      read.forEach((w, i) => assert.ok(w.start >= 0 && w.end >= w.start && (i === 0 || w.start >= read[i - 1].start) && w.word === w.word.trim() && w.word.length > 0));
      const letters = (list: { word: string }[]) => list.map((w) => w.word.replace(/\s+/g, '')).join('').length;
      assert.is(letters(read), letters(listed), 'no letter lost or added');
    }),
    RUNS,
  );
});

test('word times estimated over speech: inside the span and the speech, in order, every word', () => {
  fc.assert(
    fc.property(fc.array(fc.stringMatching(/^[a-zء-ي]{1,10}$/), { minLength: 1, maxLength: 40 }), fc.array(fc.tuple(fc.double({ min: 0, max: 30, noNaN: true }), fc.double({ min: 0.02, max: 3, noNaN: true })), { maxLength: 8 }), (words, stretches) => {
      let t = 0;
      const speech = stretches.map(([gap, length]): [number, number] => [(t += gap), (t += length)]);
      const span = Math.max(1, t + 1);
      const out = spreadWords(words.join(' '), 0, span, speech);
      assert.equal(out.map((w) => w.word), words);
      const inSpeech = (time: number) => speech.length === 0 || speech.some(([a, b]) => time >= a - 1e-9 && time <= b + 1e-9);
      out.forEach((w, i) => {
        assert.ok(w.start >= 0 && w.end <= span + 1e-9 && w.end >= w.start - 1e-9 && (i === 0 || w.start >= out[i - 1].end - 1e-9), `${w.word} ${w.start}–${w.end}`);
        assert.ok(inSpeech(w.start), `${w.word} starts in speech`);
      });
    }),
    RUNS,
  );
});

test('jitter buffer and sequencer: reorder, duplicates, loss and wrap give each packet once, in order, gaps counted', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 1, max: 400 }), fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 400 }), fc.double({ min: 0, max: 0.2, noNaN: true }), fc.nat(), (first, count, shifts, lossRate, seed) => {
      const random = (() => {
        let x = seed || 1;
        return () => ((x = (x * 48271) % 2147483647) / 2147483647);
      })();
      const sent: number[] = [];
      for (let i = 0; i < count; i++) if (i === 0 || i === count - 1 || random() >= lossRate) sent.push(i);
      // Reordering within the buffer's depth (each packet moved back by at most 3 places), and duplicates.
      // The first packet arrives first: it starts the numbering (one that comes later is late).
      const arrival = [...sent];
      shifts.forEach((shift, i) => {
        const j = Math.min(arrival.length - 1, i + 1 + shift);
        if (i + 1 < arrival.length) [arrival[i + 1], arrival[j]] = [arrival[j], arrival[i + 1]];
      });
      for (let i = 0; i < arrival.length; i += 17) arrival.splice(i, 0, arrival[i]);
      const jitter = new JitterBuffer<number>(3);
      const sequencer = new PacketSequencer<number>();
      const delivered: number[] = [];
      let lost = 0;
      const take = (items: { sequence: number; packet: number }[]) => {
        for (const { sequence, packet } of items) {
          for (const item of sequencer.push(sequence, packet)) {
            if (item.kind === 'packet') delivered.push(item.packet);
            else lost += item.count;
          }
        }
      };
      for (const i of arrival) take(jitter.push((first + i) % 65536, i));
      take(jitter.flush());
      for (let k = 1; k < delivered.length; k++) assert.ok(delivered[k] > delivered[k - 1], 'in order, each once');
      assert.is(delivered[0], 0);
      assert.is(delivered.at(-1), count - 1);
      assert.is(delivered.length + lost, count, 'every missing packet is counted lost');
    }),
    RUNS,
  );
});

test('RTP: every header shape parses back; noise never throws', () => {
  fc.assert(
    fc.property(
      fc.record({ pt: fc.integer({ min: 0, max: 127 }).filter((p) => p < 72 || p > 76), seq: fc.integer({ min: 0, max: 65535 }), ts: fc.nat({ max: 0xffffffff }), ssrc: fc.nat({ max: 0xffffffff }), csrc: fc.integer({ min: 0, max: 15 }), ext: fc.option(fc.integer({ min: 0, max: 8 })), padding: fc.integer({ min: 0, max: 40 }), payload: fc.uint8Array({ maxLength: 300 }) }),
      (p) => {
        const header = Buffer.alloc(12 + p.csrc * 4);
        header[0] = 0x80 | (p.ext !== null ? 0x10 : 0) | (p.padding ? 0x20 : 0) | p.csrc;
        header[1] = p.pt;
        header.writeUInt16BE(p.seq, 2);
        header.writeUInt32BE(p.ts, 4);
        header.writeUInt32BE(p.ssrc, 8);
        const ext = p.ext === null ? Buffer.alloc(0) : Buffer.alloc(4 + p.ext * 4);
        if (p.ext !== null) ext.writeUInt16BE(p.ext, 2);
        const pad = Buffer.alloc(p.padding);
        if (p.padding) pad[p.padding - 1] = p.padding;
        const parsed = parseRtp(Buffer.concat([header, ext, Buffer.from(p.payload), pad]))!;
        assert.equal([parsed.payloadType, parsed.sequence, parsed.timestamp, parsed.ssrc], [p.pt, p.seq, p.ts, p.ssrc]);
        assert.ok(parsed.payload.equals(Buffer.from(p.payload)));
      },
    ),
    RUNS,
  );
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => void parseRtp(Buffer.from(bytes))), { numRuns: 2000, seed: 1 });
});

test('Ogg Opus writer: any packet sizes and page flushes round-trip through an independent demuxer', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 1, max: 4000 }), fc.boolean()), { minLength: 0, maxLength: 60 }), async (shapes) => {
      const packets = shapes.map(([size], i) => {
        const packet = Buffer.alloc(size, i % 251);
        packet[0] = 0xfc; // TOC: CELT FB 20 ms, one frame
        return packet;
      });
      const writer = new OggOpusWriter({ serial: 3, inputSampleRate: 48000 });
      const parts: Buffer[] = [];
      packets.forEach((p, i) => {
        writer.packet(p);
        if (shapes[i][1]) parts.push(writer.flush());
      });
      parts.push(writer.end());
      const demuxer = new prism.opus.OggDemuxer();
      const back: Buffer[] = [];
      demuxer.on('data', (p: Buffer) => back.push(p));
      demuxer.end(Buffer.concat(parts));
      await new Promise((resolve, reject) => (demuxer.on('end', resolve), demuxer.on('error', reject)));
      assert.is(back.length, packets.length);
      back.forEach((p, i) => assert.ok(p.equals(packets[i])));
      assert.is(writer.samples, packets.length * 960);
    }),
    { numRuns: 100, seed: 20261127 },
  );
});

test('upload sniffing, truncation checks, WHIP offer checks and path segments never throw; paths never escape', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), fc.nat(), (head, tail, size) => {
      const format = sniffUploadFormat(head);
      if (format) containerTruncated(format, head, tail, size);
    }),
    { numRuns: 3000, seed: 2 },
  );
  fc.assert(fc.property(fc.string({ maxLength: 400 }), (text) => void checkOffer(text)), { numRuns: 2000, seed: 3 });
  fc.assert(fc.property(fc.array(fc.constantFrom('v=0', 'o=- 1 1 IN IP4 1.1.1.1', 'm=audio 9 RTP 111', 'm=video 9 RTP 96', 'a=rtpmap:111 opus/48000/2', 'a=group:BUNDLE 0', 'a=mid:0', 'a=setup:actpass', 'a=fingerprint:sha-256 AB', 'a=ice-ufrag:x', 'a=ice-pwd:y', ''), { maxLength: 30 }), (lines) => void checkOffer(lines.join('\r\n'))), { numRuns: 2000, seed: 4 });
  fc.assert(
    fc.property(fc.string({ minLength: 1, maxLength: 60 }), (id) => {
      const segment = pathSegment(id);
      assert.not.ok(segment.includes('/') || segment === '.' || segment === '..', segment);
      assert.is(decodeURIComponent(segment), id);
      assert.ok(insideRoot('/spool', segment, 'x').startsWith('/spool/'));
    }),
    { numRuns: 3000, seed: 5 },
  );
  fc.assert(fc.property(fc.array(fc.constantFrom('..', '.', 'a', '/', 'b/../..'), { maxLength: 6 }), (parts) => {
    try {
      assert.ok(insideRoot('/root', ...parts).startsWith('/root/'));
    } catch (error) {
      assert.is((error as Error).name, 'PathEscapeError');
    }
  }), { numRuns: 1000, seed: 6 });
});

test('WebVTT and SRT parse back to the transcript words, whatever the text', () => {
  const text = fc.oneof(fc.constantFrom('pain', '<b>', 'a&b', 'درد', 'ألم', '-->', 'x'), fc.string({ minLength: 1, maxLength: 8 }).filter((s) => /^[\p{L}\p{N}]+$/u.test(s)));
  fc.assert(
    fc.property(fc.array(fc.record({ words: fc.array(text, { minLength: 1, maxLength: 40 }), gapMs: fc.integer({ min: 0, max: 5000 }) }), { minLength: 1, maxLength: 6 }), (segments) => {
      let t = 0;
      const finals = segments.map((s, i): FinalEvent => {
        t += s.gapMs;
        const words = s.words.map((w) => ({ word: w, startMs: (t += 50), endMs: (t += 250) }));
        return { type: 'final', sessionId: 's', seq: i + 1, segmentId: `s.${i + 1}`, trackId: 't', role: 'doctor', roleSource: 'track', speaker: 'Dr', utteranceId: `u${i}`, text: s.words.join(' '), words, startMs: words[0].startMs, endMs: words.at(-1)!.endMs };
      });
      const doc = buildTranscript({ id: 's', encounterRef: null, language: null }, finals, 1, new Date(0));
      const expected = finals.flatMap((f) => f.words.map((w) => w.word)).join(' ');
      const vtt = parseSync(toWebVtt(doc)).filter((n) => n.type === 'cue').map((n) => (n.data as { text: string }).text.replace(/^<v [^>]*>/, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'));
      const srt = parseSync(toSrt(doc)).filter((n) => n.type === 'cue').map((n) => (n.data as { text: string }).text.replace(/^Dr: /, ''));
      assert.is(vtt.join(' '), expected);
      assert.is(srt.join(' '), expected);
    }),
    { numRuns: 200, seed: 7 },
  );
});

test('real-time guard: less media or more elapsed time is never refused where more media was allowed', () => {
  fc.assert(
    fc.property(fc.double({ min: 1, max: 10, noNaN: true }), fc.integer({ min: 0, max: 60000 }), fc.array(fc.tuple(fc.nat({ max: 100000 }), fc.nat({ max: 100000 })), { minLength: 1, maxLength: 50 }), (maxSpeed, burstMs, probes) => {
      const guard = new RealTimeGuard({ maxSpeed, burstMs });
      guard.allows(0, 0);
      for (const [media, time] of probes) {
        if (guard.allows(media, time)) {
          assert.ok(guard.allows(media / 2, time));
          assert.ok(guard.allows(media, time + 1000));
        }
        assert.is(guard.allows(media, time), media <= burstMs + maxSpeed * time);
      }
    }),
    RUNS,
  );
});

test('framer: any chunking gives the same frames, padded at the end, and a frame handed out never changes', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 40 }), fc.constantFrom(160, 320, 480), (lengths, frameSamples) => {
      const framer = new Framer(frameSamples);
      let next = 1;
      const frames: { frame: Int16Array; copy: Int16Array }[] = [];
      for (const length of lengths) {
        const chunk = Int16Array.from({ length }, () => next++ % 30000);
        for (const frame of framer.push(chunk)) frames.push({ frame, copy: frame.slice() });
        assert.ok(framer.pendingSamples < frameSamples);
      }
      for (const frame of framer.flush()) frames.push({ frame, copy: frame.slice() });
      const total = next - 1;
      assert.is(frames.length, Math.ceil(total / frameSamples));
      frames.forEach(({ frame, copy }, f) => {
        assert.is(frame.length, frameSamples);
        assert.equal(frame, copy, 'unchanged since it was handed out');
        for (let i = 0; i < frameSamples; i++) assert.is(frame[i], f * frameSamples + i < total ? (f * frameSamples + i + 1) % 30000 : 0);
      });
    }),
    RUNS,
  );
});

test.run();
