/**
 * A person's corrections of a stored transcript (pure): new text for some segments, made into the next
 * version of the document. A corrected segment keeps its time span; its words get the times of the words
 * they replace when there are as many, else are laid over the span by their length (marked as estimates
 * by `originalText` being set). Everything else stays as it was, and the earlier version stays stored.
 */
import type { TranscriptDocument, TranscriptSegment, Word } from '../../client-sdk/src/protocol.ts';

export interface SegmentCorrection {
  id: string;
  text: string;
}

export class CorrectionRejected extends Error {
  override name = 'CorrectionRejected';
}

/** Words of a corrected text over [startMs, endMs]: the old words' times one for one, else by length. */
function retime(text: string, old: readonly Word[], startMs: number, endMs: number): Word[] {
  const parts = text.split(/\s+/u).filter(Boolean);
  if (parts.length === old.length) return parts.map((word, i) => ({ word, startMs: old[i].startMs, endMs: old[i].endMs }));
  const weights = parts.map((w) => [...w].length + 1);
  const total = weights.reduce((a, b) => a + b, 0);
  let at = startMs;
  return parts.map((word, i) => {
    const from = at;
    at += ((endMs - startMs) * weights[i]) / total;
    return { word, startMs: Math.round(from), endMs: Math.round(i === parts.length - 1 ? endMs : at) };
  });
}

/** The next version of `doc` with `corrections` applied; throws CorrectionRejected naming what is wrong. */
export function correctTranscript(doc: TranscriptDocument, corrections: readonly SegmentCorrection[], by: string, at: Date, version: number): TranscriptDocument {
  const byId = new Map<string, string>();
  for (const { id, text } of corrections) {
    if (byId.has(id)) throw new CorrectionRejected(`segment ${id} is corrected twice`);
    if (!doc.segments.some((s) => s.id === id)) throw new CorrectionRejected(`the transcript has no segment ${id}`);
    if (!text.trim()) throw new CorrectionRejected(`segment ${id}: the corrected text is empty`);
    byId.set(id, text.trim().replace(/\s+/gu, ' '));
  }
  const segments = doc.segments.map((segment): TranscriptSegment => {
    const text = byId.get(segment.id);
    if (text === undefined || text === segment.text) return segment;
    return { ...segment, text, words: retime(text, segment.words, segment.startMs, segment.endMs), originalText: segment.originalText ?? segment.text };
  });
  return {
    ...doc,
    version,
    segments,
    text: segments.map((s) => `${s.speaker}: ${s.text}`).join('\n'),
    correction: { by, at: at.toISOString(), basedOn: doc.version },
  };
}
