/**
 * A doctor's voice, enrolled from a short clip: the body is received sealed (like an upload), decoded by
 * ffmpeg, its speech frames found by the VAD and made into a voice print. The print is kept, and the
 * clip's first 10 s sealed under a data key wrapped by AT_REST_KEY (what a diarizing recognizer is told of
 * the doctor's voice); the file itself is deleted. A clip too short, too long or without enough speech is refused with its own code.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { SpeakerProfile } from '../../client-sdk/src/protocol.ts';
import { SealedFileReader, serveOnLoopback } from '../archive/sealed-file.ts';
import { Framer } from '../audio/framer.ts';
import { decodeToPcm } from '../audio/media-decoder.ts';
import { PIPELINE_SAMPLE_RATE } from '../audio/opus-decoder.ts';
import type { VoiceActivityDetector } from '../audio/vad.ts';
import { VoicePrinter } from '../diarizer/diarizer.ts';
import { UploadRejected } from '../errors.ts';
import type { AudioSealer } from '../archive/data-keys.ts';
import { DOCTOR_SPEAKER_NAME } from '../diarizer/roles.ts';
import type { KnownSpeaker } from '../stt/transcriber.ts';
import type { SessionStore } from '../store/session-store.ts';
import { receiveUpload } from './upload-ingest.ts';

export const ENROLLMENT_MIN_MS = 5000;
export const ENROLLMENT_MAX_MS = 15000;
/** Speech (VAD) an enrollment clip must hold. */
const MIN_SPEECH_MS = 3000;
const FRAME_MS = 20;
/** A clip is small: 15 s of even uncompressed 48 kHz stereo WAV is under 3 MB. */
const MAX_CLIP_BYTES = 8 * 1024 * 1024;

/** Of the clip, this much is kept (sealed) for a diarizing recognizer's `known_speaker_references[]` (2–10 s). */
const REFERENCE_MS = 10000;

export interface EnrollmentOptions {
  store: Pick<SessionStore, 'saveSpeakerProfile' | 'speakerProfile'>;
  /** Seals the clip's first seconds for a diarizing recognizer; without it only the print is kept. */
  sealer?: AudioSealer;
  workDir: string;
  vad(): VoiceActivityDetector;
  bodyIdleTimeoutMs: number;
}

/** Binds a sealed reference clip to its participant: it cannot be opened as another's. */
export const referenceAad = (participant: string) => `speaker-reference:${participant}`;

/** The doctor's enrolled clip as a diarizing recognizer is told it, if one is kept. */
export async function knownDoctor(store: Pick<SessionStore, 'speakerReference'>, sealer: AudioSealer, participant: string): Promise<KnownSpeaker[]> {
  const sealed = await store.speakerReference(participant);
  if (!sealed) return [];
  const bytes = await sealer.open(sealed.referenceKey, Buffer.from(sealed.reference, 'base64'), referenceAad(participant));
  return [{ name: DOCTOR_SPEAKER_NAME, audio: new Int16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2) }];
}

export async function enrollSpeaker(participant: string, body: Readable, options: EnrollmentOptions): Promise<SpeakerProfile> {
  const dir = join(options.workDir, `enroll-${randomUUID()}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    // Sealed under a key that lives only for this request: the clip is unreadable once it returns.
    const key = randomBytes(32);
    const received = await receiveUpload(body, join(dir, 'clip'), key, MAX_CLIP_BYTES, options.bodyIdleTimeoutMs);
    if (received.sizeBytes === 0) throw new UploadRejected('empty_file', 'the enrollment clip is empty');
    const served = await serveOnLoopback(await SealedFileReader.open(received.path, key, 'original'));
    const vad = options.vad();
    const printer = new VoicePrinter();
    const framer = new Framer((PIPELINE_SAMPLE_RATE * FRAME_MS) / 1000);
    const reference = new Int16Array((REFERENCE_MS * PIPELINE_SAMPLE_RATE) / 1000);
    let kept = 0;
    let decoded;
    try {
      decoded = await decodeToPcm(served.url, PIPELINE_SAMPLE_RATE, Math.ceil((ENROLLMENT_MAX_MS * PIPELINE_SAMPLE_RATE) / 1000) + PIPELINE_SAMPLE_RATE, (pcm) => {
        const take = Math.min(pcm.length, reference.length - kept);
        reference.set(pcm.subarray(0, take), kept);
        kept += take;
        for (const frame of framer.push(pcm)) printer.frame(frame, vad.isSpeech(frame));
      });
    } finally {
      await served.close();
    }
    const durationMs = (decoded.samples / PIPELINE_SAMPLE_RATE) * 1000;
    if (decoded.samples === 0) throw new UploadRejected('undecodable', 'the enrollment clip holds no decodable audio');
    if (decoded.stoppedAtLimit || durationMs > ENROLLMENT_MAX_MS + 1000) throw new UploadRejected('clip_too_long', `an enrollment clip lasts ${ENROLLMENT_MIN_MS / 1000}–${ENROLLMENT_MAX_MS / 1000} s; this one is longer`);
    if (durationMs < ENROLLMENT_MIN_MS) throw new UploadRejected('clip_too_short', `an enrollment clip lasts ${ENROLLMENT_MIN_MS / 1000}–${ENROLLMENT_MAX_MS / 1000} s; this one lasts ${(durationMs / 1000).toFixed(1)} s`);
    const speechMs = printer.frames * FRAME_MS;
    if (speechMs < MIN_SPEECH_MS) throw new UploadRejected('not_enough_speech', `the clip holds ${(speechMs / 1000).toFixed(1)} s of speech; at least ${MIN_SPEECH_MS / 1000} s of the doctor speaking is needed`);
    let sealed;
    if (options.sealer) {
      const referenceKey = await options.sealer.newDataKey();
      const clipPcm = reference.subarray(0, kept);
      sealed = { referenceKey, reference: (await options.sealer.seal(referenceKey, new Uint8Array(clipPcm.buffer, clipPcm.byteOffset, clipPcm.byteLength), referenceAad(participant))).toString('base64') };
    }
    await options.store.saveSpeakerProfile(participant, 'enrolled', printer.print(), sealed);
    return (({ print: _print, ...profile }) => profile)((await options.store.speakerProfile(participant))!);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
