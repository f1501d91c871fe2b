/**
 * Puts RTP packets that arrive out of order back in order (pure). Up to `depth` packets are held while
 * one is missing; a packet that fills the gap releases the run behind it. When the buffer is full the
 * gap is given up (the sequencer downstream conceals it) and the held packets are released. Late
 * packets older than what was released are passed on too; the sequencer drops them.
 */
export interface Numbered<T> {
  sequence: number;
  packet: T;
}

export class JitterBuffer<T> {
  private readonly depth: number;
  private readonly held = new Map<number, T>();
  private next: number | undefined;

  constructor(depth: number) {
    this.depth = depth;
  }

  push(sequence: number, packet: T): Numbered<T>[] {
    if (this.next === undefined) this.next = sequence;
    const ahead = (sequence - this.next + 0x10000) % 0x10000;
    if (ahead >= 0x8000) return [{ sequence, packet }];
    this.held.set(sequence, packet);
    const released = this.drain();
    while (this.held.size > this.depth) {
      this.next = this.oldestHeld();
      released.push(...this.drain());
    }
    return released;
  }

  /** Everything still held, in order (end of stream). */
  flush(): Numbered<T>[] {
    const released: Numbered<T>[] = [];
    while (this.held.size > 0) {
      this.next = this.oldestHeld();
      released.push(...this.drain());
    }
    return released;
  }

  private drain(): Numbered<T>[] {
    const released: Numbered<T>[] = [];
    for (let packet = this.held.get(this.next!); packet !== undefined; packet = this.held.get(this.next!)) {
      released.push({ sequence: this.next!, packet });
      this.held.delete(this.next!);
      this.next = (this.next! + 1) % 0x10000;
    }
    return released;
  }

  private oldestHeld(): number {
    let oldest: number | undefined;
    let oldestDistance = Infinity;
    for (const sequence of this.held.keys()) {
      const distance = (sequence - this.next! + 0x10000) % 0x10000;
      if (distance < oldestDistance) {
        oldest = sequence;
        oldestDistance = distance;
      }
    }
    return oldest!;
  }
}
