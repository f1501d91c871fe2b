/**
 * Plain RTP ingest, for clinics that already run an SFU or PBX (mediasoup PlainTransport, Janus
 * rtp_forward, Asterisk ExternalMedia): an API call opens a session track and a UDP port; Opus RTP sent
 * to that port is transcribed like any other track.
 *   POST   /v1/sessions/:sessionId/tracks/:trackId/rtp?role=&participant=&language=&payloadType=
 *          → 201 { host, port, payloadType, codec: 'opus/48000/2', resource }
 *   DELETE /v1/sessions/:sessionId/tracks/:trackId/rtp   closes the port and ends the track
 * Only packets from the declared sender are taken: from `source` (an IP address; by default the address
 * that made the API call) and, when given, with SSRC `ssrc`; without `ssrc` the first SSRC heard from
 * that address is latched. Others are ignored, as are RTCP and other payload types. The port closes when
 * the track ends, including after `idleTimeoutMs` without a packet.
 */
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import type { FastifyInstance } from 'fastify';
import type { Authenticator } from './auth.ts';
import { requireRole, sendError } from './http.ts';
import { jsonSchema, maxSpeakersOf, trackParams, trackQuery } from './schemas.ts';
import { z } from 'zod';
import type { ConnectionLimits } from './limits.ts';
import type { Logger } from '../log.ts';
import type { SessionRegistry } from '../session/registry.ts';
import { parseRtp } from '../demux/rtp-packet.ts';
import { RtpTrack } from './rtp-track.ts';

export interface RtpIngestOptions {
  bindHost: string;
  /** Where senders reach the port (the bind address when unset). */
  announcedAddress: string | undefined;
  portRange: [number, number] | undefined;
  idleTimeoutMs: number;
  limits: ConnectionLimits;
  maxTracksPerToken: number;
}

interface Listener {
  socket: Socket;
  track: RtpTrack;
}

export class RtpIngest {
  private readonly listeners = new Map<string, Listener>();
  private readonly options: RtpIngestOptions;
  private readonly log: Logger;
  private nextPort = 0;

  constructor(options: RtpIngestOptions, log: Logger) {
    this.options = options;
    this.log = log.child({ component: 'rtp' });
  }

  get openPorts(): number {
    return this.listeners.size;
  }

  /** The endpoint as a Fastify plugin: its routes, and its peers or ports closed with the app. */
  readonly plugin = async (app: FastifyInstance, { registry, authenticator }: { registry: SessionRegistry; authenticator: Authenticator }): Promise<void> => {
    this.register(app, registry, authenticator);
    app.addHook('onClose', () => this.close());
  };

  private register(app: FastifyInstance, registry: SessionRegistry, authenticator: Authenticator): void {
    app.post('/v1/sessions/:sessionId/tracks/:trackId/rtp', {
      schema: {
        summary: 'Open a UDP port for Opus RTP from an existing SFU or PBX',
        description: 'Counts against INGEST_CONNECTIONS_PER_MINUTE (per token) and RATE_LIMIT_PER_IP_PER_MINUTE: past them 429 rate_limited with Retry-After.',
        security: [{ bearer: [] }],
        params: jsonSchema(trackParams),
        querystring: jsonSchema(
          trackQuery
            .extend({
              payloadType: z.int().min(0).max(127).default(111).describe('RTP payload type of the Opus stream'),
              ssrc: z.int().min(0).max(4294967295).optional().describe('SSRC of the stream; packets of any other SSRC are ignored (default: the first heard from `source`)'),
              source: z.union([z.ipv4(), z.ipv6()]).optional().describe('IP address the RTP comes from (default: the address of this API call)'),
            })
            .strict(),
        ),
      },
      preValidation: requireRole(authenticator, ['producer', 'service']),
    }, async (request, reply) => {
      const { sessionId, trackId } = request.params as { sessionId: string; trackId: string };
      const { role, participant, language, payloadType, ssrc: declaredSsrc, source, diarize, speakers } = request.query as {
        role: 'doctor' | 'patient'; participant?: string; language?: string; payloadType: number; ssrc?: number; source?: string; diarize?: boolean; speakers?: number;
      };
      const sender = normalizeAddress(source ?? request.ip);
      const key = `${sessionId}/${trackId}`;
      // A full cap throws CapReached: 429 with Retry-After.
      const release = this.options.limits.acquire([{ key: `producer:${request.principal!.tokenId}`, max: this.options.maxTracksPerToken, what: 'live tracks for this token' }]);
      let socket: Socket;
      try {
        socket = await this.bind();
      } catch (error) {
        release();
        return sendError(reply, 503, 'no_port_available', (error as Error).message);
      }
      let track: RtpTrack;
      try {
        track = await RtpTrack.open({
          registry, log: this.log, sessionId, trackId, role, participant: participant ?? role, language, transport: 'rtp', maxSpeakers: maxSpeakersOf({ diarize, speakers }),
          idleTimeoutMs: this.options.idleTimeoutMs, resumable: false,
          onClosed: () => {
            release();
            void this.release(key);
          },
        });
      } catch (error) {
        release();
        socket.close();
        throw error;
      }
      let ssrc = declaredSsrc;
      socket.on('message', (datagram, from) => {
        if (normalizeAddress(from.address) !== sender) return;
        const rtp = parseRtp(datagram);
        if (!rtp || rtp.payloadType !== payloadType) return;
        ssrc ??= rtp.ssrc;
        if (rtp.ssrc === ssrc) track.push(rtp.sequence, rtp.payload);
      });
      this.listeners.set(key, { socket, track });
      track.expectPackets();
      const port = socket.address().port;
      this.log.info({ sessionId, trackId, port }, 'RTP port open');
      // A wildcard bind is reached at the address this API call came in on.
      const host = this.options.announcedAddress ?? (['0.0.0.0', '::'].includes(this.options.bindHost) ? normalizeAddress(request.socket.localAddress ?? '127.0.0.1') : this.options.bindHost);
      return reply.code(201).send({ host, port, payloadType, codec: 'opus/48000/2', resource: `/v1/sessions/${sessionId}/tracks/${trackId}/rtp` });
    });

    app.delete('/v1/sessions/:sessionId/tracks/:trackId/rtp', {
      schema: { summary: 'Close the RTP port and end the track', security: [{ bearer: [] }], params: jsonSchema(trackParams) },
      preValidation: requireRole(authenticator, ['producer', 'service']),
    }, async (request, reply) => {
      const { sessionId, trackId } = request.params as { sessionId: string; trackId: string };
      const listener = this.listeners.get(`${sessionId}/${trackId}`);
      if (!listener) return sendError(reply, 404, 'rtp_not_open', `no RTP port is open for track ${trackId}`);
      await this.release(`${sessionId}/${trackId}`);
      await listener.track.end();
      return reply.code(200).send();
    });
  }

  private async close(): Promise<void> {
    await Promise.all([...this.listeners.keys()].map((key) => this.release(key)));
  }

  private async release(key: string): Promise<void> {
    const listener = this.listeners.get(key);
    if (!listener) return;
    this.listeners.delete(key);
    listener.socket.close();
  }

  /** A UDP socket on a free port of the range (or any port). */
  private async bind(): Promise<Socket> {
    const range = this.options.portRange;
    const attempts = range ? range[1] - range[0] + 1 : 1;
    for (let i = 0; i < attempts; i++) {
      const port = range ? range[0] + ((this.nextPort++ % attempts) >>> 0) : 0;
      const socket = createSocket(this.options.bindHost.includes(':') ? 'udp6' : 'udp4');
      try {
        socket.bind(port, this.options.bindHost);
        await once(socket, 'listening');
        return socket;
      } catch {
        socket.close();
      }
    }
    throw new Error(`every port of the RTP range ${range![0]}–${range![1]} is in use`);
  }
}

/** `::ffff:127.0.0.1` and `127.0.0.1` are one sender. */
function normalizeAddress(address: string): string {
  return address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
}
