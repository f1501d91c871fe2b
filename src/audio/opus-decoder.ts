import opus from '@discordjs/opus';

export const PIPELINE_SAMPLE_RATE = 16000;

/**
 * Opus → 16 kHz mono PCM16, straight from the codec (no resampling step). A lost packet is concealed
 * with Opus packet-loss concealment for the duration of the previous packet; a packet the codec rejects
 * is concealed the same way and counted, so a corrupt frame never stops the track.
 */
export class OpusDecoder {
  private readonly codec = new opus.OpusEncoder(PIPELINE_SAMPLE_RATE, 1);
  private lastPacketSamples = PIPELINE_SAMPLE_RATE / 50;
  corruptPackets = 0;
  consecutiveCorrupt = 0;

  /** Duration of the last decoded packet, ms: what concealing one lost packet adds. */
  get packetMs(): number {
    return (this.lastPacketSamples * 1000) / PIPELINE_SAMPLE_RATE;
  }

  decode(packet: Buffer): Int16Array {
    try {
      const pcm = this.codec.decode(packet);
      this.consecutiveCorrupt = 0;
      const samples = new Int16Array(pcm.buffer, pcm.byteOffset, pcm.length / 2);
      this.lastPacketSamples = samples.length;
      return samples;
    } catch {
      this.corruptPackets++;
      this.consecutiveCorrupt++;
      return this.conceal(1);
    }
  }

  /** Concealment audio for `count` missing packets. */
  conceal(count: number): Int16Array {
    const out = new Int16Array(this.lastPacketSamples * count);
    for (let i = 0; i < count; i++) {
      // An empty packet asks libopus for concealment; it returns more than one packet's worth.
      const pcm = this.codec.decode(Buffer.alloc(0));
      const samples = new Int16Array(pcm.buffer, pcm.byteOffset, Math.min(pcm.length / 2, this.lastPacketSamples));
      out.set(samples, i * this.lastPacketSamples);
    }
    return out;
  }
}
