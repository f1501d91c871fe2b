/**
 * The configured recognizer, connected: its client (OpenAI-compatible or Azure), its capability profile
 * (configured, or probed at start), and start-up that fails with one clear line when the probe shows
 * the configuration cannot work (a wrong key, model, deployment or URL). A recognizer that could not be
 * reached at start (or whose format is configured) is assumed to give that format; if it later refuses
 * it, the window transcriber's check at once (`recheck`, a probe) adopts the format it takes.
 */
import { access, constants } from 'node:fs/promises';
import type OpenAI from 'openai';
import { ConfigError } from '../config.ts';
import type { Logger } from '../log.ts';
import {
  createSttClient,
  OpenAiTranscriber,
  probeRecognizer,
  type RecognizerCapabilities,
  type ResponseFormat,
  type SttClientOptions,
  type Transcriber,
  type Transcription,
  type TranscriptionRequest,
} from './transcriber.ts';

/** What the probe prompts with when no STT_PROMPT is configured. */
const PROBE_PROMPT = 'A medical consultation.';

export interface RecognizerSettings {
  client: SttClientOptions;
  model: string;
  responseFormat: ResponseFormat | 'auto';
  wordTimestamps: boolean;
  acceptsPrompt: boolean;
  maxFileBytes: number;
  language: string | undefined;
  prompt: string | undefined;
  /** While the recognizer refuses requests, one probe checks this often whether it takes them again. */
  recheckMs: number;
}

/** Where the recognizer lives, for messages (never its key). */
function describe(client: SttClientOptions): string {
  return client.api === 'azure' ? `Azure OpenAI ${client.endpoint} (deployment ${client.deployment})` : client.baseURL;
}

export class Recognizer implements Transcriber {
  private transcriber: OpenAiTranscriber;
  private readonly client: OpenAI;
  private readonly settings: RecognizerSettings;
  private readonly log: Logger;

  private constructor(client: OpenAI, settings: RecognizerSettings, capabilities: RecognizerCapabilities, log: Logger) {
    this.client = client;
    this.settings = settings;
    this.log = log;
    this.transcriber = new OpenAiTranscriber(client, { model: settings.model, capabilities });
  }

  /**
   * The probe with this recognizer's settings. Windows go with a prompt (the clinical defaults at least)
   * unless prompts are configured off, so the probe always sends one: a model that refuses prompts is
   * found out at start, not by its first window.
   */
  private static probe(client: OpenAI, settings: RecognizerSettings): ReturnType<typeof probeRecognizer> {
    return probeRecognizer(client, { ...settings, prompt: settings.acceptsPrompt ? settings.prompt ?? PROBE_PROMPT : undefined });
  }

  get capabilities(): RecognizerCapabilities {
    return this.transcriber.capabilities;
  }

  /** Connects to the configured recognizer; throws ConfigError when its probe shows the configuration cannot work. */
  static async connect(settings: RecognizerSettings, log: Logger): Promise<Recognizer> {
    const tokenFile = settings.client.api === 'azure' ? settings.client.adTokenFile : undefined;
    if (tokenFile) {
      await access(tokenFile, constants.R_OK).catch((error: Error) => {
        throw new ConfigError(`invalid configuration:\n  AZURE_OPENAI_AD_TOKEN_FILE: cannot read ${tokenFile} (${error.message})`);
      });
    }
    const client = createSttClient(settings.client);
    const configured: RecognizerCapabilities = {
      responseFormat: settings.responseFormat === 'auto' ? 'verbose_json' : settings.responseFormat,
      wordTimestamps: settings.wordTimestamps,
      // A diarizing model refuses prompts (HTTP 400): configured as one, it is sent none.
      prompt: settings.acceptsPrompt && settings.responseFormat !== 'diarized_json',
      maxFileBytes: settings.maxFileBytes,
    };
    if (settings.responseFormat !== 'auto') return new Recognizer(client, settings, configured, log);
    const result = await Recognizer.probe(client, settings);
    if ('refused' in result) {
      throw new ConfigError(`the recognizer at ${describe(settings.client)} refuses this configuration (model ${settings.model}): ${result.refused.message}`);
    }
    if ('unreachable' in result) {
      log.warn({ err: result.unreachable, recognizer: describe(settings.client) }, 'STT probe failed: the recognizer could not be reached; assuming verbose_json until it answers');
      return new Recognizer(client, settings, configured, log);
    }
    log.info({ recognizer: describe(settings.client), model: settings.model, ...result.capabilities }, 'STT recognizer probed');
    if (settings.acceptsPrompt && !result.capabilities.prompt) log.warn('the recognizer refuses prompts: windows go without the clinical prompt and vocabulary');
    return new Recognizer(client, settings, result.capabilities, log);
  }

  /**
   * Whether the recognizer takes requests (after refusing one): one probe, whose profile is adopted —
   * so a format assumed or configured and then refused is replaced by the one it takes. Throws the
   * refusal, or the outage, if not.
   */
  async recheck(): Promise<void> {
    const result = await Recognizer.probe(this.client, this.settings);
    if ('refused' in result) throw result.refused;
    if ('unreachable' in result) throw result.unreachable;
    this.transcriber = new OpenAiTranscriber(this.client, { model: this.settings.model, capabilities: result.capabilities });
    this.log.info({ ...result.capabilities }, 'STT recognizer takes requests');
  }

  transcribe(request: TranscriptionRequest): Promise<Transcription> {
    return this.transcriber.transcribe(request);
  }
}
