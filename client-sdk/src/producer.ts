/**
 * Streaming a microphone. WHIP (RFC 9725): the browser's RTCPeerConnection sends Opus over SRTP to the
 * gateway; the offer goes up with every ICE candidate gathered. When WebRTC cannot connect (UDP blocked,
 * no WebRTC in the browser) the SDK falls back to the WebSocket ingest: Opus packets from WebCodecs (or
 * PCM16 without it), captured from the start so the speech during the WebRTC attempt is sent too, and
 * kept until the gateway acknowledges them so a network drop loses nothing (ResumableIngest).
 */
import { RESUME_TOKEN_HEADER } from './protocol.ts';
import { OPUS_FRAMES, pcm16Frames, ResumableIngest, type FrameFormat } from './resumable-ingest.ts';

export type Transport = 'webrtc' | 'websocket';

export interface StreamOptions {
  sessionId: string;
  trackId: string;
  role: 'doctor' | 'patient';
  participant?: string;
  language?: string;
  /**
   * The device hears several people (a phone on the desk between doctor and patient): the gateway tells
   * them apart, at most `speakers` (default 2), and labels each final with its speaker and role.
   */
  diarize?: boolean;
  speakers?: number;
  /** `auto` (default): WHIP, then the WebSocket if WebRTC fails. */
  transport?: 'auto' | Transport;
  /** STUN/TURN servers for WebRTC (the gateway's own list is in its WHIP answer's Link headers). */
  iceServers?: RTCIceServer[];
  /** How long WebRTC may take to connect before falling back. Default 8000 ms. */
  connectTimeoutMs?: number;
  /**
   * WebSocket ingest: audio kept while the gateway cannot be reached, resent when the connection resumes.
   * Default 60000 ms (about 240 KB of Opus), the gateway's default INGEST_BURST_MS.
   */
  maxBufferMs?: number;
  /** Connection changes, for the UI. `reconnecting`: the network dropped; audio is kept and resent. */
  onState?: (state: 'connecting' | 'streaming' | 'reconnecting' | 'fallback' | 'stopped' | 'failed', detail?: string) => void;
}

export interface Producer {
  readonly transport: Transport;
  /** Stops sending; the gateway transcribes what it has and ends the track. */
  stop(): Promise<void>;
}

export async function startProducer(baseUrl: string, token: string, media: MediaStream, options: StreamOptions): Promise<Producer> {
  const mode = options.transport ?? 'auto';
  options.onState?.('connecting');
  // While WebRTC is tried, the capture already runs: if it fails, no word spoken meanwhile is lost.
  const capture = mode === 'webrtc' ? undefined : await startCapture(media);
  if (mode !== 'websocket') {
    try {
      const producer = await startWhip(baseUrl, token, media, options);
      await capture?.stop();
      options.onState?.('streaming', 'webrtc');
      return producer;
    } catch (error) {
      if (mode === 'webrtc') {
        options.onState?.('failed', (error as Error).message);
        throw error;
      }
      options.onState?.('fallback', (error as Error).message);
    }
  }
  if (!capture) throw new Error('this browser cannot capture audio (no AudioWorklet)');
  const producer = await startWebSocket(baseUrl, token, capture, options);
  options.onState?.('streaming', 'websocket');
  return producer;
}

/** Captures 20 ms frames of the microphone at 48 kHz on the audio thread and posts them to the page. */
const CAPTURE_WORKLET = `
class HelssaCapture extends AudioWorkletProcessor {
  constructor() { super(); this.frame = new Float32Array(960); this.filled = 0; }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      this.frame[this.filled++] = channel[i];
      if (this.filled === 960) { this.port.postMessage(this.frame, [this.frame.buffer]); this.frame = new Float32Array(960); this.filled = 0; }
    }
    return true;
  }
}
registerProcessor('helssa-capture', HelssaCapture);
`;

const OPUS_CONFIG: AudioEncoderConfig = { codec: 'opus', sampleRate: 48000, numberOfChannels: 1, bitrate: 32000, opus: { frameDuration: 20000 } };

interface Capture {
  format: FrameFormat;
  /** Set once the ingest exists; frames captured before are kept in `buffered`, in order. */
  onFrame: ((payload: Uint8Array, durationMs: number) => void) | undefined;
  buffered: { payload: Uint8Array; durationMs: number }[];
  /** Stops the microphone capture and hands over the frames the encoder still holds. */
  stop(): Promise<void>;
}

/**
 * The microphone as 20 ms frames: Opus packets from WebCodecs' AudioEncoder (32 kbit/s), or 48 kHz PCM16
 * where the browser has no Opus encoder. Started before WebRTC is tried, so nothing said meanwhile is lost.
 */
async function startCapture(media: MediaStream): Promise<Capture | undefined> {
  if (typeof AudioWorkletNode === 'undefined') return undefined;
  const context = new AudioContext({ sampleRate: 48000 });
  const moduleUrl = URL.createObjectURL(new Blob([CAPTURE_WORKLET], { type: 'text/javascript' }));
  await context.audioWorklet.addModule(moduleUrl);
  URL.revokeObjectURL(moduleUrl);
  const source = context.createMediaStreamSource(media);
  const node = new AudioWorkletNode(context, 'helssa-capture');
  source.connect(node);
  // Connected to the output (silent: the processor writes nothing) so the graph pulls it.
  node.connect(context.destination);
  // Not awaited: without a user gesture (an autostarting page) it waits for the first one.
  void context.resume();
  const opus = typeof AudioEncoder !== 'undefined' && (await AudioEncoder.isConfigSupported(OPUS_CONFIG)).supported === true;
  const capture: Capture = {
    format: opus ? OPUS_FRAMES : pcm16Frames(48000),
    onFrame: undefined,
    buffered: [],
    async stop() {
      node.port.onmessage = null;
      source.disconnect();
      await context.close();
      if (encoder && encoder.state === 'configured') await encoder.flush();
    },
  };
  const emit = (payload: Uint8Array, durationMs: number) => {
    if (capture.onFrame) capture.onFrame(payload, durationMs);
    else capture.buffered.push({ payload, durationMs });
  };
  let encoder: AudioEncoder | undefined;
  let timestamp = 0;
  if (opus) {
    encoder = new AudioEncoder({
      output: (chunk) => {
        const packet = new Uint8Array(chunk.byteLength);
        chunk.copyTo(packet);
        emit(packet, (chunk.duration ?? 20000) / 1000);
      },
      error: () => undefined,
    });
    encoder.configure(OPUS_CONFIG);
  }
  node.port.onmessage = (event: MessageEvent<Float32Array<ArrayBuffer>>) => {
    const samples = event.data;
    if (encoder) {
      const data = new AudioData({ format: 'f32', sampleRate: 48000, numberOfFrames: samples.length, numberOfChannels: 1, timestamp, data: samples });
      timestamp += 20000;
      encoder.encode(data);
      data.close();
      return;
    }
    const pcm = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32767)));
    emit(new Uint8Array(pcm.buffer), 20);
  };
  return capture;
}

function trackQuery(token: string, options: StreamOptions): URLSearchParams {
  const query = new URLSearchParams({ role: options.role, access_token: token });
  if (options.participant) query.set('participant', options.participant);
  if (options.language) query.set('language', options.language);
  if (options.diarize) query.set('diarize', 'true');
  if (options.speakers) query.set('speakers', String(options.speakers));
  return query;
}

interface WhipSession {
  pc: RTCPeerConnection;
  location: string;
  resumeToken: string | null;
}

/** Longest pause between two attempts to re-establish a failed WebRTC connection. */
const WHIP_MAX_BACKOFF_MS = 5000;

/**
 * WHIP. A peer connection that fails after it was up (the network changed) is replaced by a new WHIP
 * session presenting the track's resume token: the gateway continues the track and its open utterance.
 * WebRTC cannot resend what was said while it was down (the WebSocket ingest can).
 */
async function startWhip(baseUrl: string, token: string, media: MediaStream, options: StreamOptions): Promise<Producer> {
  if (typeof RTCPeerConnection === 'undefined') throw new Error('this browser has no WebRTC');
  const [audio] = media.getAudioTracks();
  if (!audio) throw new Error('the stream has no audio track');
  let current = await negotiateWhip(baseUrl, token, audio, options, undefined);
  let stopped = false;
  let attempts = 0;
  const watch = (session: WhipSession) => {
    session.pc.addEventListener('connectionstatechange', () => {
      if (stopped || session !== current || session.pc.connectionState !== 'failed') return;
      options.onState?.('reconnecting', 'WebRTC connection lost');
      void reconnect();
    });
  };
  const reconnect = async (): Promise<void> => {
    const previous = current;
    while (!stopped) {
      try {
        const next = await negotiateWhip(baseUrl, token, audio, options, previous.resumeToken ?? undefined);
        previous.pc.close();
        if (stopped) {
          await fetch(next.location, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
          next.pc.close();
          return;
        }
        current = next;
        attempts = 0;
        watch(next);
        options.onState?.('streaming', 'webrtc');
        return;
      } catch (error) {
        options.onState?.('reconnecting', (error as Error).message);
        const backoff = Math.min(WHIP_MAX_BACKOFF_MS, 250 * 2 ** attempts++) * (0.5 + Math.random() / 2);
        await new Promise((resolve) => setTimeout(resolve, backoff));
      }
    }
  };
  watch(current);
  return {
    transport: 'webrtc',
    async stop() {
      stopped = true;
      await fetch(current.location, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
      current.pc.close();
      options.onState?.('stopped');
    },
  };
}

/** One WHIP session: offer with every ICE candidate, answer, and wait for the connection. */
async function negotiateWhip(baseUrl: string, token: string, audio: MediaStreamTrack, options: StreamOptions, resume: string | undefined): Promise<WhipSession> {
  const pc = new RTCPeerConnection({ iceServers: options.iceServers ?? [] });
  pc.addTransceiver(audio, { direction: 'sendonly' });
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise<void>((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 3000);
    });
    const path = `/v1/sessions/${encodeURIComponent(options.sessionId)}/tracks/${encodeURIComponent(options.trackId)}/whip`;
    const query = trackQuery(token, options);
    if (resume) query.set('resume', resume);
    const response = await fetch(`${baseUrl}${path}?${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
      body: pc.localDescription!.sdp,
    });
    if (response.status !== 201) throw new Error(`WHIP offer refused: HTTP ${response.status} ${await response.text()}`);
    const location = new URL(response.headers.get('location')!, baseUrl).toString();
    const resumeToken = response.headers.get(RESUME_TOKEN_HEADER);
    await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('WebRTC did not connect in time')), options.connectTimeoutMs ?? 8000);
      const check = () => {
        if (pc.connectionState === 'connected') (clearTimeout(timer), resolve());
        if (pc.connectionState === 'failed') (clearTimeout(timer), reject(new Error('WebRTC connection failed')));
      };
      pc.addEventListener('connectionstatechange', check);
      check();
    }).catch(async (error) => {
      // A resumed session is not deleted (that would end the track): the gateway keeps the track waiting.
      if (!resume) await fetch(location, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
      throw error;
    });
    return { pc, location, resumeToken };
  } catch (error) {
    pc.close();
    throw error;
  }
}

async function startWebSocket(baseUrl: string, token: string, capture: Capture, options: StreamOptions): Promise<Producer> {
  const url = `${baseUrl.replace(/^http/, 'ws')}/v1/sessions/${encodeURIComponent(options.sessionId)}/tracks/${encodeURIComponent(options.trackId)}/ingest?${trackQuery(token, options)}`;
  let opened!: () => void;
  let refused!: (error: Error) => void;
  const connected = new Promise<void>((resolve, reject) => ((opened = resolve), (refused = reject)));
  const ingest = new ResumableIngest({
    url,
    format: capture.format,
    WebSocket,
    maxBufferMs: options.maxBufferMs,
    onState: (state, detail) => {
      if (state === 'live') opened();
      if (state === 'failed') refused(new Error(`ingest closed: ${detail}`));
      options.onState?.(state === 'live' ? 'streaming' : state, detail);
    },
  });
  for (const frame of capture.buffered.splice(0)) ingest.push(frame.payload, frame.durationMs);
  capture.onFrame = (payload, durationMs) => ingest.push(payload, durationMs);
  await connected;
  return {
    transport: 'websocket',
    async stop() {
      await capture.stop();
      await ingest.end();
    },
  };
}
