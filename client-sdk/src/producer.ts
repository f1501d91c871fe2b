/**
 * Streaming a microphone. WHIP (RFC 9725): the browser's RTCPeerConnection sends Opus over SRTP to the
 * gateway; the offer goes up with every ICE candidate gathered. When WebRTC cannot connect (UDP blocked,
 * no WebRTC in the browser) the SDK falls back to the WebSocket ingest, with MediaRecorder's WebM/Opus,
 * recorded from the start so the speech during the WebRTC attempt is sent too.
 */
export type Transport = 'webrtc' | 'websocket';

export interface StreamOptions {
  sessionId: string;
  trackId: string;
  role: 'doctor' | 'patient';
  participant?: string;
  language?: string;
  /** `auto` (default): WHIP, then the WebSocket if WebRTC fails. */
  transport?: 'auto' | Transport;
  /** STUN/TURN servers for WebRTC (the gateway's own list is in its WHIP answer's Link headers). */
  iceServers?: RTCIceServer[];
  /** How long WebRTC may take to connect before falling back. Default 8000 ms. */
  connectTimeoutMs?: number;
  /** Connection changes, for the UI. */
  onState?: (state: 'connecting' | 'streaming' | 'fallback' | 'stopped' | 'failed', detail?: string) => void;
}

export interface Producer {
  readonly transport: Transport;
  /** Stops sending; the gateway transcribes what it has and ends the track. */
  stop(): Promise<void>;
}

export async function startProducer(baseUrl: string, token: string, media: MediaStream, options: StreamOptions): Promise<Producer> {
  const mode = options.transport ?? 'auto';
  options.onState?.('connecting');
  // While WebRTC is tried, the recorder already runs: if it fails, no word spoken meanwhile is lost.
  const recording = mode === 'webrtc' ? undefined : startRecording(media);
  if (mode !== 'websocket') {
    try {
      const producer = await startWhip(baseUrl, token, media, options);
      recording?.discard();
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
  if (!recording) throw new Error('this browser cannot record WebM/Opus');
  const producer = await startWebSocket(baseUrl, token, recording, options);
  options.onState?.('streaming', 'websocket');
  return producer;
}

const RECORDING_TYPE = 'audio/webm;codecs=opus';

interface Recording {
  recorder: MediaRecorder;
  /** Chunks recorded before the socket is there, in order. */
  buffered: Blob[];
  onChunk: ((chunk: Blob) => void) | undefined;
  discard(): void;
}

function startRecording(media: MediaStream): Recording | undefined {
  if (typeof MediaRecorder === 'undefined' || !MediaRecorder.isTypeSupported(RECORDING_TYPE)) return undefined;
  const recorder = new MediaRecorder(media, { mimeType: RECORDING_TYPE, audioBitsPerSecond: 64000 });
  const recording: Recording = {
    recorder,
    buffered: [],
    onChunk: undefined,
    discard() {
      recording.onChunk = undefined;
      recording.buffered = [];
      if (recorder.state !== 'inactive') recorder.stop();
    },
  };
  recorder.addEventListener('dataavailable', (event) => {
    if (event.data.size === 0) return;
    if (recording.onChunk) recording.onChunk(event.data);
    else recording.buffered.push(event.data);
  });
  recorder.start(250);
  return recording;
}

function trackQuery(token: string, options: StreamOptions): URLSearchParams {
  const query = new URLSearchParams({ role: options.role, access_token: token });
  if (options.participant) query.set('participant', options.participant);
  if (options.language) query.set('language', options.language);
  return query;
}

async function startWhip(baseUrl: string, token: string, media: MediaStream, options: StreamOptions): Promise<Producer> {
  if (typeof RTCPeerConnection === 'undefined') throw new Error('this browser has no WebRTC');
  const [audio] = media.getAudioTracks();
  if (!audio) throw new Error('the stream has no audio track');
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
    const response = await fetch(`${baseUrl}${path}?${trackQuery(token, options)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
      body: pc.localDescription!.sdp,
    });
    if (response.status !== 201) throw new Error(`WHIP offer refused: HTTP ${response.status} ${await response.text()}`);
    const location = new URL(response.headers.get('location')!, baseUrl).toString();
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
      await fetch(location, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
      throw error;
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'failed') options.onState?.('failed', 'WebRTC connection lost');
    });
    return {
      transport: 'webrtc',
      async stop() {
        await fetch(location, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
        pc.close();
        options.onState?.('stopped');
      },
    };
  } catch (error) {
    pc.close();
    throw error;
  }
}

async function startWebSocket(baseUrl: string, token: string, recording: Recording, options: StreamOptions): Promise<Producer> {
  const query = trackQuery(token, options);
  query.set('format', 'webm');
  const url = `${baseUrl.replace(/^http/, 'ws')}/v1/sessions/${encodeURIComponent(options.sessionId)}/tracks/${encodeURIComponent(options.trackId)}/ingest?${query}`;
  const socket = new WebSocket(url);
  socket.binaryType = 'arraybuffer';
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve(), { once: true });
    socket.addEventListener('close', (event) => reject(new Error(`ingest WebSocket closed: ${event.code} ${event.reason}`)), { once: true });
  });
  const { recorder } = recording;
  // Chunks are sent in order; the WebM stream must not have gaps, so each waits for the one before.
  let sending = Promise.resolve();
  const send = (chunk: Blob) => {
    sending = sending.then(async () => {
      if (socket.readyState === WebSocket.OPEN) socket.send(await chunk.arrayBuffer());
    });
  };
  for (const chunk of recording.buffered.splice(0)) send(chunk);
  recording.onChunk = send;
  socket.addEventListener('close', (event) => {
    if (recorder.state !== 'inactive') recorder.stop();
    if (event.code !== 1000) options.onState?.('failed', `ingest closed: ${event.code} ${event.reason}`);
  });
  return {
    transport: 'websocket',
    async stop() {
      if (recorder.state !== 'inactive') {
        const stopped = new Promise((resolve) => recorder.addEventListener('stop', resolve, { once: true }));
        recorder.stop();
        await stopped;
      }
      await sending;
      socket.close(1000, 'producer stopped');
      options.onState?.('stopped');
    },
  };
}
