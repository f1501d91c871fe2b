/**
 * Cuts a stream of PCM chunks of any length into fixed-size frames (pure). Whole frames inside a chunk
 * are views of it, not copies (a 20 ms Opus packet decodes to exactly one frame: nothing is allocated);
 * only a frame that straddles two chunks is assembled in a buffer of its own. So a chunk must not be
 * written to after it is pushed.
 */
export class Framer {
  readonly frameSamples: number;
  private pending: Int16Array;
  private pendingCount = 0;

  constructor(frameSamples: number) {
    this.frameSamples = frameSamples;
    this.pending = new Int16Array(frameSamples);
  }

  /** Samples held until a frame is whole. */
  get pendingSamples(): number {
    return this.pendingCount;
  }

  push(samples: Int16Array): Int16Array[] {
    const frames: Int16Array[] = [];
    let offset = 0;
    if (this.pendingCount > 0) {
      offset = Math.min(this.frameSamples - this.pendingCount, samples.length);
      this.pending.set(samples.subarray(0, offset), this.pendingCount);
      this.pendingCount += offset;
      if (this.pendingCount < this.frameSamples) return frames;
      // The assembled frame is handed over whole; the next one is assembled in a fresh buffer.
      frames.push(this.pending);
      this.pending = new Int16Array(this.frameSamples);
      this.pendingCount = 0;
    }
    for (; offset + this.frameSamples <= samples.length; offset += this.frameSamples) frames.push(samples.subarray(offset, offset + this.frameSamples));
    if (offset < samples.length) {
      this.pending.set(samples.subarray(offset));
      this.pendingCount = samples.length - offset;
    }
    return frames;
  }

  /** The last partial frame, padded with silence; empty when nothing is pending. */
  flush(): Int16Array[] {
    if (this.pendingCount === 0) return [];
    const frame = this.pending;
    frame.fill(0, this.pendingCount);
    this.pending = new Int16Array(this.frameSamples);
    this.pendingCount = 0;
    return [frame];
  }
}
