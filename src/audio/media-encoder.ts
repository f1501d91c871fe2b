/**
 * PCM to a compressed file through Debian's ffmpeg, for recognizers whose file limit a WAV window would
 * exceed (long upload windows): FLAC keeps every sample, Ogg Opus at 32 kbit/s is a tenth of FLAC's size.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { MediaToolError } from './media-decoder.ts';

const CODECS = {
  flac: ['-c:a', 'flac', '-f', 'flac'],
  ogg: ['-c:a', 'libopus', '-b:a', '32k', '-f', 'ogg'],
};

export async function encodeCompressed(pcm: Int16Array, sampleRate: number, format: keyof typeof CODECS): Promise<Uint8Array> {
  const child = spawn('ffmpeg', ['-nostdin', '-v', 'error', '-f', 's16le', '-ar', String(sampleRate), '-ac', '1', '-i', 'pipe:0', ...CODECS[format], 'pipe:1'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const chunks: Buffer[] = [];
  let errors = '';
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (errors += text));
  child.stdin.on('error', () => {});
  child.stdin.end(Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength));
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new MediaToolError(`ffmpeg could not encode ${format}: ${errors.trim() || `exit ${code}`}`);
  return Buffer.concat(chunks);
}
