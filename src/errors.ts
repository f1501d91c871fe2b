/**
 * The catalogue of errors the gateway answers with. Each carries its stable machine code, its HTTP
 * status and its WebSocket close code, so that one Fastify error handler and one socket helper answer
 * every endpoint the same way (`{"error": {code, message}}`, or a close with the code and the message).
 * Errors that are not in the catalogue are defects: 500 `internal_error` / 1011, logged.
 */
import { CloseCode } from '../client-sdk/src/protocol.ts';

export class GatewayError extends Error {
  readonly code: string;
  readonly status: number;
  readonly closeCode: number;
  /** Seconds after which a retry may succeed (sent as `Retry-After`). */
  readonly retryAfterS: number | undefined;

  constructor(code: string, status: number, closeCode: number, message: string, retryAfterS?: number) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.closeCode = closeCode;
    this.retryAfterS = retryAfterS;
  }
}

/** A missing, invalid or expired token (401), or one that may not do this (403). */
export class AuthError extends GatewayError {
  constructor(status: 401 | 403, message: string) {
    super(status === 401 ? 'unauthenticated' : 'forbidden', status, CloseCode.policyViolation, message);
  }
}

export class SessionExistsError extends GatewayError {
  constructor(message: string) {
    super('session_exists', 409, CloseCode.badParameters, message);
  }
}

export class SessionEndedError extends GatewayError {
  constructor(message: string) {
    super('session_ended', 409, CloseCode.badParameters, message);
  }
}

export class TrackBusyError extends GatewayError {
  constructor(message: string) {
    super('track_busy', 409, CloseCode.trackBusy, message);
  }
}

/** A cap was reached (tracks per session or token, viewers per token, connections per address). */
export class CapReached extends GatewayError {
  constructor(message: string, retryAfterS = 30) {
    super('too_many', 429, CloseCode.tooMany, message, retryAfterS);
  }
}

/**
 * The gateway is shutting down: it takes no new producer connection. The 503 comes before any upgrade,
 * so a load balancer tries the next instance (nginx: `proxy_next_upstream … http_503`).
 */
export class Draining extends GatewayError {
  constructor() {
    super('draining', 503, CloseCode.goingAway, 'this gateway is shutting down; connect again (through the load balancer, to another instance)', 1);
  }
}

/** A language the recognizer does not transcribe (STT_LANGUAGES): refused up front, not transcribed badly. */
export class UnsupportedLanguage extends GatewayError {
  constructor(language: string, supported: readonly string[]) {
    super('unsupported_language', 400, CloseCode.badParameters, `language ${language}: the recognizer transcribes ${supported.join(', ')} only (STT_LANGUAGES)`);
  }
}

/** A producer's stream cannot go on: unreadable in its declared format, too fast, or a defect in its processing. */
export class IngestError extends GatewayError {
  constructor(closeCode: number, message: string) {
    super('invalid_stream', closeCode === CloseCode.internalError ? 500 : 400, closeCode, message);
  }
}

export type UploadRejectionCode = 'empty_file' | 'file_too_large' | 'unrecognized_format' | 'no_audio_stream' | 'undecodable' | 'truncated' | 'duration_exceeded' | 'body_timeout' | 'processing_failed'
  | 'clip_too_short' | 'clip_too_long' | 'not_enough_speech';

const UPLOAD_STATUS: Record<UploadRejectionCode, number> = {
  empty_file: 400,
  file_too_large: 413,
  unrecognized_format: 415,
  no_audio_stream: 422,
  undecodable: 422,
  truncated: 422,
  duration_exceeded: 422,
  body_timeout: 408,
  processing_failed: 500,
  clip_too_short: 422,
  clip_too_long: 422,
  not_enough_speech: 422,
};

/** An uploaded recording refused before anything was kept. */
export class UploadRejected extends GatewayError {
  declare readonly code: UploadRejectionCode;

  constructor(code: UploadRejectionCode, message: string) {
    super(code, UPLOAD_STATUS[code], CloseCode.badParameters, message);
  }
}

/** A session still live or being ended cannot be deleted: it is ended first. */
export class SessionStillActive extends GatewayError {
  constructor(message: string) {
    super('session_active', 409, CloseCode.badParameters, message);
  }
}
