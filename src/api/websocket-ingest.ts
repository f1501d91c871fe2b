/**
 * The producer endpoint: one WebSocket per track, binary frames of audio in the declared format.
 *   GET /v1/sessions/:sessionId/tracks/:trackId/ingest
 *       ?format=webm|ogg|opus|pcm16&sampleRate=16000|48000&role=doctor|patient&participant=…&language=…&startMs=…
 * Wrong parameters, unparsable audio or a busy track close the socket with a code from the protocol and
 * a reason; closing it normally ends the track after its last words are transcribed.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { CloseCode, INGEST_FORMATS, PCM_SAMPLE_RATES, SPEAKER_ROLES, type IngestFormat, type SpeakerRole } from '../../client-sdk/src/protocol.ts';
import type { Authenticator } from './auth.ts';
import { closeReason, closeWith, holdWhileOpen, keepAlive, requireRole } from './http.ts';
import { jsonSchema, language as languageCode, text, trackParams } from './schemas.ts';
import type { ConnectionLimits } from './limits.ts';
import type { Logger } from '../log.ts';
import type { SessionRegistry } from '../session/registry.ts';
import { createPacketSource, type PacketSource } from '../demux/packet-source.ts';
import { GatewayError } from '../errors.ts';
import type { Session } from '../session/session.ts';
import type { TrackPipeline } from '../session/track-pipeline.ts';

/** A track longer than a day is not a consultation: startMs beyond it is refused. */
const MAX_TRACK_MS = 24 * 3600 * 1000;

const querySchema = z
  .object({
    format: z.enum(INGEST_FORMATS as [IngestFormat, ...IngestFormat[]], { error: `format must be one of ${INGEST_FORMATS.join(', ')}` }),
    sampleRate: z.coerce.number().int().optional(),
    role: z.enum(SPEAKER_ROLES as [SpeakerRole, ...SpeakerRole[]], { error: 'role must be doctor or patient' }),
    participant: text(200).optional(),
    language: languageCode.optional(),
    startMs: z.coerce.number().int().min(0, 'startMs must be a non-negative integer').max(MAX_TRACK_MS, `startMs must be at most ${MAX_TRACK_MS} (24 h)`).optional(),
  })
  .refine((q) => q.format !== 'pcm16' || PCM_SAMPLE_RATES.includes(q.sampleRate ?? 0), {
    message: `pcm16 needs sampleRate ${PCM_SAMPLE_RATES.join(' or ')}`,
  });

export interface IngestRouteOptions {
  registry: SessionRegistry;
  authenticator: Authenticator;
  log: Logger;
  heartbeatMs: number;
  limits: ConnectionLimits;
  maxTracksPerToken: number;
  maxConnectionsPerIp: number;
}

export async function registerWebSocketIngest(app: FastifyInstance, { registry, authenticator, log, heartbeatMs, limits, maxTracksPerToken, maxConnectionsPerIp }: IngestRouteOptions): Promise<void> {
  app.get(
    '/v1/sessions/:sessionId/tracks/:trackId/ingest',
    {
      websocket: true,
      schema: { hide: true, params: jsonSchema(trackParams) },
      preValidation: requireRole(authenticator, ['producer', 'service']),
    },
    (socket, request) => {
      const { sessionId, trackId } = request.params as { sessionId: string; trackId: string };
      const query = querySchema.safeParse(request.query);
      if (!query.success) {
        socket.close(CloseCode.badParameters, closeReason(query.error.issues.map((i) => i.message).join('; ')));
        return;
      }
      const { format, sampleRate, role, participant, language, startMs } = query.data;
      const caps = [
        { key: `producer:${request.principal!.tokenId}`, max: maxTracksPerToken, what: 'live tracks for this token' },
        { key: `ip:${request.ip}`, max: maxConnectionsPerIp, what: 'connections from this address' },
      ];
      if (!holdWhileOpen(socket, limits, caps)) return;
      keepAlive(socket, heartbeatMs);
      // Audio may arrive while the session loads from the database: hold it until the pipeline exists.
      const early: Buffer[] = [];
      let pipeline: TrackPipeline | undefined;
      // This connection's demuxer: the frames of the declared format → audio units for the pipeline.
      let source: PacketSource | undefined;
      let session: Session | undefined;
      let closed = false;
      const write = (message: Buffer) => pipeline!.guarded(() => source!.write(message));
      socket.on('message', (data: Buffer, isBinary: boolean) => {
        if (!isBinary) {
          socket.close(CloseCode.badParameters, 'send audio as binary frames');
          return;
        }
        if (pipeline) write(data);
        else early.push(data);
      });
      socket.on('close', (code: number) => {
        closed = true;
        log.debug({ sessionId, trackId, code }, 'producer disconnected');
        if (session && pipeline) void session.closeTrack(trackId);
      });
      void (async () => {
        try {
          session = await registry.getOrCreate(sessionId);
          await session.openTrack({
            trackId,
            role,
            participant: participant ?? role,
            format,
            sampleRate: sampleRate ?? 48000,
            language,
            startMs,
            attach: (created) => {
              pipeline = created;
              source = createPacketSource(format, sampleRate ?? 48000, { unit: (unit) => created.push(unit), error: (error) => created.fail(error) });
              for (const message of early.splice(0)) write(message);
            },
            drainInput: async () => source?.end(),
            onFailed: (error) => socket.close(error.closeCode, closeReason(error.message)),
            disconnect: (code, reason) => socket.close(code, reason),
          });
          if (closed) void session.closeTrack(trackId);
        } catch (error) {
          if (error instanceof GatewayError) return closeWith(socket, error);
          log.error({ err: error, sessionId, trackId }, 'could not open track');
          socket.close(CloseCode.internalError, 'the gateway could not open the track; try again');
        }
      })();
    },
  );
}
