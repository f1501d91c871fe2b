/**
 * The finalized transcript of a session (pure): finals of every track merged by time, with speaker
 * labels, and its renderings as plain text, WebVTT and SRT. Captions are cut into cues of at most
 * `MAX_CUE_MS` or `MAX_CUE_WORDS` at word boundaries, so a 28 s window does not become one 28 s cue.
 */
import type { FinalEvent, SpeakerRole, TranscriptDocument, Word } from '../../client-sdk/src/protocol.ts';

const MAX_CUE_MS = 7000;
const MAX_CUE_WORDS = 16;

export function buildTranscript(
  session: { id: string; encounterRef: string | null; language: string | null },
  finals: readonly FinalEvent[],
  version: number,
  completedAt: Date,
): TranscriptDocument {
  const ordered = [...finals].sort((a, b) => a.startMs - b.startMs || a.seq - b.seq);
  const segments = ordered.map((f) => ({ id: f.segmentId, seq: f.seq, trackId: f.trackId, role: f.role, roleSource: f.roleSource, speaker: f.speaker, startMs: f.startMs, endMs: f.endMs, text: f.text, words: f.words }));
  const speakers = new Map<string, { speaker: string; role: SpeakerRole; trackIds: string[] }>();
  for (const s of segments) {
    const entry = speakers.get(s.speaker) ?? { speaker: s.speaker, role: s.role, trackIds: [] };
    if (!entry.trackIds.includes(s.trackId)) entry.trackIds.push(s.trackId);
    speakers.set(s.speaker, entry);
  }
  return {
    sessionId: session.id,
    version,
    encounterRef: session.encounterRef,
    language: session.language,
    completedAt: completedAt.toISOString(),
    durationMs: Math.max(0, ...segments.map((s) => s.endMs)),
    speakers: [...speakers.values()],
    segments,
    text: segments.map((s) => `${s.speaker}: ${s.text}`).join('\n'),
  };
}

function clock(ms: number, separator: '.' | ','): string {
  const total = Math.max(0, Math.round(ms));
  const h = Math.floor(total / 3600000);
  const m = Math.floor((total % 3600000) / 60000);
  const s = Math.floor((total % 60000) / 1000);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(h)}:${pad(m)}:${pad(s)}${separator}${pad(total % 1000, 3)}`;
}

interface Cue {
  startMs: number;
  endMs: number;
  speaker: string;
  text: string;
}

function cues(doc: TranscriptDocument): Cue[] {
  const out: Cue[] = [];
  for (const segment of doc.segments) {
    let current: Word[] = [];
    const flush = () => {
      if (current.length === 0) return;
      out.push({ startMs: current[0].startMs, endMs: current[current.length - 1].endMs, speaker: segment.speaker, text: current.map((w) => w.word).join(' ') });
      current = [];
    };
    for (const word of segment.words) {
      if (current.length > 0 && (word.endMs - current[0].startMs > MAX_CUE_MS || current.length >= MAX_CUE_WORDS)) flush();
      current.push(word);
    }
    flush();
  }
  // Cues of different speakers may overlap in time; players show them together, which is what happened.
  return out.map((c) => ({ ...c, endMs: Math.max(c.endMs, c.startMs + 1) }));
}

export function toPlainText(doc: TranscriptDocument): string {
  return `${doc.segments.map((s) => `[${clock(s.startMs, '.')}] ${s.speaker} (${s.role}): ${s.text}`).join('\n')}\n`;
}

const escapeVtt = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function toWebVtt(doc: TranscriptDocument): string {
  const body = cues(doc).map((c, i) => `${i + 1}\n${clock(c.startMs, '.')} --> ${clock(c.endMs, '.')}\n<v ${escapeVtt(c.speaker)}>${escapeVtt(c.text)}`);
  return `WEBVTT\n\n${body.join('\n\n')}\n`;
}

export function toSrt(doc: TranscriptDocument): string {
  return `${cues(doc).map((c, i) => `${i + 1}\n${clock(c.startMs, ',')} --> ${clock(c.endMs, ',')}\n${c.speaker}: ${c.text}`).join('\n\n')}\n`;
}
