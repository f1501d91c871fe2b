import { createRequire } from 'node:module';

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
