/**
 * The HELSSA Live wire protocol, defined once: the gateway sends these JSON events to caption viewers,
 * and the ingest endpoints accept the formats and close codes below. Server and client-sdk both import
 * this file, so a change here is checked on both sides.
 */

/** Speaker role of a track: who is talking on it. */
export type SpeakerRole = 'doctor' | 'patient';
export const SPEAKER_ROLES: readonly SpeakerRole[] = ['doctor', 'patient'];

/** What a token's `role` claim lets it do: stream (producer), watch (viewer), or everything (service). */
export type TokenRole = 'producer' | 'viewer' | 'service';
export const TOKEN_ROLES: readonly TokenRole[] = ['producer', 'viewer', 'service'];

/** Audio formats a producer may declare with `?format=` when opening the ingest WebSocket. */
export type IngestFormat =
  /** WebM/Opus, as written by a browser MediaRecorder (`audio/webm;codecs=opus`). */
  | 'webm'
  /** Ogg/Opus, as written by MediaRecorder (`audio/ogg;codecs=opus`) or ffmpeg. */
  | 'ogg'
  /** One Opus packet per binary message, prefixed with a 16-bit big-endian sequence number. */
  | 'opus'
  /** Raw little-endian PCM16 mono; `sampleRate` must be 16000 or 48000. */
  | 'pcm16';

export const INGEST_FORMATS: readonly IngestFormat[] = ['webm', 'ogg', 'opus', 'pcm16'];

/** Containers an uploaded recording may come in; the gateway tells them apart by their bytes. */
export type UploadFormat = 'webm' | 'mp3' | 'wav' | 'm4a' | 'ogg' | 'flac';
export const UPLOAD_FORMATS: readonly UploadFormat[] = ['webm', 'mp3', 'wav', 'm4a', 'ogg', 'flac'];
export const PCM_SAMPLE_RATES: readonly number[] = [16000, 48000];

/** WebSocket close codes the gateway uses, with the reason string carrying a human message. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  /** Frame payload could not be parsed in the declared format (garbage, corrupt container). */
  invalidPayload: 1007,
  /**
   * A producer whose stream runs faster than real time beyond the allowed burst (concealment flooding).
   * A missing, invalid or expired token never gets here: it is refused with HTTP 401/403 before the
   * upgrade, which a browser only sees as 1006 (the SDK then asks the REST API to tell the two apart).
   */
  policyViolation: 1008,
  /** A single frame exceeded the configured maximum size. */
  messageTooBig: 1009,
  internalError: 1011,
  /**
   * A producer's connection was taken over by a newer connection of the same producer (it resumed the track
   * with the `resume` token of this one, e.g. after its network dropped): do not reconnect this one.
   */
  replaced: 4001,
  /** Unknown or missing format, bad sample rate, bad role: the connection parameters are wrong. */
  badParameters: 4400,
  /** A caption viewer too slow to read what it is sent (its backlog passed the limit); reconnect with `?after=`. */
  viewerTooSlow: 4408,
  /** The same track is already being streamed by another producer. */
  trackBusy: 4409,
  /** A cap was reached (tracks per session or token, viewers per token, connections per address); the reason says when to retry. */
  tooMany: 4429,
} as const;

/** One recognized word with absolute times in the track (milliseconds from the track's first sample). */
export interface Word {
  word: string;
  startMs: number;
  endMs: number;
  /** 0..1 where the recognizer gives it. */
  confidence?: number;
  /** The recognizer's own word, when a near-miss of a clinical term was corrected to `word` (finals only). */
  original?: string;
}

export interface TrackInfo {
  trackId: string;
  role: SpeakerRole;
  participant: string;
  /** How the audio came: a live ingest format, or `upload` for a recording uploaded as a file. */
  format: IngestFormat | 'upload';
  /**
   * `reconnecting`: the producer's connection dropped; the track waits `resumeWindowMs` for it to resume
   * (the open utterance stays open), then ends.
   */
  state: 'live' | 'reconnecting' | 'ended';
  /** Milliseconds of audio received so far. */
  receivedMs: number;
  /** Why the track's connection failed (ICE/DTLS, a vanished sender), when it did; cleared on reconnection. */
  failure?: string;
}

/**
 * Text frames the gateway sends a producer on the ingest WebSocket (audio goes the other way, binary).
 *
 * Resuming after a drop: the producer keeps what it sent until an `ack` covers it. When its connection
 * drops (or stops answering), it opens a new one for the same track with `?resume=<resumeToken>` and
 * `startMs=<track time of its first resent sample>`, and sends again from the last `ack`. The gateway
 * closes the old connection (4001 `replaced`), skips what it already has, fills a gap with silence, and
 * continues the open utterance. Each connection of a WebM or Ogg producer is a new container stream
 * (header first); `opus` and `pcm16` connections just go on.
 */
export type IngestEvent =
  | {
      /** First frame of every connection, once the track is open. */
      type: 'ready';
      trackId: string;
      /** Track time where this connection's audio starts unless `startMs` says otherwise. */
      receivedMs: number;
      /** Pass as `?resume=` to take this track over from a new connection. */
      resumeToken: string;
      /** How long the track waits for a dropped connection to resume before it ends. 0: it ends at once. */
      resumeWindowMs: number;
    }
  | {
      /** The gateway has the track's audio up to `receivedMs` (track time); sent every few hundred ms of audio. */
      type: 'ack';
      receivedMs: number;
    };

/** Response header of a WHIP POST: pass its value as `?resume=` to continue the track from a new WHIP session. */
export const RESUME_TOKEN_HEADER = 'helssa-resume-token';

/** Words being recognized in an ongoing utterance. `stable` only ever grows; `unstable` may change. */
export interface PartialEvent {
  type: 'partial';
  sessionId: string;
  trackId: string;
  role: SpeakerRole;
  utteranceId: string;
  stable: string;
  unstable: string;
  startMs: number;
}

/** A finished piece of transcript. Finals never change once sent; `seq` orders them within a session. */
export interface FinalEvent {
  type: 'final';
  sessionId: string;
  seq: number;
  segmentId: string;
  trackId: string;
  role: SpeakerRole;
  speaker: string;
  utteranceId: string;
  text: string;
  words: Word[];
  startMs: number;
  endMs: number;
}

/** The recognizer as a session sees it. */
export type SttState = 'ok' | 'degraded' | 'misconfigured';

export interface SessionEvent {
  type: 'session';
  sessionId: string;
  /** `ending` while the last windows are transcribed and the transcript is merged; `ended` once it is stored. */
  state: 'active' | 'ending' | 'ended';
  /**
   * `degraded` while the speech-to-text service is failing (windows are kept and retried);
   * `misconfigured` while it refuses the gateway's requests (key, model, deployment, format): windows are
   * kept, nothing is sent, and the recognizer is checked again until its configuration is fixed.
   */
  stt: SttState;
  /** The recognizer's refusal, while `stt` is `misconfigured`. */
  sttError?: string;
  tracks: TrackInfo[];
  /** Highest final `seq` sent so far (0 when none). */
  lastSeq: number;
}

/** How far the transcription of an uploaded recording has got; sent after each window. */
export interface UploadProgressEvent {
  type: 'upload';
  sessionId: string;
  trackId: string;
  /**
   * `transcribing` while windows are queued or at STT; `needs_attention` when a window exhausted its
   * retries (dead-lettered; retry it or end the session without it); `completed` once every window is in.
   */
  state: 'transcribing' | 'needs_attention' | 'completed';
  windowsTotal: number;
  windowsDone: number;
  windowsFailed: number;
}

export interface ErrorEvent {
  type: 'error';
  sessionId: string;
  code: 'stt_unavailable' | 'stt_misconfigured' | 'storage_unavailable' | 'track_failed' | 'window_failed';
  message: string;
  trackId?: string;
}

/** Everything a caption viewer receives, discriminated by `type`. */
export type CaptionEvent = PartialEvent | FinalEvent | SessionEvent | UploadProgressEvent | ErrorEvent;

/** REST: one segment of a finalized transcript (a final, with its speaker). */
export interface TranscriptSegment {
  id: string;
  seq: number;
  trackId: string;
  role: SpeakerRole;
  speaker: string;
  startMs: number;
  endMs: number;
  text: string;
  words: Word[];
}

/** REST: `GET /v1/sessions/{id}/transcript?format=json`, the merged transcript of an ended session. */
export interface TranscriptDocument {
  sessionId: string;
  version: number;
  encounterRef: string | null;
  language: string | null;
  completedAt: string;
  durationMs: number;
  speakers: { speaker: string; role: SpeakerRole; trackIds: string[] }[];
  segments: TranscriptSegment[];
  text: string;
}

export type UploadWarningCode = 'low_sample_rate' | 'quiet_audio';

/** REST: `GET /v1/sessions/{id}`, a session's state and progress. */
export interface SessionStatus {
  id: string;
  state: 'active' | 'ending' | 'completed';
  encounterRef: string | null;
  language: string | null;
  /** The visit's own terms, prompted and corrected toward. */
  vocabulary: string[];
  createdAt: string;
  endedAt: string | null;
  completedAt: string | null;
  stt: SttState;
  /** The recognizer's refusal while `stt` is `misconfigured`, else null. */
  sttError: string | null;
  /** Final windows waiting for STT (grows during an outage). */
  sttBacklog: { windows: number; audioMs: number };
  /**
   * Audio of the live tracks received, and sent to the recognizer by kind (what it bills: partials,
   * finals, speculative finals discarded because speech went on), and sent ÷ received; while the
   * session is loaded in this gateway (null once it has left memory).
   */
  sttAudio: { receivedMs: number; sentMs: { partial: number; final: number; speculative: number }; factor: number } | null;
  /** Number of final segments so far. */
  lastSeq: number;
  tracks: TrackInfo[];
  progress: { windows: { pending: number; done: number; failed: number } };
  transcriptVersion: number | null;
  /** For a session made from an uploaded recording. */
  upload: {
    state: 'transcribing' | 'needs_attention' | 'completed';
    format: UploadFormat;
    fileName: string | null;
    sizeBytes: number;
    durationMs: number;
    sampleRate: number;
    meanDbfs: number;
    warnings: { code: UploadWarningCode; message: string }[];
    priority: 'high' | 'normal';
    windows: { total: number; pending: number; done: number; failed: number };
    /** Windows whose every attempt failed; `POST …/upload/retry` queues them again. */
    deadLetters: { startMs: number; endMs: number; attempts: number; error: string | null }[];
  } | null;
  webhook: { state: 'none' | 'pending' | 'delivered' | 'failed'; attempts: number; lastError: string | null };
  /** The encrypted recordings; `behind` while uploads wait for object storage. */
  archive: {
    enabled: boolean;
    behind: boolean;
    pendingUploads: number;
    lastError: string | null;
    recordings: {
      trackId: string; epoch: number; kind: 'full' | 'slices'; state: 'spooled' | 'uploaded'; objectKey: string; sizeBytes: number | null;
      plaintextSha256: string | null; durationMs: number | null; recipientFingerprints: string[];
    }[];
  };
}

/** REST: every error body. */
export interface ApiError {
  error: { code: string; message: string; field?: string };
}
