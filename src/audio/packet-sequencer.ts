/**
 * Orders numbered packets (16-bit sequence numbers, wrapping) into what to decode (pure). A gap becomes
 * `lost` entries the decoder conceals; a packet older than the one already played (late, or a duplicate)
 * is dropped, since its slot has been concealed already. A jump larger than `maxGap` is taken as the
 * sender restarting its numbering rather than seconds of loss.
 */
export type SequencedItem<T> = { kind: 'packet'; packet: T } | { kind: 'lost'; count: number };

export interface SequencerStats {
  received: number;
  lost: number;
  late: number;
}

export class PacketSequencer<T> {
  readonly stats: SequencerStats = { received: 0, lost: 0, late: 0 };
  private expected: number | undefined;
  private readonly maxGap: number;

  constructor(maxGap = 50) {
    this.maxGap = maxGap;
  }

  push(sequence: number, packet: T): SequencedItem<T>[] {
    const items: SequencedItem<T>[] = [];
    if (this.expected !== undefined) {
      const ahead = (sequence - this.expected + 0x10000) % 0x10000;
      if (ahead >= 0x8000) {
        this.stats.late++;
        return items;
      }
      if (ahead > 0 && ahead <= this.maxGap) {
        items.push({ kind: 'lost', count: ahead });
        this.stats.lost += ahead;
      }
    }
    this.stats.received++;
    this.expected = (sequence + 1) % 0x10000;
    items.push({ kind: 'packet', packet });
    return items;
  }
}
