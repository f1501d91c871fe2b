/**
 * An uploaded recording, from the request body to the windows the job queue will transcribe. The body
 * is streamed to a file (never held in memory) with a size limit; then, before anything is queued, the
 * file is checked: real type from its bytes, a decodable audio stream, not cut short, not too long. The
 * same pass decodes it to 16 kHz, runs the VAD and the offline segmenter, and measures the level.
 * A rejection is an UploadRejected with its own HTTP status and code; the caller removes the files.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { SealedFileWriter, serveOnLoopback, type SealedFileReader } from '../archive/sealed-file.ts';
import type { UploadFormat } from '../../client-sdk/src/protocol.ts';
import { UploadRejected } from '../errors.ts';
import { decodeToPcm, probeMedia } from '../audio/media-decoder.ts';
import { PIPELINE_SAMPLE_RATE } from '../audio/opus-decoder.ts';
import type { VoiceActivityDetector } from '../audio/vad.ts';
import type { SegmenterOptions } from '../segmenter/segmenter.ts';
import type { StreamDenoiser } from '../audio/noise-suppressor.ts';
import { VoiceWindows } from '../segmenter/voice-windows.ts';
import { DEFAULT_SEGMENTER_OPTIONS } from '../segmenter/segmenter.ts';
import { RecordingDiarizer, type SpeakerTurn } from '../diarizer/diarizer.ts';
import type { VoicePrint } from '../diarizer/voice-print.ts';
import type { UploadWindow } from '../store/schema.ts';
import { containerTruncated, PROBE_FORMAT_NAMES, SNIFF_BYTES, sniffUploadFormat } from '../demux/upload-format.ts';

export interface UploadWarning {
  code: 'low_sample_rate' | 'quiet_audio';
  message: string;
}

/** Below this the recording was made for telephony: STT accuracy drops. */
const MIN_GOOD_SAMPLE_RATE = 16000;
/** Mean level below this is very quiet audio (a muted or distant microphone). */
const QUIET_DBFS = -40;
/** Decoded audio this much shorter than the container declares means the file was cut short. */
const TRUNCATION_TOLERANCE_MS = 500;
/** Decoded audio a denoiser in a worker may have in hand before decoding waits for it (30 s, ~1 MB). */
const MAX_HELD_SAMPLES = 30 * PIPELINE_SAMPLE_RATE;

export interface ReceivedFile {
  path: string;
  sizeBytes: number;
  sha256: string;
}

/**
 * Streams a request body to `path`, sealed as it arrives (never plaintext on disk); rejects with
 * file_too_large once `maxBytes` is passed. The rest of an oversized body is read and discarded, not
 * stored: a client that does not read the answer while it sends would otherwise see a reset connection
 * instead of the 413. A body that stalls for `idleTimeoutMs` is given up (408): a slow sender cannot
 * hold a connection and a file forever.
 */
export async function receiveUpload(body: Readable, path: string, key: Buffer, maxBytes: number, idleTimeoutMs: number): Promise<ReceivedFile> {
  const sha256 = createHash('sha256');
  let sizeBytes = 0;
  let stalled = false;
  // Destroying the body would destroy the socket, and with it the 408: the read is abandoned instead.
  let idle: NodeJS.Timeout | undefined;
  let giveUp!: () => void;
  const stall = new Promise<'stalled'>((resolve) => (giveUp = () => resolve('stalled')));
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(giveUp, idleTimeoutMs);
  };
  const file = await SealedFileWriter.create(path, key, 'original');
  try {
    const chunks = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    for (;;) {
      arm();
      const next = await Promise.race([chunks.next(), stall]);
      if (next === 'stalled') {
        stalled = true;
        body.pause();
        break;
      }
      if (next.done) break;
      const chunk = next.value;
      sizeBytes += chunk.length;
      if (sizeBytes > maxBytes) continue;
      sha256.update(chunk);
      await file.write(chunk);
    }
  } finally {
    clearTimeout(idle);
    await file.end();
  }
  if (stalled || body.readableAborted) throw new UploadRejected('body_timeout', `the upload stalled: no data for ${idleTimeoutMs / 1000} s`);
  if (sizeBytes > maxBytes) throw new UploadRejected('file_too_large', `the file is larger than the limit of ${maxBytes} bytes`);
  if (sizeBytes === 0) throw new UploadRejected('empty_file', 'the request body is empty');
  return { path, sizeBytes, sha256: sha256.digest('hex') };
}

export interface UploadAnalysis {
  format: UploadFormat;
  durationMs: number;
  /** Of the original audio stream. */
  sampleRate: number;
  meanDbfs: number;
  warnings: UploadWarning[];
  windows: UploadWindow[];
  /** A diarized recording's speakers: turns over the whole file and each speaker's voice print. */
  speakers: { turns: SpeakerTurn[]; prints: VoicePrint[] } | null;
}

export interface InspectOptions {
  maxDurationMs: number;
  segmenter: Partial<SegmenterOptions>;
  vad: VoiceActivityDetector;
  /** Noise suppression the VAD and the windows hear (the live tracks' `denoiser`), made once the file is accepted for decoding. */
  denoiser?(): StreamDenoiser | undefined;
  /** Receives each window's audio as the segmenter closes it (the caller stages it on disk). */
  window(window: UploadWindow, audio: Int16Array): Promise<void>;
  /** The recording hears several people: diarized over the whole file into at most this many speakers. */
  maxSpeakers?: number;
}

/**
 * Validates, decodes and segments an uploaded file (sealed on disk; ffprobe and ffmpeg read it through a
 * loopback server); throws UploadRejected.
 */
export async function inspectUpload(file: SealedFileReader, options: InspectOptions): Promise<UploadAnalysis> {
  const served = await serveOnLoopback(file);
  try {
    return await inspect(file, served.url, options);
  } finally {
    await served.close();
  }
}

async function inspect(file: SealedFileReader, path: string, options: InspectOptions): Promise<UploadAnalysis> {
  const size = file.size;
  const head = await file.read(0, SNIFF_BYTES);
  const tail = await file.read(Math.max(0, size - SNIFF_BYTES), size);
  const format = sniffUploadFormat(head);
  if (!format) throw new UploadRejected('unrecognized_format', 'the file is not WebM, MP3, WAV, M4A, Ogg or FLAC (judged by its content, not its name)');
  const probed = await probeMedia(path);
  if (!probed) {
    // An MP4 writes its index (moov) last unless made for streaming: without one at either end, the file was cut.
    const truncated = format === 'm4a' && !Buffer.from(head).includes('moov') && !Buffer.from(tail).includes('moov');
    throw truncated
      ? new UploadRejected('truncated', `the ${format} file is cut short: its index or data is missing`)
      : new UploadRejected('undecodable', `the file starts like ${format} but cannot be read`);
  }
  if (!probed.formatName.split(',').includes(PROBE_FORMAT_NAMES[format]) && !(format === 'm4a' && probed.formatName.includes('m4a'))) {
    throw new UploadRejected('unrecognized_format', `the file starts like ${format} but reads as ${probed.formatName}`);
  }
  if (!probed.audio) throw new UploadRejected('no_audio_stream', `the ${format} file has no audio stream`);
  if (probed.durationMs !== undefined && probed.durationMs > options.maxDurationMs) {
    throw new UploadRejected('duration_exceeded', `the recording lasts ${formatDuration(probed.durationMs)}; the limit is ${formatDuration(options.maxDurationMs)}`);
  }
  if (containerTruncated(format, head, tail, size)) throw new UploadRejected('truncated', `the ${format} file is cut short: its container declares more than it holds`);

  const windows: UploadWindow[] = [];
  /** A throw while cutting the audio a denoiser in a worker gave back: the upload fails with it. */
  let failure: Error | undefined;
  let staging: Promise<void> = Promise.resolve();
  const diarizer = options.maxSpeakers ? new RecordingDiarizer({ maxSpeakers: options.maxSpeakers, frameMs: DEFAULT_SEGMENTER_OPTIONS.frameMs }) : undefined;
  const voice = new VoiceWindows(options.vad, { ...options.segmenter, sampleRate: PIPELINE_SAMPLE_RATE, partialIntervalMs: 0, overlapOnlyInSpeech: true }, {
    window: (w) => {
      if (w.kind !== 'final') return;
      const window: UploadWindow = { index: windows.length, utteranceId: w.utteranceId, startMs: w.startMs, endMs: w.endMs, keepFromMs: w.keepFromMs, keepUntilMs: w.keepUntilMs, speech: w.speech };
      windows.push(window);
      staging = staging.then(() => options.window(window, w.audio));
    },
    frame: diarizer ? (frame, isSpeech) => diarizer.frame(frame, isSpeech) : undefined,
    error: (error) => void (failure ??= error),
  }, options.denoiser?.());
  let energy = 0;
  const maxSamples = Math.ceil((options.maxDurationMs * PIPELINE_SAMPLE_RATE) / 1000) + 1;
  let decoded: Awaited<ReturnType<typeof decodeToPcm>>;
  let durationMs: number;
  try {
    decoded = await decodeToPcm(path, PIPELINE_SAMPLE_RATE, maxSamples, (pcm) => {
      if (failure) throw failure;
      for (const sample of pcm) energy += sample * sample;
      voice.push(pcm);
      // A denoiser in a worker runs slower than ffmpeg decodes: the file waits in ffmpeg, not in memory here.
      if (voice.heldSamples > MAX_HELD_SAMPLES) return voice.heldBelow(MAX_HELD_SAMPLES / 2);
    });
    if (decoded.stoppedAtLimit) throw new UploadRejected('duration_exceeded', `the recording lasts longer than the limit of ${formatDuration(options.maxDurationMs)}`);
    durationMs = Math.round((decoded.samples / PIPELINE_SAMPLE_RATE) * 1000);
    if (decoded.samples === 0) throw new UploadRejected('undecodable', `the ${format} file holds no decodable audio${decoded.errors ? `: ${firstLine(decoded.errors)}` : ''}`);
    if (decoded.errors) throw new UploadRejected('truncated', `the ${format} audio is damaged or cut short after ${formatDuration(durationMs)}: ${firstLine(decoded.errors)}`);
    if (probed.durationMs !== undefined && durationMs < probed.durationMs - TRUNCATION_TOLERANCE_MS) {
      throw new UploadRejected('truncated', `the ${format} file is cut short: it declares ${formatDuration(probed.durationMs)} but holds ${formatDuration(durationMs)}`);
    }
    await voice.flush();
    if (failure) throw failure;
  } finally {
    // A rejected file too: the denoiser's model state goes back.
    voice.release();
  }
  await staging;

  const meanDbfs = decoded.samples > 0 && energy > 0 ? 10 * Math.log10(energy / decoded.samples / 32768 ** 2) : -Infinity;
  const warnings: UploadWarning[] = [];
  if (probed.audio.sampleRate < MIN_GOOD_SAMPLE_RATE) {
    warnings.push({ code: 'low_sample_rate', message: `the audio is sampled at ${probed.audio.sampleRate} Hz (under 16 kHz): expect lower accuracy` });
  }
  if (meanDbfs < QUIET_DBFS) warnings.push({ code: 'quiet_audio', message: `the mean level is ${meanDbfs === -Infinity ? 'silence' : `${meanDbfs.toFixed(1)} dBFS`} (under ${QUIET_DBFS} dBFS): very quiet audio` });
  return { format, durationMs, sampleRate: probed.audio.sampleRate, meanDbfs: Math.max(meanDbfs, -200), warnings, windows, speakers: diarizer?.turns() ?? null };
}

function firstLine(text: string): string {
  return text.split('\n')[0].replace(/^\[[^\]]*\]\s*/, '');
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}
