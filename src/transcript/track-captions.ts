/**
 * The captions of one track (pure): partial hypotheses go through the stabilizer, finals through the
 * seam merger, so a window cut from the previous one (with overlap) neither repeats nor loses a word.
 * Finals must be given in window order.
 */
import type { Word } from '../../client-sdk/src/protocol.ts';
import type { AudioWindow } from '../segmenter/segmenter.ts';
import { mergeAtSeam, wordsBeforeSeam } from './seam-merger.ts';
import { Stabilizer } from './stabilizer.ts';

type WindowInfo = Pick<AudioWindow, 'utteranceId' | 'startMs' | 'endMs' | 'keepFromMs' | 'keepUntilMs'>;

/** How much of the already-final words is kept to merge the next window against. */
const TAIL_MS = 10000;

export class TrackCaptions {
  private emittedTail: Word[] = [];
  private readonly stabilizers = new Map<number, Stabilizer>();
  private lastFinalUtterance = 0;

  /** The stable and unstable words of an ongoing utterance; undefined once the utterance is final. */
  partial(window: WindowInfo, words: readonly Word[]): { stable: readonly Word[]; unstable: Word[] } | undefined {
    if (window.utteranceId <= this.lastFinalUtterance) return undefined;
    let stabilizer = this.stabilizers.get(window.utteranceId);
    if (!stabilizer) {
      stabilizer = new Stabilizer();
      this.stabilizers.set(window.utteranceId, stabilizer);
    }
    return stabilizer.update(this.afterSeam(window, words));
  }

  /** Continues a track whose earlier finals were published by a previous process (their words, in order). */
  resumeAfter(published: readonly Word[]): void {
    const last = published.at(-1);
    this.emittedTail = last ? published.filter((w) => w.endMs >= last.endMs - TAIL_MS) : [];
  }

  /** The words to publish for a final window. */
  final(window: WindowInfo, words: readonly Word[]): Word[] {
    const own = wordsBeforeSeam(this.afterSeam(window, words), window.keepUntilMs);
    const stabilizer = this.stabilizers.get(window.utteranceId);
    const finalWords = stabilizer ? stabilizer.finalize(own) : own;
    for (const id of this.stabilizers.keys()) if (id <= window.utteranceId) this.stabilizers.delete(id);
    this.lastFinalUtterance = Math.max(this.lastFinalUtterance, window.utteranceId);
    const horizon = window.endMs - TAIL_MS;
    this.emittedTail = [...this.emittedTail, ...finalWords].filter((w) => w.endMs >= horizon);
    return finalWords;
  }

  private afterSeam(window: WindowInfo, words: readonly Word[]): Word[] {
    if (window.keepFromMs === undefined) return [...words];
    const tail = this.emittedTail.filter((w) => w.endMs > window.startMs - 1000);
    return mergeAtSeam(tail, words, window.keepFromMs);
  }
}
