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
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { decodeWav } from '../../src/audio/wav.ts';
import { ReferenceIndex, type HeardWord } from './reference-index.ts';

export type Fault =
  | { kind: 'status'; status: 429 | 500 | 503; count: number }
  /** Refusals no retry changes, each in the dialect's error shape. */
  | { kind: 'refuse'; status: 400 | 401 | 403 | 404 | 422; count: number }
  | { kind: 'slow'; delayMs: number; count: number }
  /** Answers with status 200 that are not transcriptions (a proxy's page, an empty body, another API's JSON), or words out of order. */
  | { kind: 'answer'; answer: 'html' | 'empty' | 'foreign-json' | 'disordered-words'; count: number };

/**
 * Whose wire format the server speaks, each taken from that server's documentation or source (see the
 * README's recognizer table): the listening is the same, the request rules and answer shapes differ.
 */
export type Dialect =
  /** whisper-1: json, text, verbose_json with word and segment timestamps. */
  | 'openai'
  /** gpt-4o-transcribe and -mini: json and text only; verbose_json is a 400. */
  | 'openai-text-only'
  /** Azure OpenAI: /openai/deployments/{deployment}/audio/transcriptions?api-version=…, `api-key` header or an Entra bearer token. */
  | 'azure'
  /** speaches (faster-whisper-server): words at the top and in each segment, FastAPI `{"detail"}` errors. */
  | 'speaches'
  /** vLLM: duration as a string, segments without words, its own error object. */
  | 'vllm'
  /** whisper.cpp's server: no key, WAV only, sub-word tokens in segments, errors as 200 `{"error": "…"}`. */
  | 'whisper-cpp'
  /** Groq: OpenAI's shapes plus `x_groq`. */
  | 'groq'
  /**
   * gpt-4o-transcribe-diarize: json, text and diarized_json (segments with `speaker`, no words); refuses a
   * prompt and verbose_json; needs `chunking_strategy` above 30 s; labels the voices of
   * `known_speaker_references[]` (data URLs, 2–10 s each, up to 4) with `known_speaker_names[]`, the
   * others `A`, `B`, … in order of appearance within the request.
   */
  | 'openai-diarize'
  /**
   * LocalAI before 3.x (issue mudler/LocalAI#5327, fixed by PR #8318): `response_format` ignored, always
   * `{segments: [{id, start, end, text, tokens}], text}` with segment times in nanoseconds, no words.
   */
  | 'localai';

export interface SttServerOptions {
  corpusDir: string;
  /** Fixed extra latency of every call, to model a remote recognizer. Default 0. */
  latencyMs?: number;
  /** Answer silent windows with a Whisper-style hallucination (flagged as such in its metrics). */
  hallucinateOnSilence?: boolean;
  /**
   * Answer every window without corpus speech (silence, a cough, a door) as a real Whisper does: a stock
   * phrase of the window's language, or a loop, with word timestamps and scores that pass the usual
   * thresholds (no_speech_prob 0.25, avg_logprob −0.45).
   */
  confidentHallucinations?: boolean;
  /** Also listens for the corpus's noisy tracks (coughs, doors, chairs). Default false: half the search. */
  noisyCorpus?: boolean;
  /**
   * Also listens for the visits recorded on one track only (the three-person visit). Off by default: its
   * two voices at once look like broadband noise to the envelope match, which the noise tests must not hear.
   */
  mixOnlyVisits?: boolean;
  /** Default `openai`. */
  dialect?: Dialect;
  /** The model (or Azure deployment) the server has; others are refused as its dialect does. Default: any. */
  model?: string;
  /** The key (or Entra token) it takes; default: any. */
  apiKey?: string;
  /** Refuses requests that carry a prompt (gpt-4o-transcribe-diarize). */
  refusePrompt?: boolean;
  /** Words it hears wrong, as Whisper does rare clinical terms: reference word → what it answers. */
  misspell?: Record<string, string>;
  /** Largest file taken, bytes. Default 25 MB. */
  maxFileBytes?: number;
  /** openai-diarize: answer diarized_json without segments (a diarizing backend that returns no speakers). */
  noSpeakers?: boolean;
}

export interface SttCall {
  at: number;
  durationMs: number;
  status: number;
  responseFormat: string;
  audioMs: number;
  text: string;
  fileName: string;
  prompt?: string;
  /** The `language` field of the request. */
  language?: string;
}

const LANGUAGE_NAMES: Record<string, string> = { en: 'english', fa: 'persian', ar: 'arabic' };
const SUPPORTED = ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm'];
const HALLUCINATIONS = ['Thank you for watching!', 'Subtitles by the Amara.org community', 'Thanks for watching, see you next time.'];
/** What Whisper says, confidently, on non-speech, per language: stock phrases and loops (as reported by users of Whisper-based tools). */
const CONFIDENT_HALLUCINATIONS: Record<string, string[]> = {
  en: ['Thank you for watching.', 'you you you you you you', 'Subtitles by the Amara.org community', 'Thanks for watching, see you next time.'],
  fa: ['زیرنویس توسط امیر', 'ممنون ممنون ممنون ممنون ممنون ممنون', 'ممنون که تماشا کردید', 'لطفا سابسکرایب کنید'],
  ar: ['اشتركوا في القناة', 'شكرا شكرا شكرا شكرا شكرا شكرا', 'ترجمة نانسي قنقر', 'شكرا للمشاهدة'],
};
const AZURE_API_VERSIONS = ['2024-02-01', '2024-06-01', '2024-10-21', '2025-03-01-preview'];

/** A refusal in the error shape of each dialect. */
function refusalBody(dialect: Dialect, status: number, message: string, param: string | null = null, code: string | null = null): unknown {
  switch (dialect) {
    case 'azure':
      return { error: { code: code ?? String(status), message } };
    case 'speaches':
      return { detail: message };
    case 'vllm':
      return { error: { message, type: status === 404 ? 'NotFoundError' : 'BadRequestError', param, code: status } };
    case 'whisper-cpp':
      return { error: message };
    default:
      return { error: { message, type: 'invalid_request_error', param, code } };
  }
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

/** whisper.cpp's words are tokens: a long word comes as two, the second without its leading space. */
function subwordTokens(words: HeardWord[]): { word: string; start: number; end: number; t_dtw: number; probability: number }[] {
  return words.flatMap((w) => {
    const letters = [...w.word];
    if (letters.length < 8) return [{ word: ` ${w.word}`, start: w.start, end: w.end, t_dtw: -1, probability: 0.93 }];
    const cut = Math.floor(letters.length / 2);
    const middle = Math.round(((w.start + w.end) / 2) * 100) / 100;
    return [
      { word: ` ${letters.slice(0, cut).join('')}`, start: w.start, end: middle, t_dtw: -1, probability: 0.9 },
      { word: letters.slice(cut).join(''), start: middle, end: w.end, t_dtw: -1, probability: 0.88 },
    ];
  });
}

export class SttServer {
  readonly calls: SttCall[] = [];
  /** Windows answered with a confident hallucination. */
  hallucinated = 0;
  /** Noise windows seen (by a digest of their samples) → the turn their phrase was chosen in. */
  private readonly hallucinationChoices = new Map<number, number>();
  readonly faults: Fault[] = [];
  private app: FastifyInstance | undefined;
  private index: ReferenceIndex | undefined;
  private port = 0;

  private readonly options: SttServerOptions;

  constructor(options: SttServerOptions) {
    this.options = options;
  }

  get dialect(): Dialect {
    return this.options.dialect ?? 'openai';
  }

  /** The base URL an OpenAI-compatible client is given (for Azure: the resource endpoint). */
  get baseUrl(): string {
    return this.dialect === 'azure' ? `http://127.0.0.1:${this.port}` : `http://127.0.0.1:${this.port}/v1`;
  }

  async start(port = 0): Promise<this> {
    this.index ??= await ReferenceIndex.load(this.options.corpusDir, this.options.noisyCorpus, this.options.mixOnlyVisits);
    // Stopping it models an outage: open connections are cut, not drained.
    const app = Fastify({ logger: false, bodyLimit: 100 * 1024 * 1024, forceCloseConnections: true });
    await app.register(multipart, { limits: { fileSize: this.options.maxFileBytes ?? 25 * 1024 * 1024 } });
    if (this.dialect === 'azure') app.post('/openai/deployments/:deployment/audio/transcriptions', (request, reply) => this.transcribe(request, reply));
    else app.post('/v1/audio/transcriptions', (request, reply) => this.transcribe(request, reply));
    app.post('/_control/faults', async (request) => {
      this.faults.push(request.body as Fault);
      return { queued: this.faults.length };
    });
    app.delete('/_control/faults', async () => {
      this.faults.length = 0;
      return { queued: 0 };
    });
    if (this.dialect === 'whisper-cpp') {
      app.setNotFoundHandler((request, reply) => reply.code(404).type('text/plain').send(`File Not Found (${request.url.split('?')[0]})`));
    }
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

  /** The dialect's credentials check: undefined when the request may go on. */
  private authFailure(request: FastifyRequest): { status: number; message: string; code?: string } | undefined {
    const expected = this.options.apiKey;
    const bearer = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
    switch (this.dialect) {
      case 'whisper-cpp':
        return undefined;
      case 'azure': {
        const version = (request.query as Record<string, string>)['api-version'];
        if (!version) return { status: 404, message: 'Resource not found', code: '404' };
        if (!AZURE_API_VERSIONS.includes(version)) return { status: 404, message: `API version not supported: ${version}`, code: '404' };
        const key = request.headers['api-key'];
        const credential = typeof key === 'string' ? key : bearer;
        if (!credential || (expected && credential !== expected)) {
          return { status: 401, code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.' };
        }
        const deployment = (request.params as { deployment: string }).deployment;
        if (this.options.model && deployment !== this.options.model) {
          return { status: 404, code: 'DeploymentNotFound', message: 'The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.' };
        }
        return undefined;
      }
      default:
        if (!bearer) return { status: 401, message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)." };
        if (expected && bearer !== expected) return { status: 401, message: `Incorrect API key provided: ${bearer.slice(0, 3)}****. You can find your API key at https://platform.openai.com/account/api-keys.`, code: 'invalid_api_key' };
        return undefined;
    }
  }

  private async transcribe(request: FastifyRequest, reply: FastifyReply) {
    const started = Date.now();
    const dialect = this.dialect;
    let fileName = '';
    let prompt: string | undefined;
    let requestLanguage: string | undefined;
    const record = (status: number, responseFormat: string, audioMs: number, text: string) =>
      this.calls.push({ at: started, durationMs: Date.now() - started, status, responseFormat, audioMs, text, fileName, ...(prompt !== undefined ? { prompt } : {}), ...(requestLanguage !== undefined ? { language: requestLanguage } : {}) });
    // whisper.cpp's server answers its errors with status 200.
    const refuse = (status: number, message: string, param: string | null = null, code: string | null = null, responseFormat = '') => {
      record(status, responseFormat, 0, '');
      return reply.code(dialect === 'whisper-cpp' ? 200 : status).send(refusalBody(dialect, status, message, param, code));
    };

    const denied = this.authFailure(request);
    if (denied) return refuse(denied.status, denied.message, null, denied.code ?? null);
    if (!request.isMultipart()) return refuse(400, 'Invalid Content-Type header (expected multipart/form-data).');
    const fields: Record<string, string[]> = {};
    let file: { name: string; bytes: Buffer } | undefined;
    try {
      for await (const part of request.parts()) {
        if (part.type === 'file') file = { name: part.filename, bytes: await part.toBuffer() };
        else (fields[part.fieldname] ??= []).push(String(part.value));
      }
    } catch (error) {
      if ((error as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') return refuse(413, `Maximum content size limit (${this.options.maxFileBytes ?? 25 * 1024 * 1024}) exceeded.`, 'file');
      throw error;
    }
    fileName = file?.name ?? '';
    prompt = fields.prompt?.[0];
    requestLanguage = fields.language?.[0];
    const responseFormat = fields.response_format?.[0] ?? 'json';
    const model = fields.model?.[0];
    const fail = (status: number, message: string, param: string | null, code: string | null = null) => refuse(status, message, param, code, responseFormat);
    if (!file) return fail(400, "Missing required parameter: 'file'.", 'file', 'missing_required_parameter');
    if (!model && dialect !== 'whisper-cpp' && dialect !== 'azure') return fail(400, "Missing required parameter: 'model'.", 'model', 'missing_required_parameter');
    if (this.options.model && model !== this.options.model && dialect !== 'whisper-cpp' && dialect !== 'azure') {
      if (dialect === 'speaches') return fail(404, `Model '${model}' is not installed locally. You can download the model using \`POST /v1/models\``, 'model');
      if (dialect === 'vllm') return fail(404, `The model \`${model}\` does not exist.`, 'model');
      return fail(404, `The model \`${model}\` does not exist or you do not have access to it.`, 'model', 'model_not_found');
    }
    const formats = dialect === 'openai-text-only' ? ['json', 'text'] : dialect === 'openai-diarize' ? ['json', 'text', 'diarized_json'] : ['json', 'verbose_json', 'text', 'srt', 'vtt'];
    if (!formats.includes(responseFormat)) {
      const allowed = dialect === 'openai-diarize' ? "'json', 'text' or 'diarized_json'" : "'json' or 'text'";
      return fail(400, dialect === 'openai-text-only' || dialect === 'openai-diarize' ? `response_format '${responseFormat}' is not compatible with model '${model}'. Use ${allowed} instead.` : `Unsupported response_format '${responseFormat}'.`, 'response_format', 'unsupported_value');
    }
    if ((this.options.refusePrompt || dialect === 'openai-diarize') && prompt) return fail(400, `Prompt is not supported for model '${model}'.`, 'prompt', 'unsupported_parameter');
    const speakerNames = fields['known_speaker_names[]'] ?? [];
    const speakerReferences = fields['known_speaker_references[]'] ?? [];
    if (dialect === 'openai-diarize' && (speakerNames.length !== speakerReferences.length || speakerNames.length > 4)) {
      return fail(400, 'known_speaker_names and known_speaker_references must have the same length (at most 4).', 'known_speaker_names', 'invalid_value');
    }
    const extension = file.name.split('.').pop()?.toLowerCase() ?? '';
    if (dialect === 'whisper-cpp' ? file.bytes.toString('ascii', 0, 4) !== 'RIFF' : !SUPPORTED.includes(extension)) {
      return dialect === 'whisper-cpp' ? fail(400, 'failed to read WAV file', 'file') : fail(400, `Invalid file format. Supported formats: ${JSON.stringify(SUPPORTED)}`, 'file', 'invalid_value');
    }

    const fault = this.nextFault();
    if (fault?.kind === 'status') {
      record(fault.status, responseFormat, 0, '');
      if (fault.status === 429) {
        reply.header('retry-after-ms', '50');
        return reply.code(429).send(refusalBody(dialect, 429, 'Rate limit reached for requests. Please try again in 50ms.', null, 'rate_limit_exceeded'));
      }
      return reply.code(fault.status).send(refusalBody(dialect, fault.status, 'The server had an error while processing your request. Sorry about that!'));
    }
    if (fault?.kind === 'refuse') {
      const messages = { 400: "Invalid value for 'language': 'xx' is not supported.", 401: 'Incorrect API key provided: sk-****.', 403: 'You are not allowed to sample from this model', 404: `The model \`${model}\` does not exist or you do not have access to it.`, 422: 'Unprocessable Entity' };
      return fail(fault.status, messages[fault.status], null);
    }
    if (fault?.kind === 'answer' && fault.answer !== 'disordered-words') {
      record(200, responseFormat, 0, '');
      if (fault.answer === 'html') return reply.type('text/html').send('<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>');
      if (fault.answer === 'empty') return reply.type('application/json').send('');
      return { results: [{ alternatives: [{ transcript: 'not our shape', confidence: 0.9 }] }] };
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
    if (dialect === 'openai-diarize' && durationMs > 30000 && !fields.chunking_strategy) {
      return fail(400, 'chunking_strategy is required for diarization models when the input audio is longer than 30 seconds.', 'chunking_strategy', 'missing_required_parameter');
    }
    // Known voices: each reference located in the corpus, its words' speaker named as the caller names it.
    const named = new Map<string, string>();
    for (const [i, reference] of speakerReferences.entries()) {
      const match = /^data:audio\/[a-z0-9.+-]+;base64,(.+)$/i.exec(reference);
      let clip: Int16Array;
      try {
        if (!match) throw new Error('not a data URL');
        clip = await decodeAudio(Buffer.from(match[1], 'base64'));
      } catch {
        return fail(400, `known_speaker_references[${i}] is not a valid audio data URL.`, `known_speaker_references[${i}]`, 'invalid_value');
      }
      const seconds = clip.length / 16000;
      if (seconds < 2 || seconds > 10) return fail(400, `known_speaker_references[${i}] must be between 2 and 10 seconds of audio (got ${seconds.toFixed(1)}).`, `known_speaker_references[${i}]`, 'invalid_value');
      const where = this.index!.locate(clip, language);
      const voices = where ? ReferenceIndex.wordsInWindow(where.track.words, where.offsetMs, seconds * 1000).map((w) => w.speaker) : [];
      const voice = voices.sort((a, b) => voices.filter((v) => v === b).length - voices.filter((v) => v === a).length)[0];
      if (voice) named.set(voice, speakerNames[i]);
    }
    const match = this.index!.locate(samples, language);
    let words = match ? ReferenceIndex.wordsInWindow(match.track.words, match.offsetMs, durationMs) : [];
    const misspell = this.options.misspell;
    if (misspell) words = words.map((w) => (misspell[w.word] ? { ...w, word: misspell[w.word] } : w));
    let text = words.map((w) => w.word).join(' ');
    let segmentMetrics = { avg_logprob: -0.18, compression_ratio: compressionRatio(text), no_speech_prob: 0.01 };
    if (words.length === 0 && this.options.confidentHallucinations) {
      const phrases = CONFIDENT_HALLUCINATIONS[language ?? 'en'] ?? CONFIDENT_HALLUCINATIONS.en;
      // The same window always gets the same phrase (as Whisper at temperature 0), however concurrent
      // requests interleave; new windows take the phrases in turn, so any two noise windows of a run give
      // a stock phrase and a loop (a choice by the samples alone left a run with no loop at all).
      let digest = 0;
      for (let i = 0; i < samples.length; i += 97) digest = (digest * 31 + samples[i]) | 0;
      let choice = this.hallucinationChoices.get(digest);
      if (choice === undefined) this.hallucinationChoices.set(digest, (choice = this.hallucinationChoices.size));
      text = phrases[choice % phrases.length];
      // Laid over the window from its first fifth on, a third of a second a word, as Whisper times them.
      const seconds = durationMs / 1000;
      const parts = text.split(' ');
      const step = Math.min(0.35, (seconds * 0.8) / parts.length);
      words = parts.map((word, i) => ({ word, start: Math.round((seconds * 0.2 + i * step) * 100) / 100, end: Math.round((seconds * 0.2 + (i + 0.9) * step) * 100) / 100 }));
      segmentMetrics = { avg_logprob: -0.45, compression_ratio: compressionRatio(text), no_speech_prob: 0.25 };
      this.hallucinated++;
    } else if (!match && this.options.hallucinateOnSilence) {
      text = HALLUCINATIONS[this.calls.length % HALLUCINATIONS.length];
      segmentMetrics = { avg_logprob: -1.35, compression_ratio: compressionRatio(text), no_speech_prob: 0.93 };
      words = [];
    }
    record(200, responseFormat, durationMs, text);
    return this.answer(reply, { responseFormat, text, words, named, granularities: fields['timestamp_granularities[]'] ?? fields.timestamp_granularities ?? ['segment'], durationMs, language: match?.track.language ?? language, segmentMetrics, disordered: fault?.kind === 'answer' });
  }

  /** The answer in the dialect's shape. */
  private answer(
    reply: FastifyReply,
    a: { responseFormat: string; text: string; words: HeardWord[]; named?: Map<string, string>; granularities: string[]; durationMs: number; language: string | undefined; segmentMetrics: Record<string, number>; disordered: boolean },
  ) {
    const dialect = this.dialect;
    const seconds = a.durationMs / 1000;
    const { text, words } = a;
    if (dialect === 'localai') {
      const nanoseconds = (s: number) => Math.round(s * 1e9);
      return { segments: text ? [{ id: 0, start: nanoseconds(words[0]?.start ?? 0), end: nanoseconds(words.at(-1)?.end ?? seconds), text: ` ${text}`, tokens: [] }] : [], text };
    }
    if (a.responseFormat === 'text') return reply.type(dialect === 'whisper-cpp' ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8').send(`${text}\n`);
    if (a.responseFormat === 'srt' || a.responseFormat === 'vtt') return reply.type('text/plain').send(text);
    if (a.responseFormat === 'diarized_json') {
      // Segments: runs of one voice, labelled by a known name or by letter in order of appearance.
      const letters = new Map<string, string>();
      const label = (voice: string | undefined) => a.named?.get(voice ?? '') ?? letters.get(voice ?? '') ?? (letters.set(voice ?? '', String.fromCharCode(65 + letters.size)), letters.get(voice ?? ''))!;
      const segments: { type: string; id: string; start: number; end: number; text: string; speaker: string }[] = [];
      for (const word of words) {
        const speaker = label(word.speaker);
        const last = segments.at(-1);
        if (last && last.speaker === speaker) {
          last.end = word.end;
          last.text += ` ${word.word}`;
        } else segments.push({ type: 'transcript.text.segment', id: `seg_${segments.length + 1}`, start: word.start, end: word.end, text: word.word, speaker });
      }
      return { task: 'transcribe', duration: Math.round(seconds * 100) / 100, text, segments: this.options.noSpeakers ? [] : segments, usage: { type: 'duration', seconds: Math.ceil(seconds) } };
    }
    if (a.responseFormat === 'json') {
      if (dialect === 'openai-text-only') {
        const tokens = Math.ceil(text.length / 4);
        return { text, usage: { type: 'tokens', input_tokens: Math.ceil(seconds * 10), input_token_details: { text_tokens: 0, audio_tokens: Math.ceil(seconds * 10) }, output_tokens: tokens, total_tokens: tokens + Math.ceil(seconds * 10) } };
      }
      return dialect === 'openai' || dialect === 'groq' ? { text, usage: { type: 'duration', seconds: Math.ceil(seconds) }, ...(dialect === 'groq' ? { x_groq: { id: `req_${this.calls.length}` } } : {}) } : { text };
    }
    const round = (n: number) => Math.round(n * 100) / 100;
    const segment = (id: number, extra: Record<string, unknown>) => ({
      id, seek: 0, start: words[0]?.start ?? 0, end: words.at(-1)?.end ?? seconds, text: ` ${text}`, tokens: [], temperature: 0, ...a.segmentMetrics, ...extra,
    });
    const wordList = a.disordered ? words.map((w, i) => ({ ...w, start: Math.max(0, w.start - (i % 2) * 0.05), end: w.end + 0.05 })).reverse() : words;
    const withWords = a.granularities.includes('word');
    switch (dialect) {
      case 'whisper-cpp': {
        // No top-level words; each segment's `words` are sub-word tokens, and no no_speech_prob or compression_ratio.
        const { avg_logprob } = a.segmentMetrics;
        return {
          task: 'transcribe', language: LANGUAGE_NAMES[a.language ?? 'en'] ?? 'english', duration: seconds, text,
          segments: text ? [{ id: 0, text: ` ${text}`, start: words[0]?.start ?? 0, end: words.at(-1)?.end ?? seconds, tokens: [], words: subwordTokens(wordList), temperature: 0, avg_logprob }] : [],
        };
      }
      case 'vllm':
        // Timestamps per segment only; `duration` is a string in its schema.
        return { duration: String(round(seconds)), language: a.language ?? 'en', text, segments: text ? [segment(0, {})] : [], words: null };
      case 'speaches': {
        const spaced = wordList.map((w) => ({ start: w.start, end: w.end, word: ` ${w.word}`, probability: 0.91 }));
        return {
          task: 'transcribe', language: a.language ?? 'en', duration: round(seconds), text,
          words: withWords ? spaced : null,
          segments: text ? [segment(0, { words: withWords ? spaced : null })] : [],
        };
      }
      default: {
        const body: Record<string, unknown> = {
          task: 'transcribe', language: LANGUAGE_NAMES[a.language ?? 'en'] ?? 'english', duration: round(seconds), text,
          ...(dialect === 'groq' ? { x_groq: { id: `req_${this.calls.length}` } } : { usage: { type: 'duration', seconds: Math.ceil(seconds) } }),
        };
        if (withWords) body.words = text ? wordList : [];
        if (a.granularities.includes('segment')) body.segments = text ? [segment(0, {})] : [];
        return body;
      }
    }
  }
}
