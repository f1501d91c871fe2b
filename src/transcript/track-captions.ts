/**
 * The captions of one track (pure): partial hypotheses go through the stabilizer, finals through the
 * seam merger, so a window cut from the previous one (with overlap) neither repeats nor loses a word:
 * by time when the recognizer gave word timestamps, by text when their times are estimates. Finals must
 * be given in window order.
 */
import type { Word } from '../../client-sdk/src/protocol.ts';
import type { AudioWindow } from '../segmenter/segmenter.ts';
import { mergeAtSeam, mergeByText, wordsBeforeSeam } from './seam-merger.ts';
import { Stabilizer } from './stabilizer.ts';

type WindowInfo = Pick<AudioWindow, 'utteranceId' | 'startMs' | 'endMs' | 'keepFromMs' | 'keepUntilMs'>;

/** How much of the already-final words is kept to merge the next window against. */
const TAIL_MS = 10000;

export class TrackCaptions {
  private emittedTail: Word[] = [];
  /** The last final window's words, all of them (the first `emitted` were published): what a text merge aligns with. */
  private lastWindow: { words: Word[]; emitted: number } = { words: [], emitted: 0 };
  private readonly stabilizers = new Map<number, Stabilizer>();
  private lastFinalUtterance = 0;

  /** The stable and unstable words of an ongoing utterance; undefined once the utterance is final. */
  partial(window: WindowInfo, words: readonly Word[], timed = true): { stable: readonly Word[]; unstable: Word[] } | undefined {
    if (window.utteranceId <= this.lastFinalUtterance) return undefined;
    let stabilizer = this.stabilizers.get(window.utteranceId);
    if (!stabilizer) {
      stabilizer = new Stabilizer();
      this.stabilizers.set(window.utteranceId, stabilizer);
    }
    return stabilizer.update(this.afterSeam(window, words, timed));
  }

  /** The committed words of an ongoing utterance (empty when none, or once it is final). */
  stableOf(utteranceId: number): readonly Word[] {
    return this.stabilizers.get(utteranceId)?.stable ?? [];
  }

  /** The latest partial hypothesis of an ongoing utterance (stable and unstable words). */
  latestOf(utteranceId: number): Word[] {
    return this.stabilizers.get(utteranceId)?.latest ?? [];
  }

  /** Continues a track whose earlier finals were published by a previous process (their words, in order). */
  resumeAfter(published: readonly Word[]): void {
    const last = published.at(-1);
    this.emittedTail = last ? published.filter((w) => w.endMs >= last.endMs - TAIL_MS) : [];
    this.lastWindow = { words: [...this.emittedTail], emitted: this.emittedTail.length };
  }

  /** The words to publish for a final window; `timed`: their times are the recognizer's, not estimates. */
  final(window: WindowInfo, words: readonly Word[], timed = true): Word[] {
    const heard = this.afterSeam(window, words, timed);
    const own = wordsBeforeSeam(heard, window.keepUntilMs);
    const stabilizer = this.stabilizers.get(window.utteranceId);
    const finalized = stabilizer ? stabilizer.finalize(own) : own;
    const finalWords = timed ? finalized : inOrderAfter(finalized, this.emittedTail.at(-1));
    // Estimated times are in order, so the words past the seam are the rest of what was heard.
    this.lastWindow = { words: [...finalWords, ...heard.slice(own.length)], emitted: finalWords.length };
    for (const id of this.stabilizers.keys()) if (id <= window.utteranceId) this.stabilizers.delete(id);
    this.lastFinalUtterance = Math.max(this.lastFinalUtterance, window.utteranceId);
    const horizon = window.endMs - TAIL_MS;
    this.emittedTail = [...this.emittedTail, ...finalWords].filter((w) => w.endMs >= horizon);
    return finalWords;
  }

  private afterSeam(window: WindowInfo, words: readonly Word[], timed: boolean): Word[] {
    if (window.keepFromMs === undefined) return [...words];
    const tail = this.emittedTail.filter((w) => w.endMs > window.startMs - 1000);
    return (!timed && mergeByText(this.lastWindow.words, this.lastWindow.emitted, words)) || mergeAtSeam(tail, words, window.keepFromMs);
  }
}

/**
 * A track's estimated words (a text-only recognizer) in the order they are published, in time too: spread
 * over a window, they can put a final's first word before the last one already published, and a viewer
 * ordering a session's words by time would read them swapped. Such a word starts where the one before it
 * started. (A recognizer's own times are left as they are: the seams are cut by them.)
 */
function inOrderAfter(words: Word[], last: Word | undefined): Word[] {
  let floor = last?.startMs ?? -Infinity;
  return words.map((w) => {
    const ordered = w.startMs >= floor ? w : { ...w, startMs: floor, endMs: Math.max(w.endMs, floor) };
    floor = ordered.startMs;
    return ordered;
  });
}
