import { CaptionWatcher, type WatchOptions } from './captions.ts';
import { startProducer, type Producer, type StreamOptions } from './producer.ts';

export interface ClientOptions {
  /** The gateway, e.g. `https://transcribe.clinic.example`. */
  baseUrl: string;
  /** A JWT from the clinic's backend (role producer, viewer or service). */
  token: string;
}

export class HelssaClient {
  readonly baseUrl: string;
  readonly token: string;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/$/, '');
    this.token = options.token;
  }

  /** Streams a microphone into a session track: WHIP (WebRTC) first, the WebSocket ingest if that fails. */
  stream(media: MediaStream, options: StreamOptions): Promise<Producer> {
    return startProducer(this.baseUrl, this.token, media, options);
  }

  /** Live captions of a session; reconnects by itself and never repeats or skips a final. */
  watchCaptions(sessionId: string, options: WatchOptions): CaptionWatcher {
    return new CaptionWatcher(this.baseUrl, this.token, sessionId, options);
  }

  /** The finalized transcript (after the session ended): JSON, or text / WebVTT / SRT as a string. */
  async transcript(sessionId: string, format: 'json' | 'text' | 'vtt' | 'srt' = 'json'): Promise<unknown> {
    const response = await fetch(`${this.baseUrl}/v1/sessions/${encodeURIComponent(sessionId)}/transcript?format=${format}`, { headers: { authorization: `Bearer ${this.token}` } });
    if (!response.ok) throw new Error(`transcript: HTTP ${response.status} ${await response.text()}`);
    return format === 'json' ? response.json() : response.text();
  }
}
