/**
 * Doctor or patient, for the speakers a diarized track found (pure). A speaker's role is decided once,
 * with its first final, and never changes (finals never change):
 *  - voice: the doctor's voice print (enrolled, or learned from the doctor's own tracks) is near this
 *    speaker's (doctor) or far from it (patient); or a diarizing recognizer given the doctor's enrolled
 *    clip named this speaker the doctor (or did not);
 *  - content: without a print, a first final that asks a question or names clinical terms the way a
 *    clinician does makes the speaker the doctor, when no one is the doctor yet;
 *  - order: else the first speaker is the doctor, every later one a patient (or a relative: the patient's
 *    side of the visit).
 */
import type { RoleSource, SpeakerRole } from '../../client-sdk/src/protocol.ts';
import { voiceDistance, type VoicePrint } from './voice-print.ts';

/** The name the doctor's voice is given to a diarizing recognizer (`known_speaker_names[]`). */
export const DOCTOR_SPEAKER_NAME = 'doctor';

export interface RoleDecision {
  role: SpeakerRole;
  roleSource: RoleSource;
}

/** A speaker this near the doctor's print (in spreads, see voice-print) is the doctor. */
export const VOICE_MATCH_DISTANCE = 3.2;
/** Frames a speaker's print needs before the voice decides (under that the content or order does). */
const MIN_PRINT_FRAMES = 50;

/** Words that open a question, per language (Whisper does not always write the question mark). */
const QUESTION_OPENERS: Record<string, ReadonlySet<string>> = {
  en: new Set(['what', 'how', 'when', 'where', 'why', 'who', 'which', 'do', 'does', 'did', 'is', 'are', 'any', 'have', 'has', 'can', 'could', 'should']),
  fa: new Set(['آیا', 'چه', 'چرا', 'کی', 'کجا', 'چطور', 'چگونه', 'چند', 'کدام']),
  ar: new Set(['هل', 'ما', 'ماذا', 'متى', 'أين', 'كيف', 'لماذا', 'كم', 'أي']),
};
const QUESTION_MARK = /[?؟]/u;
/** Clinical terms in one final that make it a clinician's (a patient names one or two of their own). */
const CLINICAL_TERMS_OF_A_DOCTOR = 3;

/** Whether a final's text sounds like the clinician's: a question, or many clinical terms. */
export function soundsLikeDoctor(text: string, language: string | undefined, isClinicalTerm: (word: string) => boolean): boolean {
  if (QUESTION_MARK.test(text)) return true;
  const words = text.toLowerCase().split(/\s+/u).map((w) => w.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, '')).filter(Boolean);
  const openers = language ? QUESTION_OPENERS[language] : undefined;
  // A sentence's first word: the text's, or one after a sentence end.
  const sentenceStarts = text.split(/[.!…۔]\s+/u).map((s) => s.trim().split(/\s+/u)[0]?.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, '')).filter(Boolean);
  if (openers && sentenceStarts.some((w) => openers.has(w))) return true;
  return words.filter(isClinicalTerm).length >= CLINICAL_TERMS_OF_A_DOCTOR;
}

export interface RoleBookOptions {
  /** The doctor's voice print, when one is enrolled or learned for the track's participant. */
  doctorPrint?: VoicePrint;
  language?: string;
  isClinicalTerm(word: string): boolean;
}

/** The roles of one diarized track's speakers, decided one speaker at a time. */
export class RoleBook {
  private readonly options: RoleBookOptions;
  private readonly decided = new Map<number, RoleDecision>();

  constructor(options: RoleBookOptions) {
    this.options = options;
  }

  /**
   * The role of `speaker`, decided now from its print and first final's text if it has none yet.
   * `named`: a diarizing recognizer, given the doctor's voice, named this speaker (the doctor) or not.
   */
  decide(speaker: number, print: VoicePrint | undefined, text: string, named?: 'doctor' | 'other'): RoleDecision {
    const known = this.decided.get(speaker);
    if (known) return known;
    const decision = named ? { role: named === 'doctor' && !this.hasDoctor() ? 'doctor' : 'patient', roleSource: 'voice' } as const : this.judge(print, text);
    this.decided.set(speaker, decision);
    return decision;
  }

  /** The role a partial of `speaker` shows: its decided one, else the one order would give it. */
  provisional(speaker: number): SpeakerRole {
    return this.decided.get(speaker)?.role ?? (this.hasDoctor() ? 'patient' : 'doctor');
  }

  private hasDoctor(): boolean {
    for (const decision of this.decided.values()) if (decision.role === 'doctor') return true;
    return false;
  }

  private judge(print: VoicePrint | undefined, text: string): RoleDecision {
    const { doctorPrint, language, isClinicalTerm } = this.options;
    if (doctorPrint && print && print.frames >= MIN_PRINT_FRAMES) {
      const near = voiceDistance(print, doctorPrint) <= VOICE_MATCH_DISTANCE;
      return { role: near && !this.hasDoctor() ? 'doctor' : 'patient', roleSource: 'voice' };
    }
    if (this.hasDoctor()) return { role: 'patient', roleSource: [...this.decided.values()].some((d) => d.roleSource === 'content') ? 'content' : 'order' };
    if (soundsLikeDoctor(text, language, isClinicalTerm)) return { role: 'doctor', roleSource: 'content' };
    // No one is the doctor yet and this does not sound like one: a later speaker who asks is, by content;
    // the first speaker is, by order, unless someone spoke before it.
    return this.decided.size === 0 ? { role: 'doctor', roleSource: 'order' } : { role: 'patient', roleSource: 'order' };
  }
}
