/**
 * WebRTC ingest over WHIP (RFC 9725), with werift (pure TypeScript ICE, DTLS, SRTP):
 *   POST   /v1/sessions/:sessionId/tracks/:trackId/whip?role=&participant=&language=&resume=   (application/sdp offer)
 *          → 201, the SDP answer with every ICE candidate gathered up front, Location of the resource,
 *            the ICE servers as Link headers, the track's resume token (Helssa-Resume-Token)
 *   DELETE <Location>   ends the track (its last words are transcribed)
 *   PATCH  <Location>   405: trickle ICE is not offered, the answer carries the candidates
 * Audio only, Opus only. The received RTP feeds the same pipeline as the WebSocket ingest. ICE or DTLS
 * that never completes, a connection that fails, and a sender gone silent are told to the session's
 * viewers and close the peer connection, so no UDP port stays open; the track then waits
 * PRODUCER_RESUME_MS for a new WHIP session with `?resume=<token>` (which also replaces a peer that is still
 * up), and continues the open utterance, the time away filled with silence.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { RTCPeerConnection, RTCRtpCodecParameters, type RTCIceServer } from 'werift';
import type { Authenticator } from './auth.ts';
import { requireRole, sendError } from './http.ts';
import { jsonSchema, maxSpeakersOf, trackParams, whipQuery } from './schemas.ts';
import { z } from 'zod';
import type { ConnectionLimits } from './limits.ts';
import type { Logger } from '../log.ts';
import type { SessionRegistry } from '../session/registry.ts';
import { GatewayError } from '../errors.ts';
import { RtpTrack } from './rtp-track.ts';
import { RESUME_TOKEN_HEADER } from '../../client-sdk/src/protocol.ts';
import { announceAddress, checkOffer } from '../demux/sdp-offer.ts';

export interface WebRtcOptions {
  portRange: [number, number] | undefined;
  announcedAddress: string | undefined;
  iceServers: RTCIceServer[];
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  limits: ConnectionLimits;
  maxTracksPerToken: number;
}

interface Peer {
  pc: RTCPeerConnection;
  /** Ends the track if ICE/DTLS has not completed in time. */
  connectTimer?: NodeJS.Timeout;
  track: RtpTrack;
  sessionId: string;
  trackId: string;
}

export class WhipIngest {
  private readonly peers = new Map<string, Peer>();
  private readonly options: WebRtcOptions;
  private readonly log: Logger;

  constructor(options: WebRtcOptions, log: Logger) {
    this.options = options;
    this.log = log.child({ component: 'whip' });
  }

  get openPeers(): number {
    return this.peers.size;
  }

  /** The endpoint as a Fastify plugin: its routes, and its peers or ports closed with the app. */
  readonly plugin = async (app: FastifyInstance, { registry, authenticator }: { registry: SessionRegistry; authenticator: Authenticator }): Promise<void> => {
    this.register(app, registry, authenticator);
    app.addHook('onClose', () => this.close());
  };

  private register(app: FastifyInstance, registry: SessionRegistry, authenticator: Authenticator): void {
    const resourceParams = jsonSchema(trackParams.extend({ resourceId: z.string() }));
    app.register(async (scope) => {
      scope.addContentTypeParser(['application/sdp', 'application/trickle-ice-sdpfrag'], { parseAs: 'string', bodyLimit: 64 * 1024 }, (_request, body, done) => done(null, body));
      scope.patch('/v1/sessions/:sessionId/tracks/:trackId/whip/:resourceId', { schema: { hide: true, params: resourceParams } }, async (_request, reply) =>
        reply.code(405).header('allow', 'DELETE').send({ error: { code: 'trickle_not_supported', message: 'ICE candidates are all in the answer; trickle ICE and ICE restarts are not supported' } }),
      );
      scope.post('/v1/sessions/:sessionId/tracks/:trackId/whip', {
        schema: {
          summary: 'WHIP: start streaming a track over WebRTC (body: SDP offer)',
          description: 'Counts against INGEST_CONNECTIONS_PER_MINUTE (per token) and RATE_LIMIT_PER_IP_PER_MINUTE: past them 429 rate_limited with Retry-After.',
          security: [{ bearer: [] }],
          params: jsonSchema(trackParams),
          querystring: jsonSchema(whipQuery),
        },
        preValidation: requireRole(authenticator, ['producer', 'service']),
      }, async (request, reply) => {
        const { sessionId, trackId } = request.params as { sessionId: string; trackId: string };
        const { role, participant, language, resume, diarize, speakers } = request.query as { role: 'doctor' | 'patient'; participant?: string; language?: string; resume?: string; diarize?: boolean; speakers?: number };
        if (!request.headers['content-type']?.startsWith('application/sdp') || typeof request.body !== 'string') {
          return sendError(reply, 415, 'sdp_expected', 'send the SDP offer with Content-Type: application/sdp');
        }
        const problem = checkOffer(request.body);
        if (problem) return sendError(reply, problem.status, problem.code, problem.message);
        const resourceId = randomUUID();
        // A full cap throws CapReached: 429 with Retry-After.
        const release = this.options.limits.acquire([{ key: `producer:${request.principal!.tokenId}`, max: this.options.maxTracksPerToken, what: 'live tracks for this token' }]);
        let peer: Peer | undefined;
        try {
          const track = await RtpTrack.open({
            registry, log: this.log, sessionId, trackId, role, participant: participant ?? role, language, transport: 'webrtc', maxSpeakers: maxSpeakersOf({ diarize, speakers }),
            idleTimeoutMs: this.options.idleTimeoutMs, resumeToken: resume, resumable: true,
            onClosed: () => {
              release();
              void this.closePeer(resourceId);
            },
          });
          peer = { pc: this.createPeerConnection(), track, sessionId, trackId };
          this.peers.set(resourceId, peer);
          const answer = await this.answer(peer, request.body, resourceId);
          const location = `/v1/sessions/${sessionId}/tracks/${trackId}/whip/${resourceId}`;
          reply.code(201).type('application/sdp').header('location', location).header('etag', `"${resourceId}"`).header(RESUME_TOKEN_HEADER, track.resumeToken);
          const links = this.iceServerLinks();
          if (links.length) reply.header('link', links);
          return answer;
        } catch (error) {
          release();
          if (peer) await peer.track.end();
          await this.closePeer(resourceId);
          if (error instanceof GatewayError) throw error;
          // werift's own message describes its internals, not the offer: it goes to the log only.
          this.log.warn({ err: error, sessionId, trackId }, 'WHIP offer could not be answered');
          return sendError(reply, 400, 'invalid_sdp', 'the offer could not be negotiated: check its ICE, DTLS and Opus attributes');
        }
      });
    });

    app.delete('/v1/sessions/:sessionId/tracks/:trackId/whip/:resourceId', {
      schema: { summary: 'WHIP: end the track', security: [{ bearer: [] }], params: resourceParams },
      preValidation: requireRole(authenticator, ['producer', 'service']),
    }, async (request, reply) => {
      const { sessionId, trackId, resourceId } = request.params as { sessionId: string; trackId: string; resourceId: string };
      const peer = this.peers.get(resourceId);
      if (!peer || peer.sessionId !== sessionId || peer.trackId !== trackId) return sendError(reply, 404, 'resource_not_found', 'no such WHIP resource (already ended?)');
      await this.closePeer(resourceId);
      await peer.track.end();
      return reply.code(200).send();
    });
  }

  /** Gateway shutdown: every peer connection closed (their tracks are drained by the session registry). */
  private async close(): Promise<void> {
    await Promise.all([...this.peers.keys()].map((id) => this.closePeer(id)));
  }

  private createPeerConnection(): RTCPeerConnection {
    return new RTCPeerConnection({
      codecs: { audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2 })], video: [] },
      iceServers: this.options.iceServers,
      icePortRange: this.options.portRange,
      iceUseIpv6: false,
    });
  }

  private async answer(peer: Peer, offer: string, resourceId: string): Promise<string> {
    const { pc, track } = peer;
    pc.onTrack.subscribe((media) => {
      if (media.kind !== 'audio') return;
      media.onReceiveRtp.subscribe((rtp) => track.push(rtp.header.sequenceNumber, rtp.payload));
    });
    const connectTimer = (peer.connectTimer = setTimeout(() => {
      if (pc.connectionState !== 'connected') void track.end(`ICE/DTLS did not complete within ${this.options.connectTimeoutMs / 1000} s`);
    }, this.options.connectTimeoutMs));
    pc.connectionStateChange.subscribe((state) => {
      this.log.debug({ sessionId: peer.sessionId, trackId: peer.trackId, state }, 'WebRTC connection state');
      if (state === 'connected') {
        clearTimeout(connectTimer);
        track.expectPackets();
      }
      if (state === 'failed') void track.end('the WebRTC connection failed (ICE or DTLS)');
    });
    await pc.setRemoteDescription({ type: 'offer', sdp: offer });
    await pc.setLocalDescription(await pc.createAnswer());
    if (pc.iceGatheringState !== 'complete') {
      await new Promise<void>((resolve) => {
        const { unSubscribe } = pc.iceGatheringStateChange.subscribe((state) => {
          if (state === 'complete') {
            unSubscribe();
            resolve();
          }
        });
      });
    }
    const sdp = pc.localDescription!.sdp;
    this.log.info({ sessionId: peer.sessionId, trackId: peer.trackId, resourceId }, 'WHIP offer answered');
    return this.options.announcedAddress ? announceAddress(sdp, this.options.announcedAddress) : sdp;
  }

  private async closePeer(resourceId: string): Promise<void> {
    const peer = this.peers.get(resourceId);
    if (!peer) return;
    this.peers.delete(resourceId);
    clearTimeout(peer.connectTimer);
    await peer.pc.close().catch((error: Error) => this.log.warn({ err: error }, 'peer connection did not close cleanly'));
  }

  /** RFC 9725 §4.6: ICE servers for the client, as Link headers. */
  private iceServerLinks(): string[] {
    return this.options.iceServers.flatMap((server) =>
      [server.urls].flat().map((url) => {
        const credentials = server.username ? `; username="${server.username}"; credential="${server.credential ?? ''}"; credential-type="password"` : '';
        return `<${url}>; rel="ice-server"${credentials}`;
      }),
    );
  }
}
