import type { Word } from '../../client-sdk/src/protocol.ts';
import { centerMs, sameWord } from './words.ts';

/**
 * LocalAgreement-2 over the growing hypotheses of one utterance (pure). A word is committed when two
 * consecutive hypotheses agree on it (and on everything before it); committed words never change again,
 * so captions do not flicker. The rest of the latest hypothesis is the unstable tail.
 */
export class Stabilizer {
  private readonly committed: Word[] = [];
  private previousTail: Word[] = [];

  get stable(): readonly Word[] {
    return this.committed;
  }

  /** The latest hypothesis: the committed words and the unstable tail. */
  get latest(): Word[] {
    return [...this.committed, ...this.previousTail];
  }

  /** Feeds the hypothesis for the utterance so far; returns the committed words and the unstable tail. */
  update(hypothesis: readonly Word[]): { stable: readonly Word[]; unstable: Word[] } {
    const tail = this.afterCommitted(hypothesis);
    const agreed = commonPrefixLength(this.previousTail, tail);
    this.committed.push(...tail.slice(0, agreed));
    this.previousTail = tail.slice(agreed);
    return { stable: this.committed, unstable: this.previousTail };
  }

  /**
   * The final words of the utterance: the committed words unchanged, followed by what the final
   * hypothesis has after them. Committed words were confirmed twice, so they win over a late revision.
   */
  finalize(finalHypothesis: readonly Word[]): Word[] {
    return [...this.committed, ...this.afterCommitted(finalHypothesis)];
  }

  /** The part of a hypothesis that follows the committed words, found by text, else by time. */
  private afterCommitted(hypothesis: readonly Word[]): Word[] {
    const n = this.committed.length;
    if (n === 0) return [...hypothesis];
    if (hypothesis.length >= n && this.committed.every((w, i) => sameWord(w, hypothesis[i]))) {
      return hypothesis.slice(n);
    }
    const lastEnd = this.committed[n - 1].endMs;
    return hypothesis.filter((w) => centerMs(w) > lastEnd);
  }
}

function commonPrefixLength(a: readonly Word[], b: readonly Word[]): number {
  let i = 0;
  while (i < a.length && i < b.length && sameWord(a[i], b[i])) i++;
  return i;
}
