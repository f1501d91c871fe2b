/**
 * Uploaded recordings are read by Debian's ffprobe and ffmpeg (installed by scripts/install-system-deps.sh):
 * one codec library for every container a clinic may send, instead of a demuxer per format here. `path`
 * may be a URL (the sealed upload is served to them over loopback HTTP with byte ranges).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export interface ProbedMedia {
  /** ffprobe's demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`. */
  formatName: string;
  /** What the container declares; undefined when it does not say (e.g. MediaRecorder WebM). */
  durationMs: number | undefined;
  /** The first audio stream; undefined when the file has none. */
  audio: { codec: string; sampleRate: number; channels: number } | undefined;
}

export class MediaToolError extends Error {
  override name = 'MediaToolError';
}

async function run(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** Reads the container; undefined when ffprobe cannot make sense of the file at all. */
export async function probeMedia(path: string): Promise<ProbedMedia | undefined> {
  const { code, stdout } = await run('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', path]);
  if (code !== 0) return undefined;
  const parsed = JSON.parse(stdout) as {
    format?: { format_name?: string; duration?: string };
    streams?: { codec_type?: string; codec_name?: string; sample_rate?: string; channels?: number }[];
  };
  if (!parsed.format?.format_name) return undefined;
  const duration = Number(parsed.format.duration);
  const audio = parsed.streams?.find((s) => s.codec_type === 'audio');
  return {
    formatName: parsed.format.format_name,
    durationMs: Number.isFinite(duration) && duration > 0 ? Math.round(duration * 1000) : undefined,
    audio: audio ? { codec: audio.codec_name ?? 'unknown', sampleRate: Number(audio.sample_rate) || 0, channels: audio.channels ?? 0 } : undefined,
  };
}

export interface DecodeResult {
  samples: number;
  /** What ffmpeg reported at error level (a corrupt or cut-off stream); empty when the decode was clean. */
  errors: string;
  /** The decode was stopped because `maxSamples` was reached. */
  stoppedAtLimit: boolean;
}

/**
 * Decodes the first audio stream to mono PCM16 at `sampleRate`, handing it over chunk by chunk as ffmpeg
 * produces it (the file is never held in memory). Stops after `maxSamples`.
 */
export async function decodeToPcm(path: string, sampleRate: number, maxSamples: number, onPcm: (samples: Int16Array) => void | Promise<void>): Promise<DecodeResult> {
  const child = spawn('ffmpeg', ['-nostdin', '-v', 'error', '-i', path, '-map', '0:a:0', '-vn', '-ac', '1', '-ar', String(sampleRate), '-f', 's16le', 'pipe:1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let errors = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (errors += text));
  let samples = 0;
  let stoppedAtLimit = false;
  let carry: Buffer | undefined;
  let failure: unknown;
  child.stdout.on('data', (chunk: Buffer) => {
    if (stoppedAtLimit || failure) return;
    const bytes = carry ? Buffer.concat([carry, chunk]) : chunk;
    const whole = bytes.length - (bytes.length % 2);
    carry = whole < bytes.length ? bytes.subarray(whole) : undefined;
    const pcm = new Int16Array(whole / 2);
    Buffer.from(pcm.buffer).set(bytes.subarray(0, whole));
    const take = Math.min(pcm.length, maxSamples - samples);
    samples += take;
    const stop = (error: unknown) => {
      // Thrown inside a stream event handler it would reach the process: it fails this decode only.
      failure = error;
      child.kill('SIGKILL');
    };
    let taken: void | Promise<void>;
    try {
      taken = onPcm(take < pcm.length ? pcm.subarray(0, take) : pcm);
    } catch (error) {
      stop(error);
      return;
    }
    if (samples >= maxSamples) {
      stoppedAtLimit = true;
      child.kill('SIGKILL');
      return;
    }
    // One chunk per turn of the event loop: a fast decoder's reads would otherwise come back to back,
    // holding live tracks, viewers and pings for as long as a minute of audio takes (seconds with RNNoise);
    // and none while the consumer asks to wait.
    child.stdout.pause();
    if (taken) taken.then(() => setImmediate(() => child.stdout.resume()), stop);
    else setImmediate(() => child.stdout.resume());
  });
  const [code] = (await once(child, 'close')) as [number | null];
  if (failure) throw failure;
  if (code !== 0 && !stoppedAtLimit && samples === 0 && !errors) throw new MediaToolError(`ffmpeg exited with ${code}`);
  return { samples, errors: errors.trim(), stoppedAtLimit };
}
