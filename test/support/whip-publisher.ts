/**
 * A werift peer publishing one Opus track over WHIP, as a producer's browser does: offer, ICE gathered, the
 * gateway's answer, connected. For the benches' senders and the WHIP tests; it sends what it is given with `track.writeRtp`.
 */
import { MediaStreamTrack, RTCPeerConnection, RTCRtpCodecParameters } from 'werift';

export interface WhipPublisher {
  pc: RTCPeerConnection;
  track: MediaStreamTrack;
  /** The WHIP resource (ends the track on DELETE), then the peer closed. */
  close(): Promise<void>;
}

/** A werift peer that sends one Opus track (payload type 111), not yet offered. */
export function senderPeer(): { pc: RTCPeerConnection; track: MediaStreamTrack } {
  const pc = new RTCPeerConnection({ codecs: { audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, payloadType: 111 })] }, iceUseIpv6: false });
  const track = new MediaStreamTrack({ kind: 'audio' });
  pc.addTransceiver(track, { direction: 'sendonly' });
  return { pc, track };
}

/** Publishes to `/v1/sessions/{sessionId}/tracks/{trackId}/whip?{query}` with a producer `token`; resolves once connected. */
export async function publishOverWhip(baseUrl: string, sessionId: string, trackId: string, query: string, token: string): Promise<WhipPublisher> {
  const { pc, track } = senderPeer();
  await pc.setLocalDescription(await pc.createOffer());
  while (pc.iceGatheringState !== 'complete') await new Promise((r) => setTimeout(r, 10));
  const response = await fetch(`${baseUrl}/v1/sessions/${sessionId}/tracks/${trackId}/whip?${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/sdp' },
    body: pc.localDescription!.sdp,
  });
  if (response.status !== 201) throw new Error(`WHIP ${response.status}: ${await response.text()}`);
  const location = response.headers.get('location')!;
  await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
  while (pc.connectionState !== 'connected') await new Promise((r) => setTimeout(r, 10));
  return {
    pc,
    track,
    close: async () => {
      await fetch(`${baseUrl}${location}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
      await pc.close();
    },
  };
}
