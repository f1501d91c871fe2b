import type { Word } from '../../client-sdk/src/protocol.ts';

/**
 * Comparison form of a word: case, punctuation, Arabic diacritics and tatweel, and the Arabic/Persian
 * spellings of yeh and kaf are folded, so "Pain," and "pain" or "كتاب" and "کتاب" compare equal.
 */
export function normalizeWord(word: string): string {
  return word
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[\u064B-\u065F\u0670\u0640]/g, '')
    .replace(/[يى]/g, 'ی')
    .replace(/ك/g, 'ک')
    .replace(/[\p{P}\p{S}]/gu, '');
}

/** Splits text into comparison words, dropping those that were only punctuation. */
export function normalizeText(text: string): string[] {
  return text.split(/\s+/).map(normalizeWord).filter((w) => w.length > 0);
}

export function sameWord(a: Word, b: Word): boolean {
  return normalizeWord(a.word) === normalizeWord(b.word);
}

export function centerMs(word: Word): number {
  return (word.startMs + word.endMs) / 2;
}

/** Share of the shorter word's duration that the two words overlap in time (0..1). */
export function timeOverlapRatio(a: Word, b: Word): number {
  const overlap = Math.min(a.endMs, b.endMs) - Math.max(a.startMs, b.startMs);
  if (overlap <= 0) return 0;
  const shorter = Math.max(1, Math.min(a.endMs - a.startMs, b.endMs - b.startMs));
  return overlap / shorter;
}

export function joinWords(words: readonly Word[]): string {
  return words.map((w) => w.word).join(' ');
}
