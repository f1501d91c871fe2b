/**
 * The configured recognizer, connected: its client (OpenAI-compatible or Azure), its capability profile
 * (configured, or probed at start), and start-up that fails with one clear line when the probe shows
 * the configuration cannot work (a wrong key, model, deployment or URL). A recognizer that could not be
 * reached at start is assumed to give `verbose_json`; if it later refuses that format, it is probed
 * again and the request repeated in the format it takes.
 */
import { access, constants } from 'node:fs/promises';
import type OpenAI from 'openai';
import { ConfigError } from '../config.ts';
import type { Logger } from '../log.ts';
import {
  createSttClient,
  OpenAiTranscriber,
  probeRecognizer,
  RecognizerRefused,
  type RecognizerCapabilities,
  type ResponseFormat,
  type SttClientOptions,
  type Transcriber,
  type Transcription,
  type TranscriptionRequest,
} from './transcriber.ts';

export interface RecognizerSettings {
  client: SttClientOptions;
  model: string;
  responseFormat: ResponseFormat | 'auto';
  wordTimestamps: boolean;
  acceptsPrompt: boolean;
  maxFileBytes: number;
  language: string | undefined;
  prompt: string | undefined;
  /** While the recognizer refuses requests, one waiting final tries again this often. */
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
  /** The profile is the probe's answer, not an assumption. */
  private probed: boolean;

  private constructor(client: OpenAI, settings: RecognizerSettings, capabilities: RecognizerCapabilities, probed: boolean, log: Logger) {
    this.client = client;
    this.settings = settings;
    this.log = log;
    this.probed = probed;
    this.transcriber = new OpenAiTranscriber(client, { model: settings.model, capabilities });
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
      prompt: settings.acceptsPrompt,
      maxFileBytes: settings.maxFileBytes,
    };
    if (settings.responseFormat !== 'auto') return new Recognizer(client, settings, configured, false, log);
    const result = await probeRecognizer(client, { ...settings, prompt: settings.acceptsPrompt ? settings.prompt : undefined });
    if ('refused' in result) {
      throw new ConfigError(`the recognizer at ${describe(settings.client)} refuses this configuration (model ${settings.model}): ${result.refused.message}`);
    }
    if ('unreachable' in result) {
      log.warn({ err: result.unreachable, recognizer: describe(settings.client) }, 'STT probe failed: the recognizer could not be reached; assuming verbose_json until it answers');
      return new Recognizer(client, settings, configured, false, log);
    }
    log.info({ recognizer: describe(settings.client), model: settings.model, ...result.capabilities }, 'STT recognizer probed');
    if (settings.prompt && !result.capabilities.prompt) log.warn('the recognizer refuses prompts: STT_PROMPT is not sent');
    return new Recognizer(client, settings, result.capabilities, true, log);
  }

  /** Whether the recognizer takes requests again (after refusing them): one probe; throws its refusal if not. */
  async recheck(): Promise<void> {
    const result = await probeRecognizer(this.client, { ...this.settings, prompt: this.settings.acceptsPrompt ? this.settings.prompt : undefined });
    if ('refused' in result) throw result.refused;
    if ('unreachable' in result) throw result.unreachable;
    this.probed = true;
    this.transcriber = new OpenAiTranscriber(this.client, { model: this.settings.model, capabilities: result.capabilities });
    this.log.info({ ...result.capabilities }, 'STT recognizer takes requests again');
  }

  async transcribe(request: TranscriptionRequest): Promise<Transcription> {
    try {
      return await this.transcriber.transcribe(request);
    } catch (error) {
      // A format assumed, not probed, and now refused: learn what the recognizer takes, and ask again.
      if (!(error instanceof RecognizerRefused) || error.status !== 400 || this.probed) throw error;
      const result = await probeRecognizer(this.client, { ...this.settings, prompt: this.settings.acceptsPrompt ? this.settings.prompt : undefined });
      if (!result.ok) throw error;
      this.probed = true;
      this.log.info({ ...result.capabilities }, 'STT recognizer probed after a refusal');
      this.transcriber = new OpenAiTranscriber(this.client, { model: this.settings.model, capabilities: result.capabilities });
      return this.transcriber.transcribe(request);
    }
  }
}
