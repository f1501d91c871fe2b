/**
 * Sends windows to the recognizer through one shared queue: a concurrency limit for the whole gateway,
 * finals ahead of partials. A partial is worth one try (the next one supersedes it). A final is never
 * dropped for an outage: when the client's own retries are exhausted it waits and tries again, with
 * growing pauses, until it succeeds or the gateway shuts down, reporting each failure so viewers see
 * that STT is down. A refusal (`RecognizerRefused`: wrong key, model, format) is not an outage: no
 * window is sent while it lasts; the recognizer is checked at once and then every `recheckMs` (one
 * probe, not a call per window), and the waiting finals go once it takes requests. A window refused
 * again after a passing check is refused for itself (its audio stays in the recording) and given up.
 *
 * Before a window is sent, a second speech check (a neural VAD over the whole window) may find that it
 * holds too little speech: a cough or a door that opened the window. Such a window is not sent (no cost,
 * nothing for Whisper to invent on) and yields no words. What comes back is filtered: segments scored
 * as silence or loops, words outside the checked speech, n-gram loops, stock phrases over weak speech.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { openBytes, sealBytes } from '../archive/data-keys.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Word } from '../../client-sdk/src/protocol.ts';
import type { AudioWindow } from '../segmenter/segmenter.ts';
import type { WindowProcessor } from './window-queue.ts';
import { confirmedRuns, speechStretches, stretchesMs } from '../audio/speech-stretches.ts';
import type { WindowSpeechDetector } from '../audio/silero-vad.ts';
import type { Conditioning } from '../audio/conditioner.ts';
import type { WindowConditioner } from '../audio/conditioner-thread.ts';
import { filterHallucinations, type DropReason, type HallucinationFilterOptions } from './hallucination-filter.ts';
import { recognizedWords, type HallucinationThresholds, type LabelledTurn } from './recognized-words.ts';
import { RecognizerRefused, type KnownSpeaker, type Transcriber } from './transcriber.ts';

export interface WindowTranscriberOptions {
  concurrency: number;
  sampleRate: number;
  thresholds: HallucinationThresholds;
  /** First pause after a final's attempt fails; doubles up to `maxRetryDelayMs`. Default 1000. */
  retryDelayMs?: number;
  /** Default 30000. */
  maxRetryDelayMs?: number;
  /**
   * Audio of waiting finals held in memory at most, seconds; past it a failing window's audio is spilled
   * to `spillDir`, encrypted. Default: unbounded (no spill directory).
   */
  backlogMemoryS?: number;
  spillDir?: string;
  /** Told whenever the backlog changes (metrics). */
  onBacklog?(backlog: SttBacklog): void;
  /** Between checks while the recognizer refuses requests. Default 60000. */
  recheckMs?: number;
  /** Told when the recognizer starts refusing requests (with its refusal) and when it takes them again. */
  onRefusal?(refusal: RecognizerRefused | undefined): void;
  /** The second speech check; undefined: every window is sent. */
  speechCheck?: SpeechCheckOptions;
  /** Takes invented words out of each answer; undefined: only the segment thresholds apply. */
  filter?: HallucinationFilterOptions;
  /** A window the speech check kept from the recognizer. */
  onSkipped?(kind: WindowKindSent): void;
  /** Audio the recognizer answered, seconds (what it bills). */
  onSent?(kind: WindowKindSent, audioSeconds: number): void;
  /** Words taken out of an answer, by reason. */
  onDropped?(reason: DropReason, words: number): void;
  /** Conditions the audio of each window sent (not what the speech check hears); undefined: sent as received. */
  conditioner?: WindowConditioner;
  /** What conditioning did to a window sent. */
  onConditioned?(conditioning: Conditioning): void;
}

export interface SpeechCheckOptions {
  detector: WindowSpeechDetector;
  /** A window with less checked speech than this is not sent. Default 200. */
  minSpeechMs: number;
}

export type WindowKindSent = 'partial' | 'final' | 'speculative' | 'upload';

/** What the speech check found in a window: its stretches of speech in track time. */
interface SpeechFound {
  /** The speech check's stretches (track time). */
  speech: [number, number][];
  speechMs: number;
  /** Where words count as heard: those stretches widened into the segmenting VAD's runs Silero agrees with. */
  heard: [number, number][];
}

/**
 * Where words count as heard (`confirmedRuns`): the segmenting VAD's runs this close are one (Silero's
 * own hysteresis ends speech only after 100 ms below its threshold), and the checked speech is widened
 * into them by at most `widenMs`, the onset Silero is late on. An Arabic word after a 7 s pause, under
 * the corpus's hum, lay 380 ms before Silero's stretch (its centre 130 ms past the filter's pad): widened
 * by 120 ms it was still dropped, by 160 or 200 kept; a quiet one gave Silero a single 32 ms chunk above
 * 0.5. At 200 ms a word invented half a second before speech, in a run the VAD heard as one, still goes.
 */
const HEARD = { joinMs: 100, widenMs: 200 };

export interface SttBacklog {
  windows: number;
  audioSeconds: number;
  /** Of `windows`, those whose audio waits on disk. */
  spilled: number;
}

/**
 * Final windows' audio spilled during an STT outage: sealed under a key that lives only in this process
 * (the windows themselves die with it), 0600 files in a 0700 directory emptied at start.
 */
class BacklogSpill {
  private readonly dir: string;
  private readonly key = randomBytes(32);
  private ready: Promise<unknown> | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  async put(audio: Int16Array): Promise<string> {
    this.ready ??= rm(this.dir, { recursive: true, force: true }).then(() => mkdir(this.dir, { recursive: true, mode: 0o700 }));
    await this.ready;
    const name = randomUUID();
    await writeFile(join(this.dir, name), sealBytes(this.key, new Uint8Array(audio.buffer, audio.byteOffset, audio.byteLength), name), { mode: 0o600 });
    return name;
  }

  async take(name: string): Promise<Int16Array> {
    const bytes = openBytes(this.key, await readFile(join(this.dir, name)), name);
    return new Int16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  }

  async remove(name: string): Promise<void> {
    await rm(join(this.dir, name), { force: true });
  }
}

/** A recognizer that can be asked, cheaply, whether it takes requests again (throws RecognizerRefused if not). */
export interface RecheckableTranscriber extends Transcriber {
  recheck?(): Promise<void>;
}

export interface FinalCallbacks {
  /** A try failed (after the client's own retries); the window is kept and tried again. */
  onFailure(error: Error, attempt: number): void;
  /** A try succeeded after earlier failures. */
  onRecovered(): void;
}

export interface TranscribedWindow {
  words: Word[];
  /** The words' times are the recognizer's (not estimates). */
  timed: boolean;
  /** Time spent in the recognizer call itself (not in the queue), milliseconds; 0 when not sent. */
  sttMs: number;
  /** The speech check found too little speech: the window was not sent. */
  skipped?: boolean;
  /** Speech the check found in the window, ms (undefined: not checked). */
  speechMs?: number;
  /** A diarizing recognizer's speaker segments of the window (track time). */
  speakers?: LabelledTurn[];
  /** Words the recognizer answered that were dropped as invented (silence, stock phrases, loops). */
  dropped?: number;
}

/** The answer to a single attempt, the refusal it met, or nothing (it failed or was not sent). */
export type OneAttempt = TranscribedWindow | { refused: RecognizerRefused } | undefined;

/** What a window skipped by the speech check yields. */
const skipped = (): TranscribedWindow => ({ words: [], timed: true, sttMs: 0, skipped: true, speechMs: 0 });

/** A window that reached the front of the queue while the recognizer refused requests: not sent. */
const NOT_SENT = Symbol('not sent');

/** Live windows never wait behind an uploaded recording's windows. */
const PRIORITY = { final: 1, partial: 0, upload: -1 };

/** A window's audio as sent; `knownSpeakers`: voices a diarizing recognizer should label by name. */
type WindowAudio = Pick<AudioWindow, 'audio' | 'startMs' | 'endMs'> & Partial<Pick<AudioWindow, 'speech' | 'stream'>> & { knownSpeakers?: readonly KnownSpeaker[] };

export class WindowTranscriber {
  private readonly queue: PQueue;
  private readonly transcriber: RecheckableTranscriber;
  private readonly options: WindowTranscriberOptions & Required<Pick<WindowTranscriberOptions, 'retryDelayMs' | 'maxRetryDelayMs' | 'recheckMs'>>;
  private readonly shutdown = new AbortController();
  private readonly spill: BacklogSpill | undefined;
  private readonly backlog: SttBacklog = { windows: 0, audioSeconds: 0, spilled: 0 };
  /** Samples of waiting finals held in memory. */
  private heldSamples = 0;
  /** Set while the recognizer refuses requests; `accepted` resolves when it takes them again. */
  private refusal: { error: RecognizerRefused; accepted: Promise<void> } | undefined;
  /** Rejects when the gateway shuts down (what waits for the recognizer stops waiting). */
  private readonly closing: Promise<never>;

  constructor(transcriber: RecheckableTranscriber, options: WindowTranscriberOptions) {
    this.transcriber = transcriber;
    this.options = { retryDelayMs: 1000, maxRetryDelayMs: 30000, recheckMs: 60000, ...options };
    this.queue = new PQueue({ concurrency: options.concurrency });
    this.spill = options.spillDir ? new BacklogSpill(options.spillDir) : undefined;
    this.closing = new Promise<never>((_, reject) => this.shutdown.signal.addEventListener('abort', () => reject(new Error('the gateway is shutting down')), { once: true }));
    this.closing.catch(() => undefined);
  }

  /** Final windows waiting for STT now (for status and metrics). */
  get sttBacklog(): SttBacklog {
    return { ...this.backlog };
  }

  get pending(): number {
    return this.queue.size + this.queue.pending;
  }

  /** The recognizer's refusal while it refuses requests. */
  get refused(): RecognizerRefused | undefined {
    return this.refusal?.error;
  }

  /**
   * One attempt; undefined when it fails or the recognizer refuses requests (a later partial or the final
   * will cover it), or the refusal it met (the first refusal of a run is news for the track's viewers).
   * `speechConfirmed`: an earlier window of the utterance passed the speech check, so this one (which
   * contains it) is not checked again; the check of a growing window would cost more each time.
   */
  partial(window: AudioWindow, language?: string, prompt?: string, speechConfirmed = false): Promise<OneAttempt> {
    return this.once(window, 'partial', PRIORITY.partial, !speechConfirmed, language, prompt);
  }

  /**
   * One attempt at a speculative final (the utterance after a short silence, before the endpointing
   * confirms it), ahead of partials; undefined when it fails or is not sent (the final then goes itself),
   * or the refusal it met (the final says so when it goes: its viewers learn why it waits).
   */
  speculative(window: AudioWindow & Pick<WindowAudio, 'knownSpeakers'>, language?: string, prompt?: string): Promise<OneAttempt> {
    return this.once(window, 'speculative', PRIORITY.final, true, language, prompt);
  }

  /**
   * Runs the speech check over a window of a growing utterance now, for nothing but its later windows
   * (same `stream`): theirs then continues from here, and a final's check has only its last moments to
   * run when the speaker stops.
   */
  checkAhead(window: WindowAudio): void {
    const detector = this.options.speechCheck?.detector;
    if (detector && window.stream !== undefined) detector.probabilities(window.audio, window.stream, true).catch(() => undefined);
  }

  /** A single attempt (partials, speculative finals): nothing waits for a refusing recognizer, nothing is retried. */
  private async once(window: AudioWindow & Pick<WindowAudio, 'knownSpeakers'>, kind: WindowKindSent, priority: number, check: boolean, language?: string, prompt?: string): Promise<OneAttempt> {
    if (this.refusal) return undefined;
    try {
      const found = check ? await this.checkSpeech(window, kind) : undefined;
      if (found === null) return skipped();
      const result = await this.queue.add(() => this.attempt(window, found, kind, language, prompt), { priority, signal: this.shutdown.signal });
      return result === NOT_SENT ? undefined : result;
    } catch (error) {
      return error instanceof RecognizerRefused ? { refused: error } : undefined;
    }
  }

  /**
   * The speech check of a window: its speech stretches in track time; null when it holds too little
   * speech to send; undefined when no check is configured.
   */
  private async checkSpeech(window: WindowAudio, kind: WindowKindSent): Promise<SpeechFound | null | undefined> {
    const check = this.options.speechCheck;
    if (!check) return undefined;
    let probabilities: Float32Array;
    try {
      probabilities = await check.detector.probabilities(window.audio, window.stream);
    } catch {
      // A check that fails never costs a window: it goes unchecked (the filter still runs).
      return undefined;
    }
    const speech = speechStretches(probabilities, check.detector.chunkMs).map(([a, b]): [number, number] => [window.startMs + a, window.startMs + b]);
    const speechMs = stretchesMs(speech);
    if (speechMs < check.minSpeechMs) {
      this.options.onSkipped?.(kind);
      return null;
    }
    const agreeing = speechStretches(probabilities, check.detector.chunkMs, { minSpeechMs: 0, padMs: 0 }).map(([a, b]): [number, number] => [window.startMs + a, window.startMs + b]);
    return { speech, speechMs, heard: confirmedRuns(speech, window.speech ?? [], { ...HEARD, agreeing }) };
  }

  /**
   * Transcribes a final window, retrying until it succeeds or the gateway shuts down. While it waits
   * through failures its audio counts against the memory bound; past the bound it is spilled to disk
   * (encrypted) and read back for each attempt, so an outage of any length cannot exhaust memory.
   * Rejects when the gateway shuts down, or with a RecognizerRefused when the recognizer refuses this
   * window although it takes others. `refused`: a call for this window (its speculative final) met a
   * refusal already; it is reported as this window's failure.
   */
  async final(window: AudioWindow & Pick<WindowAudio, 'knownSpeakers'>, callbacks: FinalCallbacks, language?: string, prompt?: string, refused?: RecognizerRefused): Promise<TranscribedWindow> {
    const span = { startMs: window.startMs, endMs: window.endMs, speech: window.speech, knownSpeakers: window.knownSpeakers };
    const found = await this.checkSpeech(window, 'final');
    if (found === null) return skipped();
    const samples = window.audio.length;
    let held: Int16Array | undefined = window.audio;
    let spilled: string | undefined;
    this.changeBacklog(1, samples, 0);
    this.heldSamples += samples;
    let failed = false;
    let refusedBefore = false;
    if (refused) {
      failed = true;
      callbacks.onFailure(refused, 0);
    }
    try {
      for (let attempt = 1; ; attempt++) {
        await this.accepting();
        try {
          const result = await this.queue.add(async () => (this.refusal ? NOT_SENT : this.attempt({ ...span, audio: held ?? (await this.spill!.take(spilled!)) }, found, 'final', language, prompt)), {
            priority: PRIORITY.final,
            signal: this.shutdown.signal,
          });
          // Queued before the recognizer began refusing: it waits like the others.
          if (result === NOT_SENT) continue;
          if (failed) callbacks.onRecovered();
          return result;
        } catch (error) {
          if (this.shutdown.signal.aborted) throw error;
          failed = true;
          callbacks.onFailure(error as Error, attempt);
          // The attempt itself entered the refusing state; a second refusal is this window's own.
          if (error instanceof RecognizerRefused) {
            if (refusedBefore) throw error;
            refusedBefore = true;
          }
          if (held && this.spill && this.heldSamples > (this.options.backlogMemoryS ?? Infinity) * this.options.sampleRate) {
            spilled = await this.spill.put(held);
            // The caller's window object keeps only its times from now on.
            window.audio = new Int16Array(0);
            held = undefined;
            this.heldSamples -= samples;
            this.changeBacklog(0, 0, 1);
          }
          if (!(error instanceof RecognizerRefused)) {
            await sleep(Math.min(this.options.retryDelayMs * 2 ** (attempt - 1), this.options.maxRetryDelayMs), undefined, { signal: this.shutdown.signal });
          }
        }
      }
    } finally {
      if (held) this.heldSamples -= samples;
      this.changeBacklog(-1, -samples, spilled ? -1 : 0);
      if (spilled) await this.spill!.remove(spilled).catch(() => undefined);
    }
  }

  private changeBacklog(windows: number, samples: number, spilled: number): void {
    this.backlog.windows += windows;
    this.backlog.audioSeconds += samples / this.options.sampleRate;
    this.backlog.spilled += spilled;
    this.options.onBacklog?.(this.sttBacklog);
  }

  /**
   * One attempt for a window of an uploaded recording, after every live window; the job queue retries.
   * While the recognizer refuses requests the job waits rather than spending its attempts.
   */
  async upload(window: WindowAudio, language?: string, prompt?: string): Promise<TranscribedWindow> {
    const found = await this.checkSpeech(window, 'upload');
    if (found === null) return skipped();
    for (let refused = false; ; ) {
      await this.accepting();
      try {
        const result = await this.queue.add(() => this.attempt(window, found, 'upload', language, prompt), { priority: PRIORITY.upload, signal: this.shutdown.signal });
        if (result !== NOT_SENT) return result;
      } catch (error) {
        // Refused once: wait for the recognizer to take requests; refused again after that: it is this window.
        if (!(error instanceof RecognizerRefused) || refused) throw error;
        refused = true;
      }
    }
  }

  /** The job processor of the upload queue. */
  readonly processUploadJob: WindowProcessor = (job, audio) => this.upload({ audio, startMs: job.startMs, endMs: job.endMs, speech: job.speech }, job.language, job.prompt);

  /** Stops retrying and waiting: pending finals and uploads reject (their callers keep the windows). */
  close(): void {
    this.shutdown.abort();
  }

  /** Resolves once the recognizer takes requests (at once when it does); rejects on shutdown. */
  private async accepting(): Promise<void> {
    while (this.refusal) await Promise.race([this.refusal.accepted, this.closing]);
    if (this.shutdown.signal.aborted) await this.closing;
  }

  /** Enters the refusing state (once) and checks the recognizer, at once and then every `recheckMs`, until it takes requests. */
  private refuse(error: RecognizerRefused): void {
    if (this.refusal) {
      this.refusal.error = error;
      return;
    }
    let accept!: () => void;
    const refusal = { error, accepted: new Promise<void>((resolve) => (accept = resolve)) };
    this.refusal = refusal;
    this.options.onRefusal?.(error);
    void (async () => {
      // Checked at once: a recognizer that takes the probe refused one window, not every request.
      for (let first = true; ; first = false) {
        try {
          if (!first) await sleep(this.options.recheckMs, undefined, { signal: this.shutdown.signal });
        } catch {
          return;
        }
        try {
          await this.transcriber.recheck?.();
          break;
        } catch (recheckError) {
          // Still refused, or unreachable: either way, the next check decides.
          if (recheckError instanceof RecognizerRefused) refusal.error = recheckError;
        }
      }
      this.refusal = undefined;
      this.options.onRefusal?.(undefined);
      accept();
    })();
  }

  /** The window's audio as the recognizer is sent it: conditioned, its loudness taken over its speech. */
  private async conditioned(window: WindowAudio, found: SpeechFound | undefined): Promise<Int16Array> {
    const { conditioner } = this.options;
    if (!conditioner) return window.audio;
    const speech = (found?.speech ?? window.speech ?? []).map(([a, b]): [number, number] => [a - window.startMs, b - window.startMs]);
    const { audio, conditioning } = await conditioner.condition(window.audio, speech);
    this.options.onConditioned?.(conditioning);
    return audio;
  }

  /** Sends the window, unless the recognizer began refusing while it waited in the queue; filters what comes back. */
  private async attempt(window: WindowAudio, found: SpeechFound | undefined, kind: WindowKindSent, language?: string, prompt?: string): Promise<TranscribedWindow | typeof NOT_SENT> {
    if (this.refusal) return NOT_SENT;
    const audio = await this.conditioned(window, found);
    const started = performance.now();
    let transcription;
    try {
      transcription = await this.transcriber.transcribe({ audio, sampleRate: this.options.sampleRate, language, prompt, knownSpeakers: window.knownSpeakers });
    } catch (error) {
      // Here, before the queue starts its next window: that one must not be sent.
      if (error instanceof RecognizerRefused) this.refuse(error);
      throw error;
    }
    const sttMs = performance.now() - started;
    this.options.onSent?.(kind, window.audio.length / this.options.sampleRate);
    const recognized = recognizedWords(transcription, window, this.options.thresholds);
    if (recognized.droppedBySegment > 0) this.options.onDropped?.('segment', recognized.droppedBySegment);
    const { words, timed, speakers } = recognized;
    const result = { words, timed, sttMs, ...(found ? { speechMs: found.speechMs } : {}), ...(speakers ? { speakers } : {}), dropped: recognized.droppedBySegment };
    if (!this.options.filter) return result;
    const evidence = found ? { speech: found.speech, heard: found.heard, checked: true, timed } : { speech: window.speech ?? [], checked: false, timed };
    const filtered = filterHallucinations(words, evidence, this.options.filter);
    let dropped = recognized.droppedBySegment;
    for (const [reason, count] of Object.entries(filtered.dropped)) {
      this.options.onDropped?.(reason as DropReason, count);
      dropped += count;
    }
    return { ...result, words: filtered.words, dropped };
  }
}
