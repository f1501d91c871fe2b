/**
 * The live pipeline of one producer connection, in the order audio flows through it:
 * audio units → Opus decoder (16 kHz) → framer (20 ms) → VAD → segmenter → STT → captions (decoder,
 * framer and VAD in a worker thread when the track has a front end: the track's timeline is kept here).
 * It owns no socket and no demuxer: the ingest adapter demuxes its transport (WebSocket frames, RTP) into
 * audio units and pushes them in; a TrackListener receives what comes out.
 *
 * What it sends to STT, and when:
 *  - partials cover only the unconfirmed tail of the utterance (from `partialContextMs` before its last
 *    stable word), with the stable words as the prompt, and go only while the track's partial budget
 *    has credit: the audio sent stays a bounded multiple of the audio received;
 *  - a speculative final goes after a short silence; the final the endpointing confirms takes its
 *    transcript (no second call), and it is published at once when it says what the last partial said;
 *    speech before the confirmation discards it (counted as paid for nothing).
 */
import { CloseCode, type Word } from '../../client-sdk/src/protocol.ts';
import { OpusDecoder, OpusTimeline, PIPELINE_SAMPLE_RATE } from '../audio/opus-decoder.ts';
import type { TrackFrontEnd } from '../audio/dsp-thread.ts';
import { RealTimeGuard, type RealTimeLimits } from '../audio/real-time-guard.ts';
import type { VoiceActivityDetector } from '../audio/vad.ts';
import type { AudioUnit } from '../demux/packet-source.ts';
import { IngestError } from '../errors.ts';
import type { AudioWindow, SegmenterOptions } from '../segmenter/segmenter.ts';
import type { StreamDenoiser } from '../audio/noise-suppressor.ts';
import { VoiceWindows } from '../segmenter/voice-windows.ts';
import type { OneAttempt, TranscribedWindow, WindowTranscriber } from '../stt/window-transcriber.ts';
import type { KnownSpeaker, RecognizerRefused } from '../stt/transcriber.ts';
import { PartialBudget, type PartialBudgetOptions, type SttAudioKind, type SttUsage } from '../stt/stt-cost.ts';
import { joinWords, normalizeText } from '../transcript/words.ts';
import { correctTerms } from '../stt/clinical-prompt.ts';
import type { TrackPrompts } from '../stt/clinical-vocabulary.ts';
import { TrackCaptions } from '../transcript/track-captions.ts';
import { adoptLabels, type LiveDiarizer, type SpeakerTurn, type VoicePrinter } from '../diarizer/diarizer.ts';
import type { Metrics } from '../metrics.ts';
import type { TailSink } from './track-tail.ts';

/** After this many undecodable packets in a row the stream is not Opus: the connection is closed. */
const MAX_CONSECUTIVE_CORRUPT = 50;
/** How often the track's position is reported for persistence (ms of audio). */
const PROGRESS_EVERY_MS = 5000;
/** Silence a resumed connection's gap is filled with, 20 ms at a time, and a tail's stand-in for audio decoded elsewhere (shared: never written). */
const SILENCE = new Int16Array(PIPELINE_SAMPLE_RATE / 5);
const SILENT_FRAME = SILENCE.subarray(0, PIPELINE_SAMPLE_RATE / 50);

export interface TrackListener {
  /** `turns`: on a diarized track, who spoke when in the partial's window (track time). */
  partial(utteranceId: string, stable: readonly Word[], unstable: Word[], startMs: number, turns?: readonly SpeakerTurn[]): void;
  /** A final window goes to STT. */
  queued(utteranceId: string, window: { startMs: number; endMs: number }): void;
  /** Publishes a final (`turns`: on a diarized track, who spoke when in its window); the next final of the track waits until this resolves. */
  final(utteranceId: string, words: Word[], window: { startMs: number; endMs: number }, timing: FinalTiming, turns?: readonly SpeakerTurn[]): Promise<void>;
  sttFailed(error: Error, utteranceId: string): void;
  /** A partial met the recognizer's refusal (it is not retried: the finals wait, and say so if they must). */
  refused(error: RecognizerRefused): void;
  /** Every few seconds of audio: how far the track's stored finals reach (`durableMs`), to persist: a gateway taking the track over starts there. */
  progress(durableMs: number): void;
  sttRecovered(): void;
  /** The stream cannot be read in its declared format. */
  failed(error: IngestError): void;
  /** The gateway shut down before this final window was transcribed. */
  abandoned(utteranceId: string, window: { startMs: number; endMs: number }, error: Error): void;
}

export interface FinalTiming {
  /** performance.now() when the last speech audio of the window arrived (or the cut, for max-length). */
  speechEndAt: number;
  /** performance.now() when the audio that closed the window arrived. */
  closedAt: number;
  sttMs: number;
}

/** Receives the track's audio for the recording archive: Opus packets as received, or PCM to encode. */
export interface ArchiveSink {
  packet(packet: Buffer): void;
  pcm(samples: Int16Array): void;
  /** A gap in the track (a resumed producer's time away): the recording keeps the track's timeline. */
  silence(ms: number): void;
}

export interface TrackPipelineOptions {
  /** Track time of this connection's first sample (a reconnecting producer continues the timeline). */
  offsetMs: number;
  /** Distinguishes utterance ids across reconnections of the same track. */
  epoch: number;
  trackId: string;
  language?: string;
  /** What its STT calls are prompted with, and its finals corrected toward. */
  prompts: TrackPrompts;
  segmenter: Partial<SegmenterOptions>;
  /** The track's VAD, unless it has a front end. */
  vad?: VoiceActivityDetector;
  /** Noise suppression the VAD and the windows hear (`AUDIO_NOISE_SUPPRESSION`); the recording keeps the audio as received. */
  denoiser?: StreamDenoiser;
  /** Decoding, framing and the VAD in a worker thread (`vad` and `denoiser` then unused). */
  frontEnd?: TrackFrontEnd;
  transcriber: WindowTranscriber;
  listener: TrackListener;
  metrics: Metrics;
  archive?: ArchiveSink;
  /** Where the audio past the stored finals is kept for another gateway (a fleet's producers that cannot resend). */
  tail?: TailSink;
  realTime: RealTimeLimits;
  partialBudget: PartialBudgetOptions;
  /** Audio before the last stable word a partial window keeps, for the recognizer's context. */
  partialContextMs: number;
  /** The session's count of audio received and sent to STT. */
  usage: SttUsage;
  /** A track that hears several people: told every frame, asked who spoke in each window. */
  diarizer?: LiveDiarizer;
  /** A doctor's own track: their voice print is learned from its speech frames. */
  voice?: VoicePrinter;
  /** Voices a diarizing recognizer is told with each final window of a diarized track (the doctor's clip). */
  knownSpeakers?: readonly KnownSpeaker[];
}

export interface PipelineRequest {
  trackId: string;
  language: string | undefined;
  offsetMs: number;
  epoch: number;
  listener: TrackListener;
  archive: ArchiveSink | undefined;
  tail: TailSink | undefined;
  usage: SttUsage;
  vocabulary: readonly string[];
  diarizer: LiveDiarizer | undefined;
  voice: VoicePrinter | undefined;
  knownSpeakers: readonly KnownSpeaker[] | undefined;
}

/** A speculative final in flight: its window, its answer, and what became of it. */
interface Speculation {
  window: AudioWindow;
  result: Promise<OneAttempt>;
  /** Its transcript, once answered (not when skipped, refused or failed). */
  answer?: TranscribedWindow;
  /** Set once: confirmed by the final of its utterance, or discarded (speech resumed). */
  fate?: 'confirmed' | 'discarded';
}

/** The end of a sentence as Whisper writes it (Latin, Persian and Arabic punctuation). */
const SENTENCE_END = /[.?!؟۔…]["'»”)]*$/u;

/** The last audio before a pause the partial sent with a speculative final covers at most, ms (≥ 2 s of context for its last words). */
const PAUSE_CHECK_MS = 3000;

/** Words the partial at a pause must have heard for its agreement with the speculative final to count. */
const MIN_ENDING_WORDS = 2;

/** Words of the previous finals a final's prompt carries. */
const PREVIOUS_WORDS = 40;

/** `samples` of silence (a view of the shared silence when it is long enough). */
function silence(samples: number): Int16Array {
  return samples <= SILENCE.length ? SILENCE.subarray(0, samples) : new Int16Array(samples);
}

/** Pipelines made in this process (their windows' stream keys). */
let pipelines = 0;

const windowMs = (window: Pick<AudioWindow, 'startMs' | 'endMs'>) => window.endMs - window.startMs;

/** Builds a track's pipeline with the gateway's shared STT queue, VAD settings and segmenter options. */
export type PipelineFactory = (request: PipelineRequest) => TrackPipeline;

/** An utterance's id across the session: track, connection (epoch) and the segmenter's utterance number. */
export function utteranceId(trackId: string, epoch: number, utterance: number): string {
  return `${trackId}.${epoch}.${utterance}`;
}

export class TrackPipeline {
  private readonly options: TrackPipelineOptions;
  /** Decodes here when the track has no front end; else the timeline alone is kept here. */
  private readonly decoder: OpusDecoder | undefined;
  private readonly timeline: OpusTimeline;
  private readonly windows: VoiceWindows;
  private readonly captions = new TrackCaptions();
  private readonly budget: PartialBudget;
  private speculation: Speculation | undefined;
  /** The last words of the track's published finals (filtered and corrected): the next final's prompt continues them. */
  private previousText = '';
  private finalChain: Promise<void> = Promise.resolve();
  /** Finals sent and not yet published. */
  private finalsPending = 0;
  /** Local time up to which every final is stored, at a boundary no word crosses (see `durableMs`). */
  private storedUntilMs = 0;
  private partialInFlight = false;
  /** The words the partial at the latest pause heard (its first, maybe cut, left out), and the speculative window it checks. */
  private endingHeard: { windowId: number; words: string[] } | undefined;
  /** The utterance an earlier partial's speech check found speech in: its later partials are not checked again. */
  private speechConfirmedUtterance = 0;
  /** The last utterance a partial was published for (the first of each is timed). */
  private partialShownUtterance = 0;
  private lastReceivedAt = 0;
  private lastSpeechAt = 0;
  private readonly speculativeOn: boolean;
  /** What makes this connection's windows' `stream` keys unique in the process. */
  private readonly streamPrefix = `track${++pipelines}`;
  private lastProgressMs = 0;
  private failed = false;
  /** Samples a resumed connection sends again that the track already has: dropped as they come. */
  private skipSamples = 0;
  /** A live source resumed: the time it was away is filled with silence when its audio arrives again. */
  private silenceUntilNextAudio = false;
  private ended: Promise<void> | undefined;
  private closed: Promise<void> | undefined;
  private readonly realTime: RealTimeGuard;

  constructor(options: TrackPipelineOptions) {
    this.options = options;
    this.decoder = options.frontEnd ? undefined : new OpusDecoder();
    this.timeline = this.decoder ?? new OpusTimeline();
    this.windows = new VoiceWindows(options.frontEnd ?? options.vad!, { ...options.segmenter, sampleRate: PIPELINE_SAMPLE_RATE }, {
      window: (window) => this.dispatch(window),
      speech: () => void (this.lastSpeechAt = this.lastReceivedAt),
      frame: options.diarizer
        ? (frame, isSpeech, features) => options.diarizer!.frame(frame, isSpeech, features)
        : options.voice
          ? (frame, isSpeech, features) => options.voice!.frame(frame, isSpeech, features)
          : undefined,
      error: (error) => this.failInternally(error),
    }, options.denoiser);
    options.diarizer?.continueAt(options.offsetMs);
    this.realTime = new RealTimeGuard(options.realTime);
    this.budget = new PartialBudget(options.partialBudget);
    this.speculativeOn = this.windows.segmenter.options.speculativeSilenceMs > 0;
  }

  /** Milliseconds of audio received on this connection (whole ms; with what the framer and a denoiser hold). */
  get receivedMs(): number {
    return Math.floor(this.windows.receivedMs);
  }

  /** Track time up to which the track's audio is in, to the sample (what a producer may forget). */
  get trackMs(): number {
    return this.options.offsetMs + this.windows.receivedMs;
  }

  /**
   * Track time up to which the track's finals are stored: audio before it never needs sending again,
   * even to another gateway if this one dies. It moves at the end of a stored utterance (or of a
   * max-length window cut in a pause), and through silence while nothing is pending; a producer keeps
   * its audio from here so that another gateway can transcribe the rest.
   */
  get durableMs(): number {
    const { preRollMs, minSpeechMs } = this.windows.segmenter.options;
    const idle = !this.windows.segmenter.speaking && this.finalsPending === 0;
    return this.options.offsetMs + (idle ? Math.max(this.storedUntilMs, this.windows.positionMs - preRollMs - minSpeechMs) : this.storedUntilMs);
  }

  get hasFailed(): boolean {
    return this.failed;
  }

  /**
   * A new connection continues the track with its first sample at track time `startMs` (undefined: right
   * where the audio is). Audio the track already has is skipped as it arrives again; a gap is filled with
   * silence, within what real time allows (refused beyond it, before anything changes).
   */
  resume(startMs: number | undefined, now = performance.now()): void {
    const position = this.trackMs;
    this.skipSamples = 0;
    if (startMs === undefined || startMs === position) return;
    if (startMs < position) {
      this.skipSamples = Math.round(((position - startMs) * PIPELINE_SAMPLE_RATE) / 1000);
      return;
    }
    const gapMs = startMs - position;
    if (!this.realTime.allows(this.receivedMs + gapMs, now)) {
      throw new IngestError(CloseCode.badParameters, `startMs ${startMs} is ${gapMs} ms past the track's audio (${position} ms), more than real time allows`);
    }
    this.guarded(() => this.fillSilence(gapMs));
  }

  /**
   * A real-time source that cannot resend (WebRTC) continues the track: the time between the last audio
   * and the first of the new connection, which is when the new connection is up, is filled with silence,
   * so the track stays aligned in time with the session's other tracks.
   */
  resumeLive(): void {
    this.skipSamples = 0;
    this.silenceUntilNextAudio = this.lastReceivedAt > 0;
  }

  /** One unit of the track's audio, from the adapter's demuxer. */
  push(unit: AudioUnit): void {
    if (this.failed || this.closed) return;
    const now = performance.now();
    if (this.silenceUntilNextAudio) {
      this.silenceUntilNextAudio = false;
      const awayMs = now - this.lastReceivedAt;
      this.guarded(() => this.fillSilence(this.realTime.allows(this.receivedMs + awayMs, now) ? awayMs : 0));
    }
    this.lastReceivedAt = now;
    this.guarded(() => this.consume(unit));
  }

  private fillSilence(ms: number): void {
    if (ms > 0) this.options.archive?.silence(ms);
    for (let filled = 0; filled < ms; filled += 20) this.windows.push(SILENT_FRAME.subarray(0, Math.round((Math.min(20, ms - filled) * PIPELINE_SAMPLE_RATE) / 1000)));
  }

  /**
   * Runs a stage of this track's processing (the adapter's demuxing too). A defect in it (a throw) ends
   * this track with an internal error; it never reaches the socket's or the decoder's event handler, and
   * so never the process.
   */
  guarded(stage: () => void): void {
    try {
      stage();
    } catch (error) {
      this.failInternally(error as Error);
    }
  }

  private failInternally(error: Error): void {
    this.fail(new IngestError(CloseCode.internalError, `the gateway failed while processing this track: ${error.message}`));
  }

  /**
   * Audio is missing after what was pushed (what a stopped gateway held is recovered up to its last tail
   * write): the utterance ends here, transcribed on its own, rather than a window spliced across the hole.
   */
  endUtterance(): void {
    if (!this.failed && !this.closed) this.guarded(() => void this.windows.flush().catch((error: Error) => this.failInternally(error)));
  }

  /** End of the stream's audio (the adapter has pushed what its demuxer held): the last windows are dispatched. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      if (this.failed) {
        this.windows.release();
      } else {
        this.lastReceivedAt = performance.now();
        await this.windows.close().catch((error: Error) => this.failInternally(error));
      }
    })();
    return this.closed;
  }

  /** End of the stream: closes it and resolves once every final has been published. */
  end(): Promise<void> {
    this.ended ??= (async () => {
      await this.close();
      await this.finalChain;
    })();
    return this.ended;
  }

  /** The stream cannot go on (unreadable in its declared format, or a defect): the listener is told once. */
  fail(error: IngestError): void {
    if (this.failed) return;
    this.failed = true;
    this.options.listener.failed(error);
  }

  private consume(unit: AudioUnit): void {
    if (this.failed) return;
    const frontEnd = this.options.frontEnd;
    // The unit's audio: decoded here, or (with a front end) only counted, `samples` long either way.
    let pcm: Int16Array | undefined;
    let samples: number;
    if (unit.kind === 'pcm') {
      pcm = unit.samples;
      samples = pcm.length;
    } else if (unit.kind === 'lost') {
      if (!this.realTime.allows(this.receivedMs + unit.count * this.timeline.packetMs, performance.now())) {
        this.fail(new IngestError(CloseCode.policyViolation, 'the stream runs faster than real time (sequence gaps or timestamps ahead of the clock)'));
        return;
      }
      this.options.metrics.lostPackets.inc(unit.count);
      pcm = this.decoder?.conceal(unit.count);
      samples = pcm?.length ?? this.timeline.lost(unit.count);
    } else {
      // Decoded even when skipped: the decoder's state then follows the packets it continues from.
      pcm = this.decoder?.decode(unit.packet);
      samples = pcm?.length ?? this.timeline.packet(unit.packet);
      if (this.timeline.consecutiveCorrupt > 0) {
        this.options.metrics.lostPackets.inc();
        if (this.timeline.consecutiveCorrupt >= MAX_CONSECUTIVE_CORRUPT) {
          this.fail(new IngestError(CloseCode.invalidPayload, `${MAX_CONSECUTIVE_CORRUPT} packets in a row are not Opus`));
          return;
        }
      }
    }
    const accepted = unit.kind === 'opus' && this.timeline.consecutiveCorrupt === 0;
    const skipped = Math.min(this.skipSamples, samples);
    this.skipSamples -= skipped;
    if (skipped === samples) {
      // Already received on the connection before: neither archived nor counted again.
      if (frontEnd && unit.kind !== 'pcm') this.toFrontEnd(frontEnd, unit, samples, skipped);
      return;
    }
    if (pcm && skipped > 0) pcm = pcm.subarray(skipped);
    const kept = samples - skipped;
    if (unit.kind === 'pcm') this.options.archive?.pcm(pcm!);
    // Only what the codec accepts is archived: a refused packet would corrupt the Ogg timeline.
    else if (accepted) this.options.archive?.packet(unit.packet);
    if (!this.realTime.allows(this.receivedMs + (kept * 1000) / PIPELINE_SAMPLE_RATE, performance.now())) {
      this.fail(new IngestError(CloseCode.policyViolation, 'the stream runs faster than real time beyond the allowed burst'));
      return;
    }
    this.options.metrics.audioSeconds.inc(kept / PIPELINE_SAMPLE_RATE);
    const receivedMs = (kept * 1000) / PIPELINE_SAMPLE_RATE;
    this.options.usage.receive(receivedMs);
    this.budget.earn(receivedMs);
    // The units as they came (a packet the codec refused, or concealment, as its PCM; as silence when decoded elsewhere).
    this.options.tail?.audio(this.trackMs, accepted || (unit.kind === 'pcm' && skipped === 0) ? unit : { kind: 'pcm', samples: pcm ?? silence(kept) }, this.durableMs);
    if (frontEnd && unit.kind !== 'pcm') this.toFrontEnd(frontEnd, unit, samples, skipped);
    else this.windows.push(pcm!);
    if (this.receivedMs - this.lastProgressMs >= PROGRESS_EVERY_MS) {
      this.lastProgressMs = this.receivedMs;
      this.options.listener.progress(this.durableMs);
    }
  }

  private toFrontEnd(frontEnd: TrackFrontEnd, unit: AudioUnit, samples: number, skipped: number): void {
    if (unit.kind === 'opus') frontEnd.opus(unit.packet, samples, skipped);
    else if (unit.kind === 'lost') frontEnd.conceal(unit.count, samples, skipped);
  }

  /** The speech check's stream key of this connection's windows that start at `startMs`. */
  private streamAt(startMs: number): string {
    return `${this.streamPrefix}@${startMs}`;
  }

  private utteranceId(window: AudioWindow): string {
    return utteranceId(this.options.trackId, this.options.epoch, window.utteranceId);
  }

  private shift(words: readonly Word[]): Word[] {
    const offset = this.options.offsetMs;
    return words.map((w) => ({ ...w, startMs: w.startMs + offset, endMs: w.endMs + offset }));
  }

  private dispatch(window: AudioWindow): void {
    this.options.metrics.windows.inc({ kind: window.kind });
    window.stream = this.streamAt(window.startMs);
    if (window.kind === 'partial') {
      this.options.transcriber.checkAhead(window);
      this.sendPartial(window);
    } else if (window.kind === 'speculative') this.sendSpeculative(window);
    else this.sendFinal(window);
  }

  /** Counts what the recognizer answered for a window (the session's cost factor). */
  private record(kind: SttAudioKind, window: Pick<AudioWindow, 'startMs' | 'endMs'>, result: TranscribedWindow | undefined): void {
    if (result && !result.skipped) {
      this.options.usage.record(kind, windowMs(window));
      this.options.usage.dropped += result.dropped ?? 0;
    }
  }

  /**
   * The utterance's unconfirmed tail, from `partialContextMs` before its last stable word, with the
   * stable words as the prompt; sent only when the partial budget has credit for it. `atPause`: sent
   * once the speculative final has answered, for how the utterance ends (the speculative answer is
   * checked against it): its last `PAUSE_CHECK_MS` are enough, whatever the tail's length (then not
   * shown as captions).
   */
  private sendPartial(full: AudioWindow, atPause = false): void {
    const { transcriber, listener, metrics, language, prompts, offsetMs, partialContextMs } = this.options;
    if (this.partialInFlight) return;
    const stable = this.captions.stableOf(full.utteranceId);
    const { frameMs } = this.windows.segmenter.options;
    const toFrame = (ms: number) => Math.floor(ms / frameMs) * frameMs;
    const tailFrom = stable.length > 0 ? Math.max(full.startMs, toFrame(stable.at(-1)!.endMs - partialContextMs)) : full.startMs;
    const from = atPause ? Math.max(tailFrom, toFrame(full.endMs - PAUSE_CHECK_MS)) : tailFrom;
    const endingOnly = from > tailFrom;
    const window = from === full.startMs ? full : { ...tailOf(full, from), stream: this.streamAt(from) };
    // The partial at a pause is worth most: it goes like the speculative final (the credit may go into
    // debt by its few seconds); those during speech leave credit for it when there is speculation.
    if (atPause) {
      if (!this.budget.allowsSpeculation) return;
      this.budget.charge(windowMs(window));
    } else if (!this.budget.take(windowMs(window), this.speculativeOn ? Math.min(windowMs(window), PAUSE_CHECK_MS) : 0)) {
      return;
    }
    this.partialInFlight = true;
    const turns = endingOnly ? undefined : this.options.diarizer?.window(full.startMs + offsetMs, full.endMs + offsetMs, false);
    const tailPrompt = prompts.builder.build(joinWords(stable));
    void transcriber.partial(window, language, tailPrompt, this.speechConfirmedUtterance === window.utteranceId).then((result) => {
      this.partialInFlight = false;
      if (!result || 'refused' in result) {
        metrics.sttFailures.inc({ kind: 'partial' });
        if (result) listener.refused(result.refused);
        return;
      }
      this.record('partial', window, result);
      if (result.skipped) return;
      if (result.speechMs !== undefined) this.speechConfirmedUtterance = window.utteranceId;
      metrics.sttSeconds.observe({ kind: 'partial' }, result.sttMs / 1000);
      if (atPause) {
        // Its first word may be cut by the window's start: only the words after it are the ending heard.
        const heard = normalizeText(joinWords(result.words));
        this.endingHeard = { windowId: full.id, words: window.startMs > full.startMs ? heard.slice(1) : heard };
        this.commitIfAgreed();
      }
      if (endingOnly) return;
      const captions = this.captions.partial(window, result.words, result.timed);
      if (!captions) return;
      listener.partial(this.utteranceId(window), this.shift(captions.stable), this.shift(captions.unstable), full.startMs + offsetMs, turns);
      if (this.partialShownUtterance !== full.utteranceId && captions.stable.length + captions.unstable.length > 0) {
        this.partialShownUtterance = full.utteranceId;
        const speechStartMs = full.speech[0]?.[0] ?? full.startMs;
        metrics.firstPartial.observe(Math.max(0, performance.now() - this.lastReceivedAt + this.windows.positionMs - speechStartMs) / 1000);
      }
    });
  }

  /** A speculative final: sent at once; the final that confirms it takes its answer (no second call). */
  private sendSpeculative(window: AudioWindow): void {
    const { transcriber, language, prompts } = this.options;
    this.discardSpeculation();
    // In debt there is no speculation: the final then goes when the endpointing confirms it.
    if (!this.budget.allowsSpeculation) return;
    const sentAt = performance.now();
    const { silenceMs, speculativeSilenceMs } = this.windows.segmenter.options;
    const confirmedAtMs = this.windows.positionMs + silenceMs - speculativeSilenceMs;
    const speculation: Speculation = { window, result: transcriber.speculative(this.withKnownSpeakers(window), language, prompts.builder.build(this.previousText)) };
    this.speculation = speculation;
    void speculation.result.then((result) => {
      if (!result || 'refused' in result || result.skipped || speculation.fate) return;
      speculation.answer = result;
      // Its ending is checked by a second call only where that can help: the answer ends a sentence,
      // and the endpointing is further off than this call took (a slow recognizer's check would come
      // after the confirmation, paid for nothing).
      if (SENTENCE_END.test(result.words.at(-1)?.word ?? '') && confirmedAtMs - this.windows.positionMs > performance.now() - sentAt) this.sendPartial(window, true);
    });
  }

  /**
   * Closes the open utterance now (its final is published without waiting for the rest of the
   * endpointing silence) when the speculative answer ends a sentence and ends with the words the partial
   * at the pause heard: two calls heard the utterance end the same way. A pause after a comma, or an
   * ending the two calls heard differently, waits: closing there could cut a sentence in two windows.
   */
  private commitIfAgreed(): void {
    const speculation = this.speculation;
    const answer = speculation?.answer;
    const ending = this.endingHeard;
    // The ending heard at this pause, not at an earlier one of the utterance that speech went on from.
    if (!speculation || speculation.fate || !answer || ending?.windowId !== speculation.window.id) return;
    if (!SENTENCE_END.test(answer.words.at(-1)?.word ?? '') || ending.words.length < MIN_ENDING_WORDS) return;
    const said = normalizeText(joinWords(answer.words));
    if (said.length < ending.words.length || said.slice(said.length - ending.words.length).join(' ') !== ending.words.join(' ')) return;
    this.guarded(() => this.windows.commitSpeculation(speculation.window.id));
  }

  /** Speech resumed (or the utterance was cut): the speculative answer is not used; it was paid for. */
  private discardSpeculation(): void {
    const speculation = this.speculation;
    if (!speculation || speculation.fate) return;
    speculation.fate = 'discarded';
    this.budget.charge(windowMs(speculation.window));
    void speculation.result.then((result) => this.record('speculative', speculation.window, result && 'refused' in result ? undefined : result));
  }

  private sendFinal(window: AudioWindow): void {
    const { listener, metrics, offsetMs } = this.options;
    const closedAt = this.lastReceivedAt;
    const speechEndAt = window.closedBy === 'max-length' ? closedAt : this.lastSpeechAt;
    const utteranceId = this.utteranceId(window);
    const span = { startMs: window.startMs + offsetMs, endMs: window.endMs + offsetMs };
    listener.queued(utteranceId, span);
    // Who spoke when, decided as the window closes (in window order: the speakers' models learn from it);
    // a diarizing recognizer's segments, when it gives them, take their place (labelled as these speakers).
    const localTurns = this.options.diarizer?.window(span.startMs, span.endMs, true);
    const callbacks = {
      onFailure: (error: Error) => {
        metrics.sttFailures.inc({ kind: 'final' });
        listener.sttFailed(error, utteranceId);
      },
      onRecovered: () => listener.sttRecovered(),
    };
    const speculation = this.speculation;
    let transcribed: Promise<TranscribedWindow>;
    if (speculation && !speculation.fate && window.confirms === speculation.window.id) {
      speculation.fate = 'confirmed';
      // Its answer stands for this window (which adds only silence); if it failed, the final goes itself.
      transcribed = speculation.result.then((result) => {
        if (result && 'refused' in result) return this.transcribeFinal(window, callbacks, result.refused);
        this.record('final', speculation.window, result);
        return result ?? this.transcribeFinal(window, callbacks);
      });
    } else {
      this.discardSpeculation();
      transcribed = this.transcribeFinal(window, callbacks);
    }
    this.speculation = undefined;
    // Handled in the chain below; this only stops Node from calling it unhandled while it waits its turn.
    transcribed.catch(() => undefined);
    this.finalsPending++;
    // A boundary no word crosses: the utterance ended in silence, or was cut in a pause (no overlap).
    const cleanEnd = window.closedBy !== 'max-length' || window.keepUntilMs === undefined;
    // Transcribed concurrently, published in window order: the seam merger needs the previous final.
    this.finalChain = this.finalChain.then(async () => {
      try {
        await this.publishFinal(window, transcribed, utteranceId, span, localTurns, speechEndAt, closedAt);
        if (cleanEnd) this.storedUntilMs = Math.max(this.storedUntilMs, window.endMs);
      } finally {
        this.finalsPending--;
      }
    });
  }

  private async publishFinal(
    window: AudioWindow,
    transcribed: Promise<TranscribedWindow>,
    utteranceId: string,
    span: { startMs: number; endMs: number },
    localTurns: ReturnType<NonNullable<TrackPipelineOptions['diarizer']>['window']> | undefined,
    speechEndAt: number,
    closedAt: number,
  ): Promise<void> {
    const { listener, metrics, offsetMs } = this.options;
    let result;
    try {
      result = await transcribed;
    } catch (error) {
      listener.abandoned(utteranceId, span, error as Error);
      return;
    }
    if (!result.skipped) metrics.sttSeconds.observe({ kind: 'final' }, result.sttMs / 1000);
    // Corrected after the merge: the seams compare what the recognizer said, and stable partial words
    // (which a final keeps) may hold the misheard term too.
    const words = correctTerms(this.captions.final(window, result.words, result.timed), this.options.prompts.lexicon);
    if (words.length > 0) this.previousText = [...this.previousText.split(' '), ...words.map((w) => w.word)].filter(Boolean).slice(-PREVIOUS_WORDS).join(' ');
    const turns = localTurns && result.speakers ? adoptLabels(result.speakers.map((t) => ({ ...t, startMs: t.startMs + offsetMs, endMs: t.endMs + offsetMs })), localTurns) : localTurns;
    await listener.final(utteranceId, this.shift(words), span, { speechEndAt, closedAt, sttMs: result.sttMs }, turns);
  }

  /** A final or speculative window of a diarized track goes with the voices a diarizing recognizer should name. */
  private withKnownSpeakers(window: AudioWindow): AudioWindow & { knownSpeakers?: readonly KnownSpeaker[] } {
    const known = this.options.diarizer ? this.options.knownSpeakers : undefined;
    return known && known.length > 0 ? { ...window, knownSpeakers: known } : window;
  }

  private async transcribeFinal(window: AudioWindow, callbacks: { onFailure(error: Error): void; onRecovered(): void }, refused?: RecognizerRefused): Promise<TranscribedWindow> {
    const result = await this.options.transcriber.final(this.withKnownSpeakers(window), callbacks, this.options.language, this.options.prompts.builder.build(this.previousText), refused);
    this.record('final', window, result);
    return result;
  }
}

/** The part of a window from `fromMs` on (a partial's unconfirmed tail). */
function tailOf(window: AudioWindow, fromMs: number): AudioWindow {
  const samplesPerMs = PIPELINE_SAMPLE_RATE / 1000;
  return {
    ...window,
    startMs: fromMs,
    audio: window.audio.subarray((fromMs - window.startMs) * samplesPerMs),
    speech: window.speech.filter(([, b]) => b > fromMs).map(([a, b]): [number, number] => [Math.max(a, fromMs), b]),
  };
}
