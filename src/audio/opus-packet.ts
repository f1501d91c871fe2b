/**
 * Duration of an Opus packet from its TOC byte (RFC 6716 §3.1), in 48 kHz samples: what the Ogg
 * granule position counts. Returns 0 for a packet too short to say.
 */
const FRAME_SAMPLES_48K = [
  480, 960, 1920, 2880, // SILK NB 10/20/40/60 ms
  480, 960, 1920, 2880, // SILK MB
  480, 960, 1920, 2880, // SILK WB
  480, 960, // Hybrid SWB 10/20 ms
  480, 960, // Hybrid FB
  120, 240, 480, 960, // CELT NB 2.5/5/10/20 ms
  120, 240, 480, 960, // CELT WB
  120, 240, 480, 960, // CELT SWB
  120, 240, 480, 960, // CELT FB
];

export function opusPacketSamples48k(packet: Uint8Array): number {
  if (packet.length === 0) return 0;
  const toc = packet[0];
  const frameSamples = FRAME_SAMPLES_48K[toc >> 3];
  switch (toc & 0x03) {
    case 0:
      return frameSamples;
    case 1:
    case 2:
      return frameSamples * 2;
    default:
      return packet.length < 2 ? 0 : frameSamples * (packet[1] & 0x3f);
  }
}
