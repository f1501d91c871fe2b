/** Cuts a stream of PCM chunks of any length into fixed-size frames (pure). */
export class Framer {
  private readonly frameSamples: number;
  private pending = new Int16Array(0);

  /** Samples held until a frame is whole. */
  get pendingSamples(): number {
    return this.pending.length;
  }

  constructor(frameSamples: number) {
    this.frameSamples = frameSamples;
  }

  push(samples: Int16Array): Int16Array[] {
    const joined = new Int16Array(this.pending.length + samples.length);
    joined.set(this.pending);
    joined.set(samples, this.pending.length);
    const frames: Int16Array[] = [];
    let offset = 0;
    for (; offset + this.frameSamples <= joined.length; offset += this.frameSamples) {
      frames.push(joined.slice(offset, offset + this.frameSamples));
    }
    this.pending = joined.slice(offset);
    return frames;
  }

  /** The last partial frame, padded with silence; empty when nothing is pending. */
  flush(): Int16Array[] {
    if (this.pending.length === 0) return [];
    const frame = new Int16Array(this.frameSamples);
    frame.set(this.pending);
    this.pending = new Int16Array(0);
    return [frame];
  }
}
