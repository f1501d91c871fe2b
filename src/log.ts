/**
 * pino, with what must never reach a log kept out: tokens (request URLs carry `?access_token=` for
 * WebSockets), and what identifies a patient or a visit (participant names, encounter references, file
 * names), whether in a URL or in a logged object.
 */
import { pino, stdSerializers, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** Query parameters whose values are safe to log; every other value is replaced. */
const SAFE_QUERY = new Set(['id', 'format', 'sampleRate', 'role', 'language', 'after', 'priority', 'payloadType', 'ssrc', 'startMs']);

export function redactUrl(url: string): string {
  const at = url.indexOf('?');
  if (at === -1) return url;
  const query = new URLSearchParams(url.slice(at + 1));
  for (const key of [...query.keys()]) if (!SAFE_QUERY.has(key)) query.set(key, 'REDACTED');
  return `${url.slice(0, at)}?${query.toString()}`;
}

const REDACTED_FIELDS = ['participant', 'encounterRef', 'fileName', 'speaker', 'access_token', 'authorization'];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'helssa-live' },
      serializers: {
        req: (request: { method?: string; url?: string; ip?: string; id?: string }) => ({ method: request.method, url: redactUrl(request.url ?? ''), remoteAddress: request.ip, reqId: request.id }),
        res: (reply: { statusCode?: number }) => ({ statusCode: reply.statusCode }),
        err: stdSerializers.err,
      },
      redact: { paths: [...REDACTED_FIELDS, ...REDACTED_FIELDS.map((f) => `*.${f}`)], censor: 'REDACTED' },
    },
    destination,
  );
}
