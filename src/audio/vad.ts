import loadFvad from '@echogarden/fvad-wasm';
import { TrackFilter, type ConditionerOptions } from './conditioner.ts';

/** A voice-activity detector over fixed 10/20/30 ms frames of 16 kHz PCM16. Swappable. */
export interface VoiceActivityDetector {
  isSpeech(frame: Int16Array): boolean;
}

const fvad = await loadFvad();
/** The longest frame the VAD takes: 30 ms at 48 kHz. */
const MAX_FRAME = 1440;
/** Where each frame is copied for the module (one thread per module: one buffer serves every instance). */
const frameAt = fvad._malloc(2 * MAX_FRAME);
const instances = new FinalizationRegistry<number>((instance) => fvad._fvad_free(instance));

/**
 * The WebRTC VAD (libfvad, compiled to WASM: `@echogarden/fvad-wasm`). Aggressiveness 0 (lenient) … 3
 * (strict). Its decisions are the native `webrtcvad` addon's, frame for frame; unlike that addon it can run
 * in worker threads (the addon keeps a static reference that corrupts memory once a second thread loads it).
 */
export class WebRtcVad implements VoiceActivityDetector {
  private readonly instance: number;

  constructor(sampleRate: number, aggressiveness: number) {
    this.instance = fvad._fvad_new();
    if (this.instance === 0 || fvad._fvad_set_mode(this.instance, aggressiveness) !== 0 || fvad._fvad_set_sample_rate(this.instance, sampleRate) !== 0) {
      throw new Error(`the WebRTC VAD takes aggressiveness 0-3 at 8, 16, 32 or 48 kHz (given ${aggressiveness} at ${sampleRate} Hz)`);
    }
    instances.register(this, this.instance);
  }

  isSpeech(frame: Int16Array): boolean {
    if (frame.length > MAX_FRAME) throw new Error(`the WebRTC VAD takes 10, 20 or 30 ms frames (given ${frame.length} samples)`);
    fvad.HEAP16.set(frame, frameAt >> 1);
    const decision = fvad._fvad_process(this.instance, frameAt, frame.length);
    if (decision < 0) throw new Error(`the WebRTC VAD takes 10, 20 or 30 ms frames (given ${frame.length} samples)`);
    return decision === 1;
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

/** How each track's VAD is made (plain data: a worker thread makes its tracks' VADs from it too). */
export interface VadSettings {
  sampleRate: number;
  /** 0 (lenient) … 3 (strict). */
  aggressiveness: number;
  /** The VAD hears the track through the conditioner's hum notch (the audio kept is not changed). */
  hearing?: ConditionerOptions;
}

/** A track's VAD as the settings say. */
export function trackVad({ sampleRate, aggressiveness, hearing }: VadSettings): VoiceActivityDetector {
  const vad = new WebRtcVad(sampleRate, aggressiveness);
  return hearing ? new FilteredVad(vad, hearing) : vad;
}
