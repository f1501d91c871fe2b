/**
 * The speech-to-text provider behind a small interface, and its adapter for every OpenAI-compatible
 * recognizer: OpenAI, Azure OpenAI (its client from the `openai` package), and self-hosted servers
 * (speaches, vLLM, whisper.cpp's server, LocalAI) or Groq through a base URL. What a recognizer can do
 * (response format, prompt, largest file) is its capability profile: configured, or found at start by a
 * probe of one short request (`probeRecognizer`). Retries with backoff on 429/5xx/time-outs and the
 * per-call time-out are the `openai` package's own; a refusal that retrying cannot change (400, 401,
 * 403, 404, 413, 415, 422, or an answer that is not a transcription) is a `RecognizerRefused`.
 */
import { readFile, stat } from 'node:fs/promises';
import OpenAI, { APIError, AzureOpenAI, toFile } from 'openai';
import { encodeCompressed } from '../audio/media-encoder.ts';
import { encodeWav } from '../audio/wav.ts';
import { readAnswer, RecognizerRefused, type ResponseFormat, type Transcription } from './recognizer-answer.ts';

export { RecognizerRefused, type ResponseFormat, type TranscribedSegment, type TranscribedWord, type Transcription } from './recognizer-answer.ts';

export interface TranscriptionRequest {
  audio: Int16Array;
  sampleRate: number;
  language?: string;
  prompt?: string;
  /** The file's name without its extension, as the recognizer's logs show it. Default `window`. */
  name?: string;
  /** For a diarizing model: voices it should label by name (each clip 2–10 s, up to 4). */
  knownSpeakers?: readonly KnownSpeaker[];
}

/** A voice a diarizing model labels by name: a short clip of it, 16 kHz PCM. */
export interface KnownSpeaker {
  name: string;
  audio: Int16Array;
}

export interface Transcriber {
  transcribe(request: TranscriptionRequest): Promise<Transcription>;
}

/** What one recognizer accepts, so the gateway asks only for what it can give. */
export interface RecognizerCapabilities {
  responseFormat: ResponseFormat;
  /** Ask for word timestamps (`timestamp_granularities[]=word`, with `verbose_json` only). */
  wordTimestamps: boolean;
  /** Whether the recognizer takes a `prompt` (gpt-4o-transcribe-diarize refuses one with a 400). */
  prompt: boolean;
  /** Largest file it accepts (OpenAI, Azure, Groq's free tier, vLLM's default: 25 MB). */
  maxFileBytes: number;
}

export type SttClientOptions =
  | { api: 'openai'; baseURL: string; apiKey: string; timeoutMs: number; maxRetries: number }
  | {
      api: 'azure';
      endpoint: string;
      deployment: string;
      apiVersion: string;
      /** The `api-key` header; or `adTokenFile`, a file holding a Microsoft Entra access token (kept fresh by its owner). */
      apiKey?: string;
      adTokenFile?: string;
      timeoutMs: number;
      maxRetries: number;
    };

/** A Microsoft Entra token read from a file, read again when the file changes (a sidecar renews it). */
function tokenFileProvider(path: string): () => Promise<string> {
  let cached: { mtimeMs: number; token: string } | undefined;
  return async () => {
    const { mtimeMs } = await stat(path);
    if (cached?.mtimeMs !== mtimeMs) cached = { mtimeMs, token: (await readFile(path, 'utf8')).trim() };
    return cached.token;
  };
}

export function createSttClient(options: SttClientOptions): OpenAI {
  const common = { timeout: options.timeoutMs, maxRetries: options.maxRetries };
  if (options.api === 'openai') return new OpenAI({ baseURL: options.baseURL, apiKey: options.apiKey, ...common });
  return new AzureOpenAI({
    endpoint: options.endpoint,
    deployment: options.deployment,
    apiVersion: options.apiVersion,
    ...(options.apiKey ? { apiKey: options.apiKey } : { azureADTokenProvider: tokenFileProvider(options.adTokenFile!) }),
    ...common,
  });
}

/** Statuses no retry can change. 408, 409, 429 and 5xx are an outage and retried. */
const PERMANENT_STATUSES = new Set([400, 401, 403, 404, 405, 413, 415, 422]);

/** The recognizer's own words for a refusal, whatever shape its error body has. */
function refusal(error: unknown): unknown {
  if (!(error instanceof APIError) || error.status === undefined || !PERMANENT_STATUSES.has(error.status)) return error;
  const body = error.error as { message?: unknown; detail?: unknown; error?: unknown } | string | undefined;
  const detail = typeof body === 'string' ? body : typeof body?.message === 'string' ? body.message : body?.detail ?? body?.error ?? error.message;
  const text = typeof detail === 'string' ? detail : JSON.stringify(detail);
  return new RecognizerRefused(`the recognizer refused the request (${error.status}): ${text.slice(0, 300)}`, error.status);
}

/** 16 kHz PCM as the smallest of WAV, FLAC and Ogg Opus that fits the recognizer's file limit. */
async function audioFile(audio: Int16Array, sampleRate: number, maxBytes: number, name: string): Promise<{ bytes: Uint8Array; name: string; type: string }> {
  const wav = encodeWav(audio, sampleRate);
  if (wav.length <= maxBytes) return { bytes: wav, name: `${name}.wav`, type: 'audio/wav' };
  const flac = await encodeCompressed(audio, sampleRate, 'flac');
  if (flac.length <= maxBytes) return { bytes: flac, name: `${name}.flac`, type: 'audio/flac' };
  const opus = await encodeCompressed(audio, sampleRate, 'ogg');
  if (opus.length <= maxBytes) return { bytes: opus, name: `${name}.ogg`, type: 'audio/ogg' };
  throw new RecognizerRefused(`a window of ${Math.round(audio.length / sampleRate)} s is ${opus.length} bytes even as Opus, above the recognizer's limit of ${maxBytes}`, 413);
}

export interface OpenAiTranscriberOptions {
  model: string;
  capabilities: RecognizerCapabilities;
}

export class OpenAiTranscriber implements Transcriber {
  private readonly client: OpenAI;
  private readonly options: OpenAiTranscriberOptions;

  constructor(client: OpenAI, options: OpenAiTranscriberOptions) {
    this.client = client;
    this.options = options;
  }

  get capabilities(): RecognizerCapabilities {
    return this.options.capabilities;
  }

  async transcribe(request: TranscriptionRequest): Promise<Transcription> {
    const { responseFormat, wordTimestamps, prompt, maxFileBytes } = this.options.capabilities;
    const audio = await audioFile(request.audio, request.sampleRate, maxFileBytes, request.name ?? 'window');
    const diarizing = responseFormat === 'diarized_json';
    const known = diarizing ? (request.knownSpeakers ?? []).slice(0, 4) : [];
    const body = {
      file: await toFile(audio.bytes, audio.name, { type: audio.type }),
      model: this.options.model,
      response_format: responseFormat,
      // Required above 30 s of audio by gpt-4o-transcribe-diarize; the server then cuts at its own pauses.
      ...(diarizing ? { chunking_strategy: 'auto' } : {}),
      ...(known.length > 0
        ? { known_speaker_names: known.map((k) => k.name), known_speaker_references: known.map((k) => `data:audio/wav;base64,${Buffer.from(encodeWav(k.audio, request.sampleRate)).toString('base64')}`) }
        : {}),
      ...(responseFormat === 'verbose_json' && wordTimestamps ? { timestamp_granularities: ['word', 'segment'] as ('word' | 'segment')[] } : {}),
      ...(request.language ? { language: request.language } : {}),
      ...(prompt && request.prompt ? { prompt: request.prompt } : {}),
    };
    let answer: unknown;
    try {
      answer = await this.client.audio.transcriptions.create(body as Parameters<OpenAI['audio']['transcriptions']['create']>[0]);
    } catch (error) {
      throw error instanceof SyntaxError ? new RecognizerRefused(`the recognizer's answer is not valid JSON: ${error.message}`, 200) : refusal(error);
    }
    return readAnswer(answer, responseFormat);
  }
}

export interface ProbeOptions {
  model: string;
  /** Asked for when the recognizer takes it. */
  wordTimestamps: boolean;
  /** The configured prompt: the probe sends it, to learn whether the recognizer takes prompts. */
  prompt?: string;
  language?: string;
  maxFileBytes: number;
}

export type ProbeResult =
  | { ok: true; capabilities: RecognizerCapabilities }
  /** Nothing the gateway can ask for works: the configuration cannot work. */
  | { ok: false; refused: RecognizerRefused }
  /** The recognizer could not be reached or failed (an outage, not a refusal). */
  | { ok: false; unreachable: Error };

/** One second of near-silence, the smallest request every recognizer accepts. */
function probeAudio(): Int16Array {
  const samples = new Int16Array(16000);
  let seed = 1;
  for (let i = 0; i < samples.length; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    samples[i] = (seed % 33) - 16;
  }
  return samples;
}

/**
 * Finds the richest response format the recognizer gives, and whether it takes a prompt, with as few
 * requests as possible (one when the first form is accepted): `diarized_json` for a diarizing model, then
 * `verbose_json` with word timestamps, then without them, then `json`, then `text`. A 401/403/404 ends the probe at once: no format changes that.
 */
export async function probeRecognizer(client: OpenAI, options: ProbeOptions): Promise<ProbeResult> {
  const quick = client.withOptions({ maxRetries: 0 });
  const forms: Pick<RecognizerCapabilities, 'responseFormat' | 'wordTimestamps'>[] = [
    // A diarizing model (gpt-4o-transcribe-diarize) is asked for its speakers first.
    ...(/diariz/i.test(options.model) ? [{ responseFormat: 'diarized_json' as const, wordTimestamps: false }] : []),
    ...(options.wordTimestamps ? [{ responseFormat: 'verbose_json' as const, wordTimestamps: true }] : []),
    { responseFormat: 'verbose_json', wordTimestamps: false },
    { responseFormat: 'json', wordTimestamps: false },
    { responseFormat: 'text', wordTimestamps: false },
  ];
  let prompt = options.prompt !== undefined;
  let last: RecognizerRefused | undefined;
  const audio = probeAudio();
  for (let i = 0; i < forms.length; i++) {
    const capabilities: RecognizerCapabilities = { ...forms[i], prompt, maxFileBytes: options.maxFileBytes };
    const transcriber = new OpenAiTranscriber(quick, { model: options.model, capabilities });
    try {
      await transcriber.transcribe({ audio, sampleRate: 16000, language: options.language, prompt: options.prompt, name: 'probe' });
      return { ok: true, capabilities };
    } catch (error) {
      if (!(error instanceof RecognizerRefused)) return { ok: false, unreachable: error as Error };
      last = error;
      if (error.status === 401 || error.status === 403 || error.status === 404) break;
      // A refusal that names the prompt: the same form again, without one.
      if (prompt && /prompt/i.test(error.message)) {
        prompt = false;
        i--;
      }
    }
  }
  return { ok: false, refused: last! };
}
