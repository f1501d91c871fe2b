/**
 * An OpenAI-compatible transcription endpoint that answers at once, for benchmarks that measure the
 * gateway and not the recognizer: every window is heard as the same four words, word-timed in its first
 * second, with confident segment figures (the gateway's post-processing runs as for a real answer).
 */
import { createServer } from 'node:http';

const ANSWER = JSON.stringify({
  task: 'transcribe',
  language: 'english',
  duration: 1,
  text: 'patient reports chest pain',
  segments: [{ id: 0, seek: 0, start: 0, end: 1, text: 'patient reports chest pain', tokens: [], temperature: 0, avg_logprob: -0.2, compression_ratio: 1.2, no_speech_prob: 0.01 }],
  words: ['patient', 'reports', 'chest', 'pain'].map((word, i) => ({ word, start: i * 0.25, end: i * 0.25 + 0.2 })),
});

export async function startSttStub(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(ANSWER);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/v1`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
