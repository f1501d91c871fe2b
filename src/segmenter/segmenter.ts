/**
 * The VAD-driven segmenter: pure code, no timers or I/O. It receives fixed-size audio frames with a
 * voice-activity decision and returns the windows to transcribe. Time is the frame count, so hours of
 * audio replay in milliseconds in tests.
 *
 *  - Speech starts after `minSpeechMs` of consecutive speech frames; the window begins `preRollMs`
 *    earlier so the first syllable is not clipped.
 *  - Speech ends after `silenceMs` of non-speech; the window keeps `trailingPadMs` after the last speech.
 *  - After a pause the next window's pre-roll may reach back into the previous window's silent tail
 *    (never its speech), with a seam at that window's end (`keepFromMs`). A pause hardly longer than
 *    `silenceMs` (speech again within `silenceMs + preRollMs`) is sent whole, from the previous speech
 *    on: a VAD that hears a word's weak onset (an unvoiced consonant under noise) as silence makes such
 *    a pause out of its first syllables, which the pre-roll alone would cut.
 *  - While speech goes on, a `partial` window (start of utterance → now) is emitted every
 *    `partialIntervalMs`, for live captions.
 *  - A window never exceeds `maxWindowMs` (Whisper sees 30 s at most). Near the limit it is cut in the
 *    latest pause of at least `pauseCutMs` within the last `cutSearchMs`: no word is at such a cut, so
 *    the next window starts right there and nothing needs merging. Without such a pause it is cut at the
 *    quietest point, and the next window starts `overlapMs` before the cut so a word at the cut is heard
 *    whole by one of the two windows. Each window says which stretch it is authoritative for
 *    (`keepFromMs`/`keepUntilMs`: the middle of the overlap), which the merger uses.
 *  - Each window lists its stretches of VAD speech (`speech`), from which word times are estimated when
 *    the recognizer gives none.
 *  - Speculative finals: after `speculativeSilenceMs` of silence (less than `silenceMs`) a `speculative`
 *    window of the utterance so far is emitted, so its STT call overlaps the rest of the endpointing
 *    silence. Speech before `silenceMs` cancels it (the utterance goes on). When the silence is confirmed
 *    the final window says which speculative window `confirms` it: the final adds only non-speech audio,
 *    so the speculative transcript stands for it. `commitSpeculation` closes the utterance at once at the
 *    speculative window's end (its transcript matched the last partial): speech after it starts a new
 *    utterance, so nothing published is ever taken back; as after any pause, that utterance's window
 *    may reach back into the committed window's silent tail: a word the VAD heard late, begun before
 *    the commit, is heard whole by the new window.
 */

export interface SegmenterOptions {
  /** Samples per second of the incoming frames. Default 16000. */
  sampleRate: number;
  /** Duration of one frame; webrtcvad accepts 10, 20 or 30 ms. Default 20. */
  frameMs: number;
  /** Audio kept before the detected start of speech. Default 300. */
  preRollMs: number;
  /** Consecutive speech needed to open an utterance (filters clicks). Default 60. */
  minSpeechMs: number;
  /** Non-speech that ends an utterance. Default 500. */
  silenceMs: number;
  /** Audio kept after the last speech frame; at most `silenceMs`. Default 300. */
  trailingPadMs: number;
  /** Interval between partial windows while speech goes on; 0 disables partials. Default 1000. */
  partialIntervalMs: number;
  /** Longest window. Default 28000 (Whisper's context is 30 s). */
  maxWindowMs: number;
  /** How far before the limit to look for the quietest cut point. Default 4000. */
  cutSearchMs: number;
  /** Audio before a max-length cut carried into the next window. Default 1500. */
  overlapMs: number;
  /** A pause at least this long is where a max-length cut goes first, with no overlap. Default 150. */
  pauseCutMs: number;
  /**
   * Offline mode (uploads): overlap only when the cut falls inside speech; a cut in a pause needs none.
   * Default false (live: always overlap, a VAD pause may still hide a soft word).
   */
  overlapOnlyInSpeech: boolean;
  /** Silence after which a speculative final window is emitted; 0 disables speculation. Below `silenceMs`. Default 0. */
  speculativeSilenceMs: number;
}

export const DEFAULT_SEGMENTER_OPTIONS: SegmenterOptions = {
  sampleRate: 16000,
  frameMs: 20,
  preRollMs: 300,
  minSpeechMs: 60,
  silenceMs: 500,
  trailingPadMs: 300,
  partialIntervalMs: 1000,
  maxWindowMs: 28000,
  cutSearchMs: 4000,
  overlapMs: 1500,
  pauseCutMs: 150,
  overlapOnlyInSpeech: false,
  speculativeSilenceMs: 0,
};

export interface AudioFrame {
  /** Exactly `sampleRate * frameMs / 1000` samples. */
  samples: Int16Array;
  isSpeech: boolean;
}

export type WindowKind = 'partial' | 'final' | 'speculative';
export type WindowCloseReason = 'silence' | 'max-length' | 'flush';

export interface AudioWindow {
  /** Increases by one per window of this segmenter, partials included. */
  id: number;
  /** Windows of one utterance share this id; a max-length cut starts a new utterance. */
  utteranceId: number;
  kind: WindowKind;
  /** Why a final window closed; absent on partials. */
  closedBy?: WindowCloseReason;
  startMs: number;
  endMs: number;
  /** Words centred before this belong to the previous window (set after a max-length cut with overlap). */
  keepFromMs?: number;
  /** Words centred at or after this belong to the next window (set when cut with overlap). */
  keepUntilMs?: number;
  /** On a final: the speculative window of the same utterance whose transcript stands for this one. */
  confirms?: number;
  /** The stretches the VAD called speech, [startMs, endMs] in track time, in order. */
  speech: [number, number][];
  /** A view of the segmenter's frames, which it never writes again: read it, never write into it. */
  audio: Int16Array;
  /**
   * Set by the track's owner: windows with the same key start at the same sample of the same audio, so
   * a check over them can continue from the earlier one.
   */
  stream?: string;
}

/** Room a new block of the frame log has beyond the frames it carries over, at least: 4 s of 20 ms frames. */
const MIN_BLOCK_ROOM = 200;

/**
 * The frames a segmenter holds: their samples, VAD decisions and energies, appended to a block that is
 * never written again where it has been written. A window's audio is a view of its block (no copy: a
 * partial every second of a long utterance copied all of it again, most of them for nothing), which
 * stays valid for as long as the window is held. A full block is followed by a new one that carries over
 * the frames still held, with room for half as many again (at least MIN_BLOCK_ROOM).
 */
class FrameLog {
  private readonly frameSamples: number;
  private samples: Int16Array;
  private speech: Uint8Array;
  private energy: Float64Array;
  /** Absolute index of the block's first frame, and the frames written to it. */
  private blockStart = 0;
  private written = 0;
  /** Absolute index of the first frame still held. */
  first = 0;

  constructor(frameSamples: number) {
    this.frameSamples = frameSamples;
    this.samples = new Int16Array(MIN_BLOCK_ROOM * frameSamples);
    this.speech = new Uint8Array(MIN_BLOCK_ROOM);
    this.energy = new Float64Array(MIN_BLOCK_ROOM);
  }

  /** Absolute index of the next frame. */
  get end(): number {
    return this.blockStart + this.written;
  }

  append(samples: Int16Array, isSpeech: boolean): void {
    if (this.written === this.speech.length) this.nextBlock();
    const at = this.written++;
    this.samples.set(samples, at * this.frameSamples);
    this.speech[at] = isSpeech ? 1 : 0;
    this.energy[at] = meanSquare(samples);
  }

  isSpeech(frame: number): boolean {
    return this.speech[this.indexOf(frame)] === 1;
  }

  energyOf(frame: number): number {
    return this.energy[this.indexOf(frame)];
  }

  /** Frames [start, end) as one view (never written again). */
  audio(start: number, end: number): Int16Array {
    if (start < this.first || end > this.end) throw new Error(`segmenter: frames ${start}–${end} are no longer held`);
    return this.samples.subarray((start - this.blockStart) * this.frameSamples, (end - this.blockStart) * this.frameSamples);
  }

  /** Frames before `frame` are not needed any more. */
  dropBefore(frame: number): void {
    this.first = Math.min(Math.max(this.first, frame), this.end);
  }

  private indexOf(frame: number): number {
    if (frame < this.first || frame >= this.end) throw new Error(`segmenter: frame ${frame} is no longer held`);
    return frame - this.blockStart;
  }

  private nextBlock(): void {
    const from = this.first - this.blockStart;
    const held = this.written - from;
    const frames = held + Math.max(MIN_BLOCK_ROOM, held >> 1);
    const samples = new Int16Array(frames * this.frameSamples);
    samples.set(this.samples.subarray(from * this.frameSamples, this.written * this.frameSamples));
    const speech = new Uint8Array(frames);
    speech.set(this.speech.subarray(from, this.written));
    const energy = new Float64Array(frames);
    energy.set(this.energy.subarray(from, this.written));
    this.samples = samples;
    this.speech = speech;
    this.energy = energy;
    this.blockStart = this.first;
    this.written = held;
  }
}

export class Segmenter {
  readonly options: SegmenterOptions;
  private readonly frameSamples: number;
  private readonly frames: FrameLog;
  private nextFrame = 0;
  private inSpeech = false;
  private speechRun = 0;
  private silenceRun = 0;
  private windowStart = 0;
  private keepFrom: number | undefined;
  private lastSpeechFrame = 0;
  private lastPartialFrame = 0;
  /** No new window may start before this frame (end of the previous final), overlap aside. */
  private lastWindowEnd = 0;
  /** A new utterance's window starts at this frame at the earliest: the pause after the last utterance's speech, or `lastWindowEnd` after a cut. */
  private reopenFrom = 0;
  /** `reopenFrom` is the start of the pause after the last utterance's speech (it closed on silence). */
  private reopensAtPause = false;
  private windowIds = 0;
  private utteranceIds = 0;
  private utteranceId = 0;
  /** The speculative window of the open utterance, while no speech has followed it. */
  private speculation: { id: number; end: number } | undefined;

  constructor(options: Partial<SegmenterOptions> = {}) {
    this.options = { ...DEFAULT_SEGMENTER_OPTIONS, ...options };
    const o = this.options;
    if (![10, 20, 30].includes(o.frameMs)) throw new RangeError(`frameMs must be 10, 20 or 30, got ${o.frameMs}`);
    if (o.minSpeechMs < o.frameMs) throw new RangeError('minSpeechMs must be at least one frame');
    if (o.silenceMs < o.frameMs) throw new RangeError('silenceMs must be at least one frame');
    if (o.trailingPadMs < 0 || o.preRollMs < 0 || o.overlapMs < 0 || o.partialIntervalMs < 0 || o.pauseCutMs < 0) throw new RangeError('durations must not be negative');
    if (o.trailingPadMs > o.silenceMs) throw new RangeError('trailingPadMs must not exceed silenceMs');
    if (o.cutSearchMs < o.frameMs || o.cutSearchMs >= o.maxWindowMs) throw new RangeError('cutSearchMs must be at least one frame and below maxWindowMs');
    if (o.overlapMs * 2 >= o.maxWindowMs - o.cutSearchMs) throw new RangeError('overlapMs too large for maxWindowMs');
    if (o.speculativeSilenceMs < 0 || (o.speculativeSilenceMs > 0 && o.speculativeSilenceMs >= o.silenceMs)) throw new RangeError('speculativeSilenceMs must be 0 or below silenceMs');
    this.frameSamples = (o.sampleRate * o.frameMs) / 1000;
    this.frames = new FrameLog(this.frameSamples);
  }

  /** Track time reached so far, in milliseconds. */
  get positionMs(): number {
    return this.nextFrame * this.options.frameMs;
  }

  get speaking(): boolean {
    return this.inSpeech;
  }

  push(frame: AudioFrame): AudioWindow[] {
    if (frame.samples.length !== this.frameSamples) {
      throw new RangeError(`frame must hold ${this.frameSamples} samples, got ${frame.samples.length}`);
    }
    const index = this.nextFrame++;
    this.frames.append(frame.samples, frame.isSpeech);
    return this.inSpeech ? this.continueSpeech(index, frame.isSpeech) : this.awaitSpeech(index, frame.isSpeech);
  }

  /**
   * Closes the open utterance at the end of its speculative window `id`, if no speech has followed it:
   * returns the final window (which `confirms` it), or nothing when speech resumed or the utterance closed.
   */
  commitSpeculation(id: number): AudioWindow[] {
    if (!this.inSpeech || this.speculation?.id !== id) return [];
    const end = this.speculation.end;
    // Only non-speech lies between the last speech frame and the end (speech would have cancelled it).
    return this.closeUtterance(end, 'silence', this.lastSpeechFrame + 1);
  }

  /** End of input: closes an open utterance as a final window. Safe to call at any point, and again. */
  flush(): AudioWindow[] {
    if (!this.inSpeech) return [];
    const end = Math.min(this.lastSpeechFrame + 1 + this.toFrames(this.options.trailingPadMs), this.nextFrame);
    return this.closeUtterance(end, 'flush');
  }

  private awaitSpeech(index: number, isSpeech: boolean): AudioWindow[] {
    this.speechRun = isSpeech ? this.speechRun + 1 : 0;
    if (this.speechRun >= this.toFrames(this.options.minSpeechMs)) {
      const speechStart = index - this.speechRun + 1;
      this.inSpeech = true;
      this.windowStart = this.windowStartFor(speechStart);
      this.keepFrom = this.windowStart < this.lastWindowEnd ? this.lastWindowEnd : undefined;
      this.lastSpeechFrame = index;
      this.lastPartialFrame = index;
      this.silenceRun = 0;
      this.speculation = undefined;
      this.utteranceId = ++this.utteranceIds;
      return [];
    }
    this.dropBefore(this.windowStartFor(index + 1 - this.toFrames(this.options.minSpeechMs)));
    return [];
  }

  /** Where the window of speech starting at `speechStart` begins: the whole pause after a short one, else `preRollMs` before. */
  private windowStartFor(speechStart: number): number {
    const o = this.options;
    // Never more than half a window of it: the window must have room for the speech it is sent for.
    const pauseFrames = speechStart - this.reopenFrom;
    const wholePause = this.reopensAtPause && pauseFrames <= this.toFrames(o.silenceMs + o.preRollMs) && pauseFrames + this.toFrames(o.minSpeechMs) <= this.toFrames(o.maxWindowMs) / 2;
    return Math.max(wholePause ? this.reopenFrom : speechStart - this.toFrames(o.preRollMs), this.reopenFrom, this.frames.first);
  }

  private continueSpeech(index: number, isSpeech: boolean): AudioWindow[] {
    const o = this.options;
    if (isSpeech) {
      this.lastSpeechFrame = index;
      this.silenceRun = 0;
      this.speculation = undefined;
    } else {
      this.silenceRun++;
    }
    if (this.silenceRun >= this.toFrames(o.silenceMs)) {
      const end = Math.min(this.lastSpeechFrame + 1 + this.toFrames(o.trailingPadMs), index + 1);
      return this.closeUtterance(end, 'silence', this.lastSpeechFrame + 1);
    }
    if (index + 1 - this.windowStart >= this.toFrames(o.maxWindowMs)) {
      return [this.cutAtQuietestPoint(index)];
    }
    if (o.speculativeSilenceMs > 0 && this.silenceRun === this.toFrames(o.speculativeSilenceMs) && index + 1 > this.windowStart) {
      const end = Math.min(this.lastSpeechFrame + 1 + this.toFrames(o.trailingPadMs), index + 1);
      if (end > this.windowStart) {
        const window = this.makeWindow('speculative', this.windowStart, end);
        this.speculation = { id: window.id, end };
        return [window];
      }
    }
    if (o.partialIntervalMs > 0 && index - this.lastPartialFrame >= this.toFrames(o.partialIntervalMs)) {
      this.lastPartialFrame = index;
      return [this.makeWindow('partial', this.windowStart, index + 1)];
    }
    return [];
  }

  /**
   * Ends the utterance at `end`. A max-length cut that fell in the pause after the last speech (with no
   * overlap, or a pause longer than the overlap) moved `windowStart` past that speech, or the utterance
   * ends at the seam: the window before the cut holds all of it, so nothing is left to send and no window
   * is made.
   */
  private closeUtterance(end: number, reason: WindowCloseReason, pauseFrom?: number): AudioWindow[] {
    const windows = end > (this.keepFrom ?? this.windowStart) ? [this.makeWindow('final', this.windowStart, end, reason)] : [];
    // No speech came after the speculative window (it would have cancelled it): its transcript stands.
    if (this.speculation && windows[0]) windows[0].confirms = this.speculation.id;
    this.speculation = undefined;
    this.inSpeech = false;
    this.speechRun = 0;
    this.silenceRun = 0;
    // Never before the end of a max-length cut window: the next utterance must not re-send its audio.
    this.reopenFrom = Math.max(this.lastWindowEnd, pauseFrom ?? end);
    this.reopensAtPause = pauseFrom !== undefined && this.reopenFrom === pauseFrom;
    this.lastWindowEnd = Math.max(this.lastWindowEnd, end);
    this.dropBefore(this.windowStartFor(this.nextFrame - this.toFrames(this.options.minSpeechMs)));
    return windows;
  }

  private cutAtQuietestPoint(index: number): AudioWindow {
    const o = this.options;
    const searchFrom = Math.max(index + 1 - this.toFrames(o.cutSearchMs), this.windowStart + this.toFrames(o.overlapMs) * 2);
    const pause = this.latestPause(searchFrom, index);
    let cut = index + 1;
    if (pause) {
      cut = pause.start + Math.floor((pause.end - pause.start) / 2);
    } else {
      let quietest = Infinity;
      for (let f = searchFrom; f <= index; f++) {
        // A pause is several quiet frames, not one dip inside a vowel: score a 3-frame neighbourhood.
        const score = this.energyAround(f);
        if (score <= quietest) {
          quietest = score;
          cut = f;
        }
      }
    }
    const cutInSpeech = this.frames.isSpeech(cut - 1) || (cut <= index && this.frames.isSpeech(cut));
    const overlap = pause ? 0 : !o.overlapOnlyInSpeech || cutInSpeech ? this.toFrames(o.overlapMs) : 0;
    const seam = cut - Math.floor(overlap / 2);
    const window = this.makeWindow('final', this.windowStart, cut, 'max-length', overlap > 0 ? seam : undefined);
    this.windowStart = cut - overlap;
    this.keepFrom = overlap > 0 ? seam : undefined;
    this.lastWindowEnd = cut;
    this.reopenFrom = cut;
    this.reopensAtPause = false;
    this.lastPartialFrame = index;
    this.speculation = undefined;
    this.utteranceId = ++this.utteranceIds;
    this.dropBefore(this.windowStart);
    return window;
  }

  /** The latest run of non-speech frames of at least `pauseCutMs` in [from, to], as [start, end). */
  private latestPause(from: number, to: number): { start: number; end: number } | undefined {
    if (this.options.pauseCutMs === 0) return undefined;
    const minFrames = Math.ceil(this.options.pauseCutMs / this.options.frameMs);
    let end = -1;
    for (let f = to; f >= from; f--) {
      if (this.frames.isSpeech(f)) {
        end = -1;
        continue;
      }
      if (end < 0) end = f + 1;
      if (end - f >= minFrames && (f === from || this.frames.isSpeech(f - 1))) return { start: f, end };
    }
    return undefined;
  }

  private energyAround(frame: number): number {
    let sum = 0;
    for (let f = frame - 1; f <= frame + 1; f++) {
      if (f >= this.frames.first && f < this.nextFrame) sum += this.frames.energyOf(f) + (this.frames.isSpeech(f) ? 1e6 : 0);
    }
    return sum;
  }

  private makeWindow(kind: WindowKind, start: number, end: number, closedBy?: WindowCloseReason, keepUntil?: number): AudioWindow {
    const frameMs = this.options.frameMs;
    const audio = this.frames.audio(start, end);
    const speech: [number, number][] = [];
    for (let f = start; f < end; f++) {
      if (!this.frames.isSpeech(f)) continue;
      const last = speech.at(-1);
      if (last && last[1] === f * frameMs) last[1] += frameMs;
      else speech.push([f * frameMs, (f + 1) * frameMs]);
    }
    const window: AudioWindow = {
      id: ++this.windowIds,
      utteranceId: this.utteranceId,
      kind,
      startMs: start * frameMs,
      endMs: end * frameMs,
      speech,
      audio,
    };
    if (closedBy) window.closedBy = closedBy;
    if (this.keepFrom !== undefined) window.keepFromMs = this.keepFrom * frameMs;
    if (keepUntil !== undefined) window.keepUntilMs = keepUntil * frameMs;
    return window;
  }

  private dropBefore(absoluteIndex: number): void {
    this.frames.dropBefore(absoluteIndex);
  }

  private toFrames(ms: number): number {
    return Math.round(ms / this.options.frameMs);
  }
}

function meanSquare(samples: Int16Array): number {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return sum / samples.length;
}
