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

/** The largest frame RFC 6716 allows, bytes (R2). */
const MAX_FRAME_BYTES = 1275;
/** The longest packet, in 48 kHz samples (120 ms, R5). */
const MAX_PACKET_SAMPLES_48K = 5760;

/** A frame length (RFC 6716 §3.2.1) at `at`, `available` bytes on: [length, bytes it took], or undefined when cut short. */
function frameLength(packet: Uint8Array, at: number, available: number): [number, number] | undefined {
  if (available < 1) return undefined;
  if (packet[at] < 252) return [packet[at], 1];
  if (available < 2) return undefined;
  return [packet[at] + 4 * packet[at + 1], 2];
}

/**
 * Whether an Opus packet keeps the framing rules R1–R7 of RFC 6716 §3.4: what libopus checks before it
 * decodes, so the packets it refuses are known without decoding (the track's timeline and its archive are
 * kept on one thread while the decoding runs on another). An empty packet is not well formed.
 */
export function opusPacketWellFormed(packet: Uint8Array): boolean {
  if (packet.length === 0) return false;
  const toc = packet[0];
  const frameSamples = FRAME_SAMPLES_48K[toc >> 3];
  let length = packet.length - 1;
  switch (toc & 0x03) {
    case 0:
      return length <= MAX_FRAME_BYTES;
    case 1:
      return length % 2 === 0 && length / 2 <= MAX_FRAME_BYTES;
    case 2: {
      const first = frameLength(packet, 1, length);
      if (!first) return false;
      length -= first[1];
      return first[0] <= length && length - first[0] <= MAX_FRAME_BYTES;
    }
    default: {
      if (length < 1) return false;
      const header = packet[1];
      const count = header & 0x3f;
      if (count === 0 || frameSamples * count > MAX_PACKET_SAMPLES_48K) return false;
      let at = 2;
      length -= 1;
      if (header & 0x40) {
        let byte: number;
        do {
          if (length <= 0) return false;
          byte = packet[at++];
          length -= 1 + (byte === 255 ? 254 : byte);
        } while (byte === 255);
      }
      if (length < 0) return false;
      if (header & 0x80) {
        let last = length;
        for (let i = 0; i < count - 1; i++) {
          const size = frameLength(packet, at, length);
          if (!size) return false;
          length -= size[1];
          if (size[0] > length) return false;
          at += size[1];
          last -= size[1] + size[0];
        }
        return last >= 0 && last <= MAX_FRAME_BYTES;
      }
      return length % count === 0 && length / count <= MAX_FRAME_BYTES;
    }
  }
}
