/**
 * A local server that speaks OpenAI's `POST /v1/audio/transcriptions` wire protocol (multipart form in;
 * `json`, `verbose_json` or `text` out; errors in OpenAI's JSON shape) and really listens: it decodes
 * the uploaded audio, locates it in the reference corpus, and answers with the words spoken there, with
 * timestamps relative to the window. Faults (429, 500, slow or hanging answers, server down) and
 * Whisper-style hallucinations on silent windows can be switched on, in process or over HTTP.
 */
import { execFile } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import multipart from '@fastify/multipart';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { decodeWav } from '../../src/audio/wav.ts';
import { ReferenceIndex } from './reference-index.ts';

export type Fault =
  | { kind: 'status'; status: 429 | 500 | 503; count: number }
  | { kind: 'slow'; delayMs: number; count: number };

export interface SttServerOptions {
  corpusDir: string;
  /** Fixed extra latency of every call, to model a remote recognizer. Default 0. */
  latencyMs?: number;
  /** Answer silent windows with a Whisper-style hallucination (flagged as such in its metrics). */
  hallucinateOnSilence?: boolean;
}

export interface SttCall {
  at: number;
  durationMs: number;
  status: number;
  responseFormat: string;
  audioMs: number;
  text: string;
}

const LANGUAGE_NAMES: Record<string, string> = { en: 'english', fa: 'persian', ar: 'arabic' };
const SUPPORTED = ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm'];
const HALLUCINATIONS = ['Thank you for watching!', 'Subtitles by the Amara.org community', 'Thanks for watching, see you next time.'];

function openAiError(reply: FastifyReply, status: number, message: string, type: string, param: string | null = null, code: string | null = null) {
  return reply.code(status).send({ error: { message, type, param, code } });
}

/** Any container ffmpeg reads, to 16 kHz mono PCM16; WAV at 16 kHz is read directly. */
async function decodeAudio(bytes: Buffer): Promise<Int16Array> {
  if (bytes.toString('ascii', 0, 4) === 'RIFF') {
    const wav = decodeWav(bytes);
    if (wav.sampleRate === 16000) return wav.samples;
  }
  return new Promise((resolve, reject) => {
    const child = execFile(
      'ffmpeg',
      ['-loglevel', 'error', '-i', 'pipe:0', '-f', 's16le', '-ac', '1', '-ar', '16000', 'pipe:1'],
      { encoding: 'buffer', maxBuffer: 1 << 30 },
      (error, stdout) => {
        if (error) reject(new Error('audio could not be decoded'));
        else resolve(new Int16Array(stdout.buffer, stdout.byteOffset, Math.floor(stdout.length / 2)));
      },
    );
    child.stdin!.on('error', () => {});
    child.stdin!.end(bytes);
  });
}

function compressionRatio(text: string): number {
  if (!text) return 0;
  const bytes = Buffer.from(text, 'utf8');
  return bytes.length / gzipSync(bytes).length;
}

export class SttServer {
  readonly calls: SttCall[] = [];
  readonly faults: Fault[] = [];
  private app: FastifyInstance | undefined;
  private index: ReferenceIndex | undefined;
  private port = 0;

  private readonly options: SttServerOptions;

  constructor(options: SttServerOptions) {
    this.options = options;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}/v1`;
  }

  async start(port = 0): Promise<this> {
    this.index ??= await ReferenceIndex.load(this.options.corpusDir);
    // Stopping it models an outage: open connections are cut, not drained.
    const app = Fastify({ logger: false, bodyLimit: 100 * 1024 * 1024, forceCloseConnections: true });
    await app.register(multipart, { limits: { fileSize: 25 * 1024 * 1024 } });
    app.post('/v1/audio/transcriptions', (request, reply) => this.transcribe(request, reply));
    app.post('/_control/faults', async (request) => {
      this.faults.push(request.body as Fault);
      return { queued: this.faults.length };
    });
    app.delete('/_control/faults', async () => {
      this.faults.length = 0;
      return { queued: 0 };
    });
    await app.listen({ host: '127.0.0.1', port: port || this.port });
    this.port = (app.server.address() as { port: number }).port;
    this.app = app;
    return this;
  }

  /** Stops listening; `start()` again brings it back on the same port (an outage and recovery). */
  async stop(): Promise<void> {
    const app = this.app;
    this.app = undefined;
    await app?.close();
  }

  private nextFault(): Fault | undefined {
    const fault = this.faults[0];
    if (!fault) return undefined;
    if (--fault.count <= 0) this.faults.shift();
    return fault;
  }

  private async transcribe(request: import('fastify').FastifyRequest, reply: FastifyReply) {
    const started = Date.now();
    const record = (status: number, responseFormat: string, audioMs: number, text: string) =>
      this.calls.push({ at: started, durationMs: Date.now() - started, status, responseFormat, audioMs, text });

    const auth = request.headers.authorization;
    if (!auth || !/^Bearer \S+/.test(auth)) {
      record(401, '', 0, '');
      return openAiError(reply, 401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", 'invalid_request_error');
    }
    if (!request.isMultipart()) {
      record(400, '', 0, '');
      return openAiError(reply, 400, 'Invalid Content-Type header (expected multipart/form-data).', 'invalid_request_error');
    }
    const fields: Record<string, string[]> = {};
    let file: { name: string; bytes: Buffer } | undefined;
    for await (const part of request.parts()) {
      if (part.type === 'file') file = { name: part.filename, bytes: await part.toBuffer() };
      else (fields[part.fieldname] ??= []).push(String(part.value));
    }
    const responseFormat = fields.response_format?.[0] ?? 'json';
    const fail = (status: number, message: string, param: string | null, code: string | null = null) => {
      record(status, responseFormat, 0, '');
      return openAiError(reply, status, message, 'invalid_request_error', param, code);
    };
    if (!file) return fail(400, "Missing required parameter: 'file'.", 'file', 'missing_required_parameter');
    if (!fields.model?.[0]) return fail(400, "Missing required parameter: 'model'.", 'model', 'missing_required_parameter');
    if (!['json', 'verbose_json', 'text'].includes(responseFormat)) {
      return fail(400, `Unsupported response_format '${responseFormat}' in this test server.`, 'response_format');
    }
    const extension = file.name.split('.').pop()?.toLowerCase() ?? '';
    if (!SUPPORTED.includes(extension)) {
      return fail(400, `Invalid file format. Supported formats: ${JSON.stringify(SUPPORTED)}`, 'file', 'invalid_value');
    }

    const fault = this.nextFault();
    if (fault?.kind === 'status') {
      record(fault.status, responseFormat, 0, '');
      if (fault.status === 429) {
        reply.header('retry-after-ms', '50');
        return openAiError(reply, 429, 'Rate limit reached for requests. Please try again in 50ms.', 'requests', null, 'rate_limit_exceeded');
      }
      return openAiError(reply, fault.status, 'The server had an error while processing your request. Sorry about that!', 'server_error');
    }
    const delay = (fault?.kind === 'slow' ? fault.delayMs : 0) + (this.options.latencyMs ?? 0);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));

    let samples: Int16Array;
    try {
      samples = await decodeAudio(file.bytes);
    } catch {
      return fail(400, 'The audio file could not be decoded or its format is not supported.', 'file', 'invalid_value');
    }
    const durationMs = (samples.length / 16000) * 1000;
    const language = fields.language?.[0];
    const match = this.index!.locate(samples, language);
    const words = match ? ReferenceIndex.wordsInWindow(match.track.words, match.offsetMs, durationMs) : [];
    let text = words.map((w) => w.word).join(' ');
    let segmentMetrics = { avg_logprob: -0.18, compression_ratio: compressionRatio(text), no_speech_prob: 0.01 };
    if (!match && this.options.hallucinateOnSilence) {
      text = HALLUCINATIONS[this.calls.length % HALLUCINATIONS.length];
      segmentMetrics = { avg_logprob: -1.35, compression_ratio: compressionRatio(text), no_speech_prob: 0.93 };
    }
    record(200, responseFormat, durationMs, text);

    if (responseFormat === 'text') return reply.type('text/plain; charset=utf-8').send(`${text}\n`);
    if (responseFormat === 'json') return { text, usage: { type: 'duration', seconds: Math.ceil(durationMs / 1000) } };
    const granularities = fields['timestamp_granularities[]'] ?? fields.timestamp_granularities ?? ['segment'];
    const seconds = durationMs / 1000;
    const body: Record<string, unknown> = {
      task: 'transcribe',
      language: LANGUAGE_NAMES[match?.track.language ?? language ?? 'en'] ?? 'english',
      duration: Math.round(seconds * 100) / 100,
      text,
      usage: { type: 'duration', seconds: Math.ceil(seconds) },
    };
    if (granularities.includes('word')) body.words = text && match ? words : [];
    if (granularities.includes('segment')) {
      body.segments = text
        ? [{ id: 0, seek: 0, start: words[0]?.start ?? 0, end: words.at(-1)?.end ?? seconds, text: ` ${text}`, tokens: [], temperature: 0, ...segmentMetrics }]
        : [];
    }
    return body;
  }
}
