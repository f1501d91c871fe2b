/**
 * Who speaks when, on one microphone (pure): speaker segmentation and clustering over the voice features
 * of a track's speech frames.
 *  1. Pieces: the speech frames of a stretch, cut at pauses (≥ 240 ms), and inside a long piece where the
 *     voice of its last second differs most from that of the second before (a sliding-window distance),
 *     when it differs by more than a change threshold.
 *  2. Speakers: each piece goes to the nearest running speaker model (its voice print), or starts a new
 *     speaker when it is far from every model, long enough to judge and the speakers are fewer than the
 *     most asked for. A short piece ("yes") takes the speaker of the piece next to it.
 *  3. Turns: pieces of one speaker in a row, the boundary between two speakers in the middle of the pause.
 * A live track diarizes each final window as it closes and keeps its models across windows
 * (`LiveDiarizer`); a recording is diarized whole (`diarizeRecording`): a first pass finds the speakers'
 * models over the whole file, a second assigns every piece to the nearest of them.
 */
import { FEATURES, SpeechSampler, VoiceFeatures, type SamplingPlan } from '../audio/voice-features.ts';
import { voiceDistance, VoiceStats, type VoicePrint } from './voice-print.ts';

/** A stretch of one speaker, ms; speakers are numbered from 1 in order of first appearance. */
export interface SpeakerTurn {
  speaker: number;
  startMs: number;
  endMs: number;
  /** The label a diarizing recognizer gave this voice: a known speaker's name (`doctor`), or `A`, `B`, …. */
  name?: string;
}

/** A diarizing recognizer's segment of a window: its label (`A`, `B`, … or a known speaker's name). */
export interface LabelledSpan {
  label: string;
  startMs: number;
  endMs: number;
}


export interface DiarizerOptions {
  /** The most speakers the track may have (the request's; 2 by default). */
  maxSpeakers: number;
  /** Frame length, ms (the segmenter's: 20). */
  frameMs: number;
}

/** A pause this long (in frames) between speech frames always cuts a piece. */
const PAUSE_FRAMES = 12;
/** A piece shorter than this (frames) is too short to judge: it takes its neighbour's speaker. */
const MIN_PIECE_FRAMES = 15;
/** A piece must be this long (frames) to start a new speaker. */
const MIN_NEW_SPEAKER_FRAMES = 40;
/** A piece further than this from every model is a new speaker (distance in spreads, see voice-print). */
const NEW_SPEAKER_DISTANCE = 3.2;
/** Inside a piece, a change of voice is looked for between two windows of this many frames… */
const CHANGE_WINDOW_FRAMES = 50;
/** …every this many frames… */
const CHANGE_STEP_FRAMES = 5;
/** …and taken where the two differ by more than this. */
const CHANGE_DISTANCE = 4.5;
/** Speech frames a live track keeps (for the longest window: 50 s). */
const LIVE_CAPACITY = 2500;

/** Speech frames with their features and their frame number in the track, oldest dropped first. */
export class SpeechFrames {
  readonly features: Float32Array;
  readonly positions: Int32Array;
  private readonly capacity: number;
  /** Frames written so far (the ring's next slot is `count % capacity`). */
  count = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.features = new Float32Array(capacity * FEATURES);
    this.positions = new Int32Array(capacity);
  }

  /** The slot of the next frame, its position recorded. */
  next(position: number): number {
    const slot = this.count % this.capacity;
    this.positions[slot] = position;
    this.count++;
    return slot;
  }

  /** Slots of the frames kept whose positions lie in [from, to), oldest first. */
  slotsBetween(from: number, to: number): number[] {
    const slots: number[] = [];
    for (let i = Math.max(0, this.count - this.capacity); i < this.count; i++) {
      const slot = i % this.capacity;
      const position = this.positions[slot];
      if (position >= from && position < to) slots.push(slot);
    }
    return slots;
  }

  /** Grows a kept copy (a recording's frames are all kept): doubles when full. */
  static grow(frames: SpeechFrames): SpeechFrames {
    const bigger = new SpeechFrames(frames.capacity * 2);
    bigger.features.set(frames.features);
    bigger.positions.set(frames.positions);
    bigger.count = frames.count;
    return bigger;
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }
}

/** Frames of a track through the feature extractor: speech frames are kept, the others only heard. */
export class FrameListener {
  private readonly extractor = new VoiceFeatures();
  frames: SpeechFrames;
  private readonly grows: boolean;
  private position = 0;

  /** `capacity` frames kept; `grows`: keep every frame (a recording), else the latest (a live track). */
  constructor(capacity: number, grows: boolean) {
    this.frames = new SpeechFrames(capacity);
    this.grows = grows;
  }

  continueAt(position: number): void {
    this.position = Math.max(this.position, position);
  }

  /** `features`: a speech frame's, computed elsewhere (the extractor here then only hears the frame). */
  frame(samples: Int16Array, isSpeech: boolean, features?: Float32Array): void {
    const position = this.position++;
    if (!isSpeech) {
      this.extractor.skip(samples);
      return;
    }
    if (this.grows && this.frames.full) this.frames = SpeechFrames.grow(this.frames);
    const slot = this.frames.next(position);
    if (features) {
      this.extractor.skip(samples);
      this.frames.features.set(features, slot * FEATURES);
    } else this.extractor.frame(samples, this.frames.features, slot * FEATURES);
  }
}

/** Speech frames of one voice, in a row. */
interface Piece {
  first: number;
  /** Position after its last frame. */
  end: number;
  slots: number[];
  stats: VoiceStats;
  speaker?: number;
}

function statsOf(frames: SpeechFrames, slots: readonly number[]): VoiceStats {
  const stats = new VoiceStats();
  for (const slot of slots) stats.add(frames.features, slot * FEATURES);
  return stats;
}

/** The speech frames between two positions, cut into pieces at pauses and at changes of voice. */
export function piecesOf(frames: SpeechFrames, from: number, to: number): Piece[] {
  const slots = frames.slotsBetween(from, to);
  const pieces: Piece[] = [];
  let start = 0;
  for (let i = 1; i <= slots.length; i++) {
    if (i < slots.length && frames.positions[slots[i]] - frames.positions[slots[i - 1]] <= PAUSE_FRAMES) continue;
    pieces.push(...splitAtChanges(frames, slots.slice(start, i)));
    start = i;
  }
  return pieces;
}

/** A piece, cut where the voice changes most if it changes enough (then each side again). */
function splitAtChanges(frames: SpeechFrames, slots: number[]): Piece[] {
  const whole = (): Piece[] => [{ first: frames.positions[slots[0]], end: frames.positions[slots.at(-1)!] + 1, slots, stats: statsOf(frames, slots) }];
  if (slots.length < 2 * CHANGE_WINDOW_FRAMES) return whole();
  let best = 0;
  let bestAt = 0;
  for (let at = CHANGE_WINDOW_FRAMES; at <= slots.length - CHANGE_WINDOW_FRAMES; at += CHANGE_STEP_FRAMES) {
    const left = statsOf(frames, slots.slice(at - CHANGE_WINDOW_FRAMES, at)).print();
    const right = statsOf(frames, slots.slice(at, at + CHANGE_WINDOW_FRAMES)).print();
    const distance = voiceDistance(left, right);
    if (distance > best) {
      best = distance;
      bestAt = at;
    }
  }
  if (best <= CHANGE_DISTANCE) return whole();
  return [...splitAtChanges(frames, slots.slice(0, bestAt)), ...splitAtChanges(frames, slots.slice(bestAt))];
}

/** The nearest of the models to a print, and how far. */
function nearest(models: readonly VoiceStats[], print: VoicePrint): { index: number; distance: number } {
  let index = -1;
  let distance = Infinity;
  for (const [i, model] of models.entries()) {
    const d = voiceDistance(model.print(), print);
    if (d < distance) {
      distance = d;
      index = i;
    }
  }
  return { index, distance };
}

/**
 * Gives each piece a speaker (1-based) from `models`; `learn`: a far piece starts a new model (up to
 * `maxSpeakers`) and every judged piece adds to its model. Short pieces take a neighbour's speaker.
 */
function assign(pieces: Piece[], models: VoiceStats[], maxSpeakers: number, learn: boolean): void {
  for (const piece of pieces) {
    if (piece.stats.frames < MIN_PIECE_FRAMES && models.length > 0) continue;
    const print = piece.stats.print();
    const { index, distance } = nearest(models, print);
    if (index === -1 || (distance > NEW_SPEAKER_DISTANCE && models.length < maxSpeakers && piece.stats.frames >= MIN_NEW_SPEAKER_FRAMES)) {
      piece.speaker = models.length + 1;
      if (learn) models.push(piece.stats);
      continue;
    }
    piece.speaker = index + 1;
    if (learn) models[index].merge(piece.stats);
  }
  // Too short to judge: the speaker of the piece before it (in the window), else of the one after.
  for (let i = 0; i < pieces.length; i++) pieces[i].speaker ??= pieces[i - 1]?.speaker;
  for (let i = pieces.length - 1; i >= 0; i--) pieces[i].speaker ??= pieces[i + 1]?.speaker ?? 1;
}

/** Pieces of a window → turns covering [startMs, endMs), boundaries in the middle of pauses. */
function turnsOf(pieces: readonly Piece[], startMs: number, endMs: number, frameMs: number): SpeakerTurn[] {
  const turns: SpeakerTurn[] = [];
  for (const [i, piece] of pieces.entries()) {
    const last = turns.at(-1);
    if (last && last.speaker === piece.speaker) continue;
    const boundary = i === 0 ? startMs : Math.round(((pieces[i - 1].end + piece.first) / 2) * frameMs);
    if (last) last.endMs = boundary;
    turns.push({ speaker: piece.speaker!, startMs: boundary, endMs: endMs });
  }
  return turns;
}

/** A live track's diarizer: fed every frame, asked about each window; speakers persist across windows. */
export class LiveDiarizer {
  private readonly options: DiarizerOptions;
  private readonly listener = new FrameListener(LIVE_CAPACITY, false);
  private readonly models: VoiceStats[] = [];

  constructor(options: DiarizerOptions) {
    this.options = options;
  }

  /** Every 20 ms frame of the track, with the VAD's decision, in order; a speech frame's features if computed elsewhere. */
  frame(samples: Int16Array, isSpeech: boolean, features?: Float32Array): void {
    this.listener.frame(samples, isSpeech, features);
  }

  /** A new connection of the track continues at track time `trackMs`: its frames are counted from there. */
  continueAt(trackMs: number): void {
    this.listener.continueAt(Math.round(trackMs / this.options.frameMs));
  }

  /** The speakers' voice prints so far (index i is speaker i + 1). */
  prints(): VoicePrint[] {
    return this.models.map((m) => m.print());
  }

  /**
   * The speaker turns of [startMs, endMs) (track time, ms); `learn` for a final window
   * (its pieces go into the models), not for a partial (which may be relabelled by its final).
   * Empty when the window holds no speech frame.
   */
  window(startMs: number, endMs: number, learn: boolean): SpeakerTurn[] {
    const { frameMs, maxSpeakers } = this.options;
    const pieces = piecesOf(this.listener.frames, Math.floor(startMs / frameMs), Math.ceil(endMs / frameMs));
    assign(pieces, this.models, maxSpeakers, learn);
    return turnsOf(pieces, startMs, endMs, frameMs);
  }
}

/** A recording's diarizer: fed every frame of the file, asked once at its end. */
export class RecordingDiarizer {
  private readonly options: DiarizerOptions;
  private readonly listener = new FrameListener(3000, true);
  private frames = 0;

  constructor(options: DiarizerOptions) {
    this.options = options;
  }

  frame(samples: Int16Array, isSpeech: boolean): void {
    this.frames++;
    this.listener.frame(samples, isSpeech);
  }

  /** Turns over the whole recording: models found in a first pass, every piece assigned in a second. */
  turns(): { turns: SpeakerTurn[]; prints: VoicePrint[] } {
    const { frameMs, maxSpeakers } = this.options;
    const pieces = piecesOf(this.listener.frames, 0, this.frames);
    const models: VoiceStats[] = [];
    assign(pieces, models, maxSpeakers, true);
    for (const piece of pieces) piece.speaker = undefined;
    assign(pieces, models, models.length, false);
    // Speakers renumbered in order of first appearance (a model found late may speak first).
    const order = new Map<number, number>();
    for (const piece of pieces) if (!order.has(piece.speaker!)) order.set(piece.speaker!, order.size + 1);
    for (const piece of pieces) piece.speaker = order.get(piece.speaker!);
    const prints: VoicePrint[] = [];
    for (const [model, speaker] of order) prints[speaker - 1] = models[model - 1]?.print() ?? new VoiceStats().print();
    return { turns: turnsOf(pieces, 0, this.frames * frameMs, frameMs), prints };
  }
}

/** The speaker of a stretch: the turn it overlaps most (the nearest turn when it overlaps none). */
export function speakerOf(turns: readonly SpeakerTurn[], startMs: number, endMs: number): number | undefined {
  let best: SpeakerTurn | undefined;
  let bestScore = -Infinity;
  for (const turn of turns) {
    const overlap = Math.min(endMs, turn.endMs) - Math.max(startMs, turn.startMs);
    if (overlap > bestScore) {
      bestScore = overlap;
      best = turn;
    }
  }
  return best?.speaker;
}

/** A final's words cut where the speaker changes: runs of one speaker each, in order. */
export function splitBySpeaker<T extends { startMs: number; endMs: number }>(words: readonly T[], turns: readonly SpeakerTurn[]): { speaker: number; words: T[] }[] {
  const runs: { speaker: number; words: T[] }[] = [];
  for (const word of words) {
    const speaker = speakerOf(turns, word.startMs, word.endMs) ?? runs.at(-1)?.speaker ?? 1;
    const last = runs.at(-1);
    if (last && last.speaker === speaker) last.words.push(word);
    else runs.push({ speaker, words: [word] });
  }
  return runs;
}

/**
 * A doctor's own track: every speech frame of its first 10 s is analysed for their voice print, then one
 * in four, up to 3000 (4 min of speech). A print is the statistics of the voice's frames: the sample gives
 * the same print (within what the next visit changes) at a fraction of the cost, paid on every doctor's
 * track whether or not a diarized track ever uses it.
 */
export const PRINT_SAMPLING: SamplingPlan = { all: 500, every: 4, max: 3000 };

/** One voice's print, from the speech frames of a clip or of a one-person track (nothing else kept). */
export class VoicePrinter {
  /** Which frames are analysed; the DSP worker follows the same plan from the same counts. */
  readonly sampler = new SpeechSampler(PRINT_SAMPLING);
  private readonly extractor = new VoiceFeatures();
  private readonly stats = new VoiceStats();
  private readonly features = new Float32Array(FEATURES);

  /** `features`: the frame's, computed elsewhere (used if the plan here takes the frame, which it then need not analyse). */
  frame(samples: Int16Array, isSpeech: boolean, features?: Float32Array): void {
    if (!this.sampler.wants(isSpeech)) return this.extractor.skip(samples);
    if (features) {
      this.extractor.skip(samples);
      this.stats.add(features, 0);
      return;
    }
    this.extractor.frame(samples, this.features, 0);
    this.stats.add(this.features, 0);
  }

  /** Speech frames heard so far. */
  get frames(): number {
    return this.sampler.heard;
  }

  print(): VoicePrint {
    return this.stats.print();
  }
}

/**
 * A diarizing recognizer's segments of one window as the track's speakers. Its labels hold only within
 * the one request (`A` in this window may be `B` in the next), so each label becomes the track's speaker
 * its segments overlap most (the running models keep who is who across windows); without local turns,
 * labels are numbered in order of appearance. The label is kept on its turns (a known speaker's name).
 */
export function adoptLabels(labelled: readonly LabelledSpan[], local: readonly SpeakerTurn[]): SpeakerTurn[] {
  const labels = [...new Set(labelled.map((l) => l.label))];
  const speakerOfLabel = new Map<string, number>();
  for (const [index, label] of labels.entries()) {
    const overlap = new Map<number, number>();
    for (const span of labelled) {
      if (span.label !== label) continue;
      for (const turn of local) overlap.set(turn.speaker, (overlap.get(turn.speaker) ?? 0) + Math.max(0, Math.min(span.endMs, turn.endMs) - Math.max(span.startMs, turn.startMs)));
    }
    const best = [...overlap].sort((a, b) => b[1] - a[1])[0];
    speakerOfLabel.set(label, best && best[1] > 0 ? best[0] : index + 1);
  }
  return labelled.map((span) => ({
    speaker: speakerOfLabel.get(span.label)!,
    startMs: span.startMs,
    endMs: span.endMs,
    name: span.label,
  }));
}
