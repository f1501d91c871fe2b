import { createRequire } from 'node:module';
import { TrackFilter, type ConditionerOptions } from './conditioner.ts';

/** A voice-activity detector over fixed 10/20/30 ms frames of 16 kHz PCM16. Swappable. */
export interface VoiceActivityDetector {
  isSpeech(frame: Int16Array): boolean;
}

interface NativeVad {
  process(audio: Buffer): boolean;
}
const WebRtcVadNative = createRequire(import.meta.url)('webrtcvad').default as new (sampleRate: number, level: number) => NativeVad;

/** The native WebRTC VAD (`webrtcvad` package). Aggressiveness 0 (lenient) … 3 (strict). */
export class WebRtcVad implements VoiceActivityDetector {
  private readonly vad: NativeVad;

  constructor(sampleRate: number, aggressiveness: number) {
    this.vad = new WebRtcVadNative(sampleRate, aggressiveness);
  }

  isSpeech(frame: Int16Array): boolean {
    return this.vad.process(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength));
  }
}

/** A VAD that hears each frame through a track filter (hum notch); the audio kept is not changed. */
export class FilteredVad implements VoiceActivityDetector {
  private readonly inner: VoiceActivityDetector;
  private readonly filter: TrackFilter;

  constructor(inner: VoiceActivityDetector, options: ConditionerOptions) {
    this.inner = inner;
    this.filter = new TrackFilter(options);
  }

  isSpeech(frame: Int16Array): boolean {
    return this.inner.isSpeech(this.filter.filter(frame));
  }
}
