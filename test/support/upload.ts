/** Uploading a recording to a real gateway, and making upload files from corpus audio with ffmpeg. */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { request } from 'node:http';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface UploadResponse {
  status: number;
  json: any;
}

/**
 * POSTs a file as the request body, streamed. Reads the answer even when the gateway answers before
 * the body is sent (a rejected upload) and closes the connection under the sender.
 */
export function uploadFile(baseUrl: string, token: string, path: string, query: Record<string, string> = {}): Promise<UploadResponse> {
  const url = new URL('/v1/uploads', baseUrl);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, json: text ? JSON.parse(text) : undefined }));
      res.on('error', reject);
    });
    let answered = false;
    req.on('response', () => (answered = true));
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    const body = createReadStream(path);
    body.on('error', reject);
    body.pipe(req);
  });
}

/** Encodes a corpus WAV into an upload format (ffmpeg's usual codec for each container). */
export async function encodeFor(format: string, source: string, target: string, extra: string[] = []): Promise<void> {
  const codec: Record<string, string[]> = {
    wav: [],
    flac: [],
    mp3: ['-c:a', 'libmp3lame', '-b:a', '64k'],
    m4a: ['-c:a', 'aac', '-b:a', '64k'],
    ogg: ['-c:a', 'libopus', '-b:a', '32k'],
    webm: ['-c:a', 'libopus', '-b:a', '32k'],
  };
  await run('ffmpeg', ['-v', 'error', '-y', '-i', source, ...extra, ...codec[format], target]);
}

export async function ffmpeg(args: string[]): Promise<void> {
  await run('ffmpeg', ['-v', 'error', '-y', ...args]);
}
