/**
 * HELSSA Live client SDK, for browsers (a plain `<script type="module">` can import the built
 * `dist/index.js`; the gateway serves it at `/sdk/index.js`):
 *
 *   const client = new HelssaClient({ baseUrl: 'https://gateway', token });
 *   const producer = await client.stream(micStream, { sessionId, trackId: 'doctor', role: 'doctor' });
 *   const captions = client.watchCaptions(sessionId, { onEvent: (e) => … });
 *   await producer.stop(); const doc = await client.transcript(sessionId);
 */
export * from './protocol.ts';
export { HelssaClient, type ClientOptions } from './client.ts';
export { type Producer, type StreamOptions, type Transport } from './producer.ts';
export { ResumableIngest, OPUS_FRAMES, pcm16Frames, type FrameFormat, type IngestState, type ResumableIngestOptions } from './resumable-ingest.ts';
export { CaptionWatcher, type WatchOptions, type ConnectionState } from './captions.ts';
