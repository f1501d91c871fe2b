/**
 * Window conditioning (conditioner.ts) where it does not hold the event loop: a window's filters cost
 * ~0.5 ms per second of audio, so a 30 s final held every track's packets ~15 ms (more under load) when it
 * ran on the thread that carries them. In a worker thread, a copy of the window goes there and its
 * conditioned audio comes back (transferred both ways). A worker that fails costs nothing: the window is
 * conditioned here instead.
 */
import { conditionWindow, type ConditionerOptions, type Conditioning } from './conditioner.ts';
import { WorkerThread } from './worker-thread.ts';

export type SpeechSpans = readonly (readonly [number, number])[];

export interface ConditionedWindow {
  audio: Int16Array;
  conditioning: Conditioning;
}

/** Conditions the windows sent to STT; `speech`: the window's speech stretches, ms from its start. */
export interface WindowConditioner {
  condition(audio: Int16Array, speech: SpeechSpans): Promise<ConditionedWindow>;
  close?(): Promise<void>;
}

export interface ConditionRequest {
  audio: Int16Array;
  speech: SpeechSpans;
  options: ConditionerOptions;
}

/** On the calling thread (the upload worker's jobs, tests): nothing else waits behind it there. */
export class InlineConditioner implements WindowConditioner {
  private readonly options: ConditionerOptions;

  constructor(options: ConditionerOptions) {
    this.options = options;
  }

  async condition(audio: Int16Array, speech: SpeechSpans): Promise<ConditionedWindow> {
    return conditionWindow(audio, speech, this.options);
  }
}

export class ConditionerThread implements WindowConditioner {
  private readonly thread = new WorkerThread<ConditionRequest, ConditionedWindow>(new URL('./conditioner-worker.ts', import.meta.url), 'conditioner');
  private readonly options: ConditionerOptions;

  private constructor(options: ConditionerOptions) {
    this.options = options;
  }

  static async start(options: ConditionerOptions): Promise<ConditionerThread> {
    const conditioner = new ConditionerThread(options);
    await conditioner.thread.start();
    return conditioner;
  }

  async condition(audio: Int16Array, speech: SpeechSpans): Promise<ConditionedWindow> {
    // A copy moves: the window's own audio stays with it (a retry, the next partial of its utterance).
    const copy = audio.slice();
    try {
      return await this.thread.request({ audio: copy, speech, options: this.options }, [copy.buffer as ArrayBuffer]);
    } catch {
      return conditionWindow(audio, speech, this.options);
    }
  }

  close(): Promise<void> {
    return this.thread.close();
  }
}
