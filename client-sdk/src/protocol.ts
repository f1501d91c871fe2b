/**
 * The HELSSA Live wire protocol, defined once: the gateway sends these JSON events to caption viewers,
 * and the ingest endpoints accept the formats and close codes below. Server and client-sdk both import
 * this file, so a change here is checked on both sides.
 */

/** Speaker role of a track: who is talking on it. */
export type SpeakerRole = 'doctor' | 'patient';
export const SPEAKER_ROLES: readonly SpeakerRole[] = ['doctor', 'patient'];

/**
 * Why a final has its role: `track` (the track's own role: one person per track), or for a track that
 * hears several people (diarized) `voice` (the doctor's enrolled or learned voice print), `content` (who
 * asks the questions, who names clinical terms) or `order` (the first speaker is the doctor).
 */
export type RoleSource = 'track' | 'voice' | 'content' | 'order';
export const ROLE_SOURCES: readonly RoleSource[] = ['track', 'voice', 'content', 'order'];

/** What kind of visit a session is (quality and analytics are reported per kind). */
export type EncounterType = 'consultation' | 'follow_up' | 'emergency' | 'telehealth' | 'procedure' | 'other';
export const ENCOUNTER_TYPES: readonly EncounterType[] = ['consultation', 'follow_up', 'emergency', 'telehealth', 'procedure', 'other'];

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
  /** The session was deleted (`DELETE /v1/sessions/{id}`): there is nothing more to watch. */
  sessionDeleted: 4410,
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
  /**
   * For a track that hears several people (one phone on the desk): the most speakers its diarizer tells
   * apart. Its finals then carry each speaker's label and role; absent: everything said is the track's role.
   */
  maxSpeakers?: number;
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
      /** The gateway has the track's audio up to `receivedMs` (track time); sent every 500 ms of audio, and at least every 500 ms while audio arrives. */
      type: 'ack';
      receivedMs: number;
      /**
       * The track's finals are stored up to here (track time): audio before it never needs sending again.
       * A producer keeps what follows, so that another gateway can transcribe it if this one dies.
       */
      durableMs: number;
    };

/** Response header of a WHIP POST: pass its value as `?resume=` to continue the track from a new WHIP session. */
export const RESUME_TOKEN_HEADER = 'helssa-resume-token';

/** Words being recognized in an ongoing utterance. `stable` only ever grows; `unstable` may change. */
export interface PartialEvent {
  type: 'partial';
  sessionId: string;
  trackId: string;
  /** On a diarized track, the speaker heard last, and their role so far: both may change until the final. */
  role: SpeakerRole;
  speaker: string;
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
  roleSource: RoleSource;
  /** The participant of a one-person track; `S1`, `S2`, … for the speakers a diarized track found. */
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
  roleSource: RoleSource;
  speaker: string;
  startMs: number;
  endMs: number;
  text: string;
  words: Word[];
  /** The recognizer's text, where a person corrected this segment (its words' times are then estimates). */
  originalText?: string;
}

/** Who corrected a transcript version, when, and which version they corrected. */
export interface TranscriptCorrection {
  by: string;
  at: string;
  basedOn: number;
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
  /** Set on a version a person corrected (`PUT …/transcript`); absent on the merged one. */
  correction?: TranscriptCorrection;
}

export type UploadWarningCode = 'low_sample_rate' | 'quiet_audio';

/** REST: `GET /v1/sessions/{id}`, a session's state and progress. */
export interface SessionStatus {
  id: string;
  state: 'active' | 'ending' | 'completed';
  encounterRef: string | null;
  encounterType: EncounterType | null;
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
      /** Why a recording is not whole (its gateway stopped: it ends with the last slice streamed), or its last upload error. */
      note: string | null;
    }[];
  };
}

/** REST: `POST /v1/speakers`, `GET /v1/speakers/{participant}`: what the gateway keeps of a voice. */
export interface SpeakerProfile {
  participant: string;
  /** `enrolled` from a clip; `learned` from the participant's own doctor tracks. */
  source: 'enrolled' | 'learned';
  /** Speech the profile was made of, ms. */
  speechMs: number;
  updatedAt: string;
}

/** How `GET /v1/analytics` groups its figures. */
export type AnalyticsGrouping = 'day' | 'language' | 'role' | 'model' | 'encounterType';
export const ANALYTICS_GROUPINGS: readonly AnalyticsGrouping[] = ['day', 'language', 'role', 'model', 'encounterType'];

/** One group's figures (sessions created in the period). By role, only what speech says: the rest is null. */
export interface AnalyticsFigures {
  key: string;
  sessions: number;
  /** Audio transcribed: live tracks received, and uploaded recordings (by role: that role's speech). */
  minutes: { live: number; upload: number };
  speakers: number;
  stt: { calls: number; audioSeconds: number; estimatedCost: number | null } | null;
  /** End of speech → final, live finals. */
  latencyMs: { p50: number | null; p95: number | null; p99: number | null };
  windows: { total: number; done: number; failed: number; successRate: number | null } | null;
  hallucinationsDropped: number | null;
  quality: {
    wordsPerMinute: number | null;
    confidence: { mean: number | null; high: number; medium: number; low: number };
    /** Audio seconds of uploads per second they took to transcribe. */
    uploadRealTimeFactor: number | null;
  };
}

/** REST: `GET /v1/analytics`. */
export interface AnalyticsReport {
  from: string;
  to: string;
  groupBy: AnalyticsGrouping;
  groups: AnalyticsFigures[];
  totals: AnalyticsFigures;
  /** Uploads refused before anything was kept, by code. */
  uploadsRejected: Record<string, number>;
  /** The most frequent error codes of the period (upload rejections, failed windows). */
  topErrors: { code: string; count: number }[];
}

/** REST: every error body. */
export interface ApiError {
  error: { code: string; message: string; field?: string };
}
