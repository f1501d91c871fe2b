/**
 * Who said a final's words on one track: the track's participant in its role, or, on a diarized track,
 * the speakers its diarizer found, each final cut where the speaker changes and every part labelled
 * (`S1`, `S2`, …) with the role its speaker was given at its first final (never changed afterwards).
 */
import type { RoleSource, SpeakerRole, TrackInfo, Word } from '../../client-sdk/src/protocol.ts';
import { splitBySpeaker, type LiveDiarizer, type SpeakerTurn } from '../diarizer/diarizer.ts';
import { DOCTOR_SPEAKER_NAME, type RoleBook } from '../diarizer/roles.ts';
import type { VoicePrint } from '../diarizer/voice-print.ts';
import { joinWords } from '../transcript/words.ts';
import type { KnownSpeaker } from '../stt/transcriber.ts';

/** Words of one speaker, ready to publish as a final. */
export interface SpokenPart {
  speaker: string;
  role: SpeakerRole;
  roleSource: RoleSource;
  words: Word[];
}

/** A live diarized track: its diarizer (fed by the pipeline) and its speakers' labels and roles. */
export interface DiarizedTrack {
  diarizer: LiveDiarizer;
  labels: TrackSpeakers;
}

export const speakerLabel = (speaker: number) => `S${speaker}`;

export class TrackSpeakers {
  private readonly roles: RoleBook | undefined;
  private readonly prints: () => readonly VoicePrint[];
  /** The doctor's voice clip goes to a diarizing recognizer with each window: its labels tell the doctor. */
  readonly knownSpeakers: readonly KnownSpeaker[];
  private lastSpeaker = 1;

  /** `roles` and `prints` for a diarized track; without them every word is the track's participant's. */
  constructor(roles?: RoleBook, prints: () => readonly VoicePrint[] = () => [], knownSpeakers: readonly KnownSpeaker[] = []) {
    this.roles = roles;
    this.prints = prints;
    this.knownSpeakers = knownSpeakers;
  }

  get diarized(): boolean {
    return this.roles !== undefined;
  }

  /** A final's words as parts of one speaker each. */
  parts(track: Pick<TrackInfo, 'role' | 'participant'>, words: Word[], turns: readonly SpeakerTurn[] | undefined): SpokenPart[] {
    if (!this.roles) return words.length > 0 ? [{ speaker: track.participant, role: track.role, roleSource: 'track', words }] : [];
    if (words.length === 0) return [];
    // Words where the VAD heard no speech frame (no turns): the speaker heard last said them.
    if (!turns || turns.length === 0) turns = [{ speaker: this.lastSpeaker, startMs: words[0].startMs, endMs: words.at(-1)!.endMs }];
    this.lastSpeaker = turns.at(-1)!.speaker;
    const prints = this.prints();
    // A diarizing recognizer told the doctor's voice names their turns; the others it labels A, B, ….
    const told = this.knownSpeakers.some((k) => k.name === DOCTOR_SPEAKER_NAME) && turns.some((t) => t.name !== undefined);
    return splitBySpeaker(words, turns).map(({ speaker, words: spoken }) => {
      const named = !told ? undefined : turns.some((t) => t.speaker === speaker && t.name === DOCTOR_SPEAKER_NAME) ? 'doctor' : 'other';
      return { speaker: speakerLabel(speaker), ...this.roles!.decide(speaker, prints[speaker - 1], joinWords(spoken), named), words: spoken };
    });
  }

  /** The speaker a partial shows: the last one heard in its window, with the role it has or would get. */
  partial(track: Pick<TrackInfo, 'role' | 'participant'>, turns: readonly SpeakerTurn[] | undefined): { speaker: string; role: SpeakerRole } {
    const last = turns?.at(-1);
    if (!this.roles || !last) return { speaker: track.participant, role: track.role };
    return { speaker: speakerLabel(last.speaker), role: this.roles.provisional(last.speaker) };
  }
}
