/**
 * A scripted recognizer, in-process, for orchestration tests (as LiveKit's agents keep a fake STT in the
 * library): it "hears" the words a test placed on a timeline, and each call can be told to fail or to
 * take a while, so answers can come back late and out of order. Audio made by `timelineAudio` carries its
 * own frame index in each 20 ms frame's first sample, which is how a window is placed on the timeline.
 */
import type { Transcriber, Transcription, TranscriptionRequest } from '../transcriber.ts';

export interface PlacedWord {
  word: string;
  startMs: number;
  endMs: number;
}

/** What one call does before answering: wait, then fail or answer. */
export interface ScriptedCall {
  delayMs?: number;
  fail?: Error;
}

const FRAME_MS = 20;

/**
 * 16 kHz PCM of `durationMs`: loud where a word is spoken, silent elsewhere; sample 0 of every 20 ms
 * frame holds the frame's index, so any window cut from it knows where it starts.
 */
export function timelineAudio(words: readonly PlacedWord[], durationMs: number, sampleRate = 16000): Int16Array {
  const frameSamples = (sampleRate * FRAME_MS) / 1000;
  const audio = new Int16Array(Math.round((durationMs * sampleRate) / 1000));
  for (const w of words) {
    for (let i = Math.floor((w.startMs * sampleRate) / 1000); i < Math.min(audio.length, (w.endMs * sampleRate) / 1000); i++) audio[i] = Math.round(8000 * Math.sin(i / 3));
  }
  for (let f = 0; f * frameSamples < audio.length; f++) audio[f * frameSamples] = f % 32768;
  return audio;
}

export class FakeTranscriber implements Transcriber {
  readonly calls: TranscriptionRequest[] = [];
  private readonly words: readonly PlacedWord[];
  private readonly script: ScriptedCall[];
  private readonly defaultDelayMs: number;

  /** `script` is consumed one entry per call; calls past its end answer after `defaultDelayMs`. */
  constructor(words: readonly PlacedWord[], script: ScriptedCall[] = [], defaultDelayMs = 0) {
    this.words = words;
    this.script = [...script];
    this.defaultDelayMs = defaultDelayMs;
  }

  async transcribe(request: TranscriptionRequest): Promise<Transcription> {
    this.calls.push(request);
    const step = this.script.shift() ?? {};
    await new Promise((resolve) => setTimeout(resolve, step.delayMs ?? this.defaultDelayMs));
    if (step.fail) throw step.fail;
    return this.hear(request);
  }

  /** The words lying whole inside the window, timed from its start (what Whisper's word timestamps give). */
  private hear(request: TranscriptionRequest): Transcription {
    const frameSamples = (request.sampleRate * FRAME_MS) / 1000;
    const startMs = request.audio[0] * FRAME_MS;
    const endMs = startMs + (request.audio.length / frameSamples) * FRAME_MS;
    const heard = this.words.filter((w) => w.startMs >= startMs && w.endMs <= endMs);
    return {
      text: heard.map((w) => w.word).join(' '),
      words: heard.map((w) => ({ word: w.word, start: (w.startMs - startMs) / 1000, end: (w.endMs - startMs) / 1000 })),
      segments: heard.length ? [{ start: (heard[0].startMs - startMs) / 1000, end: (heard.at(-1)!.endMs - startMs) / 1000, text: heard.map((w) => w.word).join(' '), avgLogprob: -0.1, noSpeechProb: 0.01, compressionRatio: 1 }] : [],
    };
  }
}
