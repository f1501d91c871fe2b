/** RTP (RFC 3550) fixed header, CSRCs, header extension and padding: what is left is the payload (pure). */
export interface RtpPacket {
  payloadType: number;
  sequence: number;
  timestamp: number;
  ssrc: number;
  payload: Buffer;
}

/** undefined for anything that is not an RTP version 2 packet (RTCP, STUN, noise). */
export function parseRtp(datagram: Buffer): RtpPacket | undefined {
  if (datagram.length < 12 || datagram[0] >> 6 !== 2) return undefined;
  const payloadType = datagram[1] & 0x7f;
  // RTCP packet types 200–204 share the port under rtcp-mux; their second byte reads as PT 72–76.
  if (payloadType >= 72 && payloadType <= 76) return undefined;
  let offset = 12 + (datagram[0] & 0x0f) * 4;
  if (datagram[0] & 0x10) {
    if (datagram.length < offset + 4) return undefined;
    offset += 4 + datagram.readUInt16BE(offset + 2) * 4;
  }
  let end = datagram.length;
  if (datagram[0] & 0x20) end -= datagram[datagram.length - 1];
  if (end < offset) return undefined;
  return { payloadType, sequence: datagram.readUInt16BE(2), timestamp: datagram.readUInt32BE(4), ssrc: datagram.readUInt32BE(8), payload: datagram.subarray(offset, end) };
}
