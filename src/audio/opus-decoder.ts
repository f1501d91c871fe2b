import opus from '@discordjs/opus';
import { opusPacketSamples48k, opusPacketWellFormed } from './opus-packet.ts';

export const PIPELINE_SAMPLE_RATE = 16000;

/**
 * What each unit of an Opus track stands for in 16 kHz samples, told without decoding it, by the rules
 * the decoder keeps: a packet lasts what its TOC says; a packet the codec refuses (RFC 6716's framing
 * broken: libopus checks exactly that) and a lost packet stand for the previous packet's length, concealed.
 * A track decoded on another thread keeps its timeline here, in step with the decoder there.
 */
export class OpusTimeline {
  protected lastPacketSamples = PIPELINE_SAMPLE_RATE / 50;
  corruptPackets = 0;
  consecutiveCorrupt = 0;

  /** Duration of the last decoded packet, ms: what concealing one lost packet adds. */
  get packetMs(): number {
    return (this.lastPacketSamples * 1000) / PIPELINE_SAMPLE_RATE;
  }

  /** A received packet's samples; a refused one is counted (`consecutiveCorrupt` > 0 after it). */
  packet(packet: Uint8Array): number {
    if (!opusPacketWellFormed(packet)) {
      this.corruptPackets++;
      this.consecutiveCorrupt++;
      return this.lastPacketSamples;
    }
    this.consecutiveCorrupt = 0;
    this.lastPacketSamples = opusPacketSamples48k(packet) / 3;
    return this.lastPacketSamples;
  }

  /** The samples concealing `count` lost packets stands for. */
  lost(count: number): number {
    return this.lastPacketSamples * count;
  }
}

/**
 * Opus → 16 kHz mono PCM16, straight from the codec (no resampling step). A lost packet is concealed
 * with Opus packet-loss concealment for the duration of the previous packet; a packet the codec rejects
 * is concealed the same way and counted, so a corrupt frame never stops the track.
 */
export class OpusDecoder extends OpusTimeline {
  private readonly codec = new opus.OpusEncoder(PIPELINE_SAMPLE_RATE, 1);

  decode(packet: Buffer): Int16Array {
    this.packet(packet);
    if (this.consecutiveCorrupt > 0) return this.conceal(1);
    try {
      const pcm = this.codec.decode(packet);
      return new Int16Array(pcm.buffer, pcm.byteOffset, pcm.length / 2);
    } catch {
      // Well formed yet refused (not seen in libopus): concealed for the length the timeline counted.
      return this.conceal(1);
    }
  }

  /** Concealment audio for `count` missing packets. */
  conceal(count: number): Int16Array {
    const out = new Int16Array(this.lost(count));
    for (let i = 0; i < count; i++) {
      // An empty packet asks libopus for concealment; it returns more than one packet's worth.
      const pcm = this.codec.decode(Buffer.alloc(0));
      const samples = new Int16Array(pcm.buffer, pcm.byteOffset, Math.min(pcm.length / 2, this.lastPacketSamples));
      out.set(samples, i * this.lastPacketSamples);
    }
    return out;
  }
}
