/**
 * The producer endpoint: one WebSocket per track, binary frames of audio in the declared format.
 *   GET /v1/sessions/:sessionId/tracks/:trackId/ingest
 *       ?format=webm|ogg|opus|pcm16&sampleRate=16000|48000&role=doctor|patient&participant=…&language=…
 *       &startMs=…&resume=…
 * The gateway answers with text frames (IngestEvent): `ready` with the track's resume token, then an
 * `ack` every ACK_EVERY_MS of audio. Wrong parameters, unparsable audio or a busy track close the socket
 * with a code from the protocol and a reason. Closing it with a close frame (1000, or no code) ends the
 * track after its last words are transcribed; a connection that drops without one leaves the track
 * waiting for the producer to resume (`?resume=`), which also takes over a connection that went silent.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { CloseCode, INGEST_FORMATS, PCM_SAMPLE_RATES, SPEAKER_ROLES, type IngestEvent, type IngestFormat, type SpeakerRole } from '../../client-sdk/src/protocol.ts';
import type { Authenticator } from './auth.ts';
import { closeReason, closeWith, holdWhileOpen, keepAlive, requireRole } from './http.ts';
import { jsonSchema, language as languageCode, MAX_SPEAKERS, maxSpeakersOf, resumeToken, text, trackParams } from './schemas.ts';
import type { ConnectionLimits } from './limits.ts';
import type { Logger } from '../log.ts';
import type { SessionRegistry } from '../session/registry.ts';
import { createPacketSource, type PacketSource } from '../demux/packet-source.ts';
import { GatewayError } from '../errors.ts';
import type { Session } from '../session/session.ts';
import type { ProducerRequest } from '../session/track-table.ts';
import type { TrackPipeline } from '../session/track-pipeline.ts';

/** A track longer than a day is not a consultation: startMs beyond it is refused. */
const MAX_TRACK_MS = 24 * 3600 * 1000;
/**
 * Audio between two acknowledgements: what a producer keeps to resend is about this plus its round trip.
 * Each ack is a text frame and a socket write: at 200 ms, 150 tracks made 750 of them a second; half a
 * second more audio kept by the producer is nothing.
 */
const ACK_EVERY_MS = 500;
/** Close codes of a producer that meant to stop (a close frame with 1000, or with no code: 1005). */
const DELIBERATE_CLOSE = new Set([CloseCode.normal, 1005]);
/**
 * Frames one connection decodes in one turn of the event loop (five seconds of audio in 20 ms frames). A
 * producer sending a backlog (a resend, a file streamed as fast as it goes) arrives in reads of tens of
 * seconds of audio; decoded, denoised and segmented without a break they held the loop for seconds,
 * while viewers, pings and the other tracks waited. Past this the socket is paused and the rest follows
 * turn by turn. Live audio (a frame or two per read) never reaches it, nor a producer a few seconds behind
 * on a loaded gateway (frames held back here are not in the track's Redis tail when the gateway dies).
 */
const FRAMES_PER_TURN = 250;

/** Counts turns of the event loop (one immediate per turn that has ingest traffic, shared by every connection). */
let loopTurn = 0;
let turnCounting = false;
const nextTurn = () => {
  loopTurn++;
  turnCounting = false;
};
function currentTurn(): number {
  if (!turnCounting) {
    turnCounting = true;
    setImmediate(nextTurn);
  }
  return loopTurn;
}

const querySchema = z
  .object({
    format: z.enum(INGEST_FORMATS as [IngestFormat, ...IngestFormat[]], { error: `format must be one of ${INGEST_FORMATS.join(', ')}` }),
    sampleRate: z.coerce.number().int().optional(),
    role: z.enum(SPEAKER_ROLES as [SpeakerRole, ...SpeakerRole[]], { error: 'role must be doctor or patient' }),
    participant: text(200).optional(),
    language: languageCode.optional(),
    // Fractional too: a producer's frames need not be whole milliseconds (a 2.5 ms Opus frame, 128 samples at 48 kHz).
    startMs: z.coerce.number().min(0, 'startMs must be a non-negative number of milliseconds').max(MAX_TRACK_MS, `startMs must be at most ${MAX_TRACK_MS} (24 h)`).optional(),
    resume: resumeToken.optional(),
    diarize: z.enum(['true', 'false', '1', '0'], { error: 'diarize must be true or false' }).transform((v) => v === 'true' || v === '1').optional(),
    speakers: z.coerce.number().int().min(1).max(MAX_SPEAKERS, `speakers must be 1 to ${MAX_SPEAKERS}`).optional(),
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
  /** PRODUCER_RESUME_MS, told to the producer in its ready frame. */
  resumeWindowMs: number;
}

export async function registerWebSocketIngest(app: FastifyInstance, { registry, authenticator, log, heartbeatMs, limits, maxTracksPerToken, maxConnectionsPerIp, resumeWindowMs }: IngestRouteOptions): Promise<void> {
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
      const { format, sampleRate, role, participant, language, startMs, resume } = query.data;
      const maxSpeakers = maxSpeakersOf(query.data);
      const caps = [
        { key: `producer:${request.principal!.tokenId}`, max: maxTracksPerToken, what: 'live tracks for this token' },
        { key: `ip:${request.ip}`, max: maxConnectionsPerIp, what: 'connections from this address' },
      ];
      if (!holdWhileOpen(socket, limits, caps)) return;
      const heard = keepAlive(socket, heartbeatMs);
      // Nothing is read until the track's pipeline exists (the session loading from the database, a draining
      // holder finishing): a producer sending ahead waits on TCP instead of piling up here, to be decoded in
      // one go (a minute of audio blocked the event loop for seconds, and an unbounded buffer is a memory hole).
      socket.pause();
      // Frames read and not yet written: those parsed before the pipeline existed, or past a turn's budget.
      const inbox: Buffer[] = [];
      /** Set while `inbox` is worked through turn by turn (the socket paused meanwhile). */
      let queued = false;
      let turn = -1;
      let framesThisTurn = 0;
      let left = false;
      let opened = false;
      let pipeline: TrackPipeline | undefined;
      // This connection's demuxer: the frames of the declared format → audio units for the pipeline.
      let source: PacketSource | undefined;
      let session: Session | undefined;
      let closeCode: number | undefined;
      let failed = false;
      // Set when a resumed connection took the track over: nothing from this one reaches the pipeline.
      let detached = false;
      let ackedMs = 0;
      let ackedAt = 0;
      const send = (event: IngestEvent) => socket.send(JSON.stringify(event));
      const write = (message: Buffer) => {
        pipeline!.guarded(() => source!.write(message));
        if (detached) return;
        // Also while a resumed producer resends what the track already has (skipped, the track time stands
        // still): an answer every ACK_EVERY_MS tells it the connection is alive.
        if (pipeline!.trackMs - ackedMs >= ACK_EVERY_MS || performance.now() - ackedAt >= ACK_EVERY_MS) {
          ackedMs = Math.floor(pipeline!.trackMs);
          ackedAt = performance.now();
          send({ type: 'ack', receivedMs: ackedMs, durableMs: Math.min(ackedMs, Math.floor(pipeline!.durableMs)) });
        }
      };
      const connection: ProducerRequest = {
        trackId,
        role,
        participant: participant ?? role,
        format,
        sampleRate: sampleRate ?? 48000,
        language,
        startMs,
        resumeToken: resume,
        maxSpeakers,
        attach: (created, resumeToken) => {
          pipeline = created;
          // A demuxer may still emit what it held after a takeover: it must not reach the resumed track.
          source = createPacketSource(format, sampleRate ?? 48000, { unit: (unit) => detached || created.push(unit), error: (error) => detached || created.fail(error) });
          ackedMs = Math.floor(created.trackMs);
          ackedAt = performance.now();
          send({ type: 'ready', trackId, receivedMs: ackedMs, resumeToken, resumeWindowMs });
          queued = true;
          drain();
        },
        drainInput: async () => source?.end(),
        onFailed: (error) => {
          failed = true;
          socket.close(error.closeCode, closeReason(error.message));
        },
        disconnect: (code, reason) => {
          if (code === CloseCode.replaced) detached = true;
          socket.close(code, reason);
        },
      };
      const gone = () => {
        if (detached || !session || left) return;
        left = true;
        if (failed || DELIBERATE_CLOSE.has(closeCode!)) void session.closeTrack(trackId, connection);
        else session.connectionLost(trackId, connection);
      };
      socket.on('message', (data: Buffer, isBinary: boolean) => {
        if (detached) return;
        if (!isBinary) {
          socket.close(CloseCode.badParameters, 'send audio as binary frames');
          return;
        }
        if (!pipeline || queued) {
          inbox.push(data);
          return;
        }
        if (currentTurn() !== turn) {
          turn = loopTurn;
          framesThisTurn = 0;
        }
        write(data);
        if (++framesThisTurn >= FRAMES_PER_TURN) {
          queued = true;
          socket.pause();
          setImmediate(drain);
        }
      });
      // A turn's worth of the inbox; once it is empty, reading goes on (and a close that came meanwhile is handled after its frames).
      const drain = () => {
        // The producer's pong waits behind these frames (TCP keeps order): they are its answer.
        heard();
        let written = 0;
        while (written < inbox.length && written < FRAMES_PER_TURN && !detached) write(inbox[written++]);
        inbox.splice(0, detached ? inbox.length : written);
        if (inbox.length > 0) {
          setImmediate(drain);
          return;
        }
        queued = false;
        socket.resume();
        if (closeCode !== undefined && opened) gone();
      };
      socket.on('close', (code: number) => {
        closeCode = code;
        log.debug({ sessionId, trackId, code }, 'producer disconnected');
        if (pipeline && !queued) gone();
      });
      void (async () => {
        try {
          session = await registry.getOrCreate(sessionId);
          await session.openTrack(connection);
          opened = true;
          if (closeCode !== undefined && !queued) gone();
        } catch (error) {
          // The close handshake needs the producer's close frame read.
          socket.resume();
          if (error instanceof GatewayError) return closeWith(socket, error);
          log.error({ err: error, sessionId, trackId }, 'could not open track');
          socket.close(CloseCode.internalError, 'the gateway could not open the track; try again');
        }
      })();
    },
  );
}
