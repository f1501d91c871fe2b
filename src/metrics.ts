/** Prometheus metrics of the gateway, one registry per gateway instance (tests run several). */
import { Counter, Gauge, Histogram, Registry, Summary, collectDefaultMetrics } from 'prom-client';

/** What the gauges read at each scrape, set by the composition root once the components exist. */
export interface MetricProbes {
  uploadWindowsPending(): number;
  archivePendingUploads(): number;
}

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const percentiles = [0.5, 0.95, 0.99];
  const probes: MetricProbes = { uploadWindowsPending: () => 0, archivePendingUploads: () => 0 };
  return {
    registry,
    probes,
    sttCalls: new Counter({ name: 'helssa_stt_calls_total', help: 'STT calls the recognizer answered, by window kind', labelNames: ['kind'], registers: [registry] }),
    uploadsRejected: new Counter({ name: 'helssa_uploads_rejected_total', help: 'Uploads refused before anything was kept, by code', labelNames: ['code'], registers: [registry] }),
    uploadAudioSeconds: new Counter({ name: 'helssa_upload_audio_seconds_total', help: 'Seconds of uploaded recordings accepted for transcription', registers: [registry] }),
    windowsDeadLettered: new Counter({ name: 'helssa_windows_dead_lettered_total', help: 'Upload windows whose every attempt failed (dead-lettered)', registers: [registry] }),
    sessionsCompleted: new Counter({ name: 'helssa_sessions_completed_total', help: 'Sessions completed (transcript stored), by encounter type', labelNames: ['encounter_type'], registers: [registry] }),
    sttEstimatedCost: new Counter({ name: 'helssa_stt_estimated_cost_total', help: 'Estimated STT cost of completed sessions (audio minutes × STT_PRICE_PER_MINUTE), by model', labelNames: ['model'], registers: [registry] }),
    segmentConfidence: new Histogram({ name: 'helssa_segment_confidence', help: "Mean recognizer confidence of each final's words, where the recognizer gives it (high > 0.9, low < 0.7)", buckets: [0.5, 0.7, 0.8, 0.9, 0.95, 1], registers: [registry] }),
    uploadRealTimeFactor: new Histogram({ name: 'helssa_upload_real_time_factor', help: 'Seconds of uploaded audio transcribed per second the upload took (accepted → every window in)', buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500], registers: [registry] }),
    uploadWindowsPending: new Gauge({ name: 'helssa_upload_windows_pending', help: 'Upload windows queued or at STT, not yet transcribed', registers: [registry], collect() { this.set(probes.uploadWindowsPending()); } }),
    archivePendingUploads: new Gauge({ name: 'helssa_archive_pending_uploads', help: 'Recordings waiting to be uploaded to object storage (the archive is behind while > 0)', registers: [registry], collect() { this.set(probes.archivePendingUploads()); } }),
    audioSeconds: new Counter({ name: 'helssa_audio_seconds_total', help: 'Seconds of track audio received and decoded', registers: [registry] }),
    producerResumes: new Counter({ name: 'helssa_producer_resumes_total', help: 'Tracks continued by a new producer connection (after a drop, or taking over a silent one)', labelNames: ['after'], registers: [registry] }),
    tailsRecovered: new Counter({ name: 'helssa_track_tails_recovered_total', help: 'Tails of tracks whose gateway stopped (audio past their stored finals) taken from Redis and transcribed by this gateway', registers: [registry] }),
    lostPackets: new Counter({ name: 'helssa_lost_packets_total', help: 'Opus packets concealed (lost, late or corrupt)', registers: [registry] }),
    windows: new Counter({ name: 'helssa_windows_total', help: 'Windows the segmenter cut for STT (those the speech check skips included)', labelNames: ['kind'], registers: [registry] }),
    sttAudioSeconds: new Counter({ name: 'helssa_stt_audio_seconds_total', help: 'Seconds of audio the recognizer answered (what it bills), by window kind (partial, final, speculative, upload)', labelNames: ['kind'], registers: [registry] }),
    windowsSkipped: new Counter({ name: 'helssa_windows_skipped_total', help: 'Windows not sent to STT: the speech check found too little speech in them (a cough, a door)', labelNames: ['kind'], registers: [registry] }),
    conditioningGain: new Histogram({ name: 'helssa_conditioning_gain_db', help: 'Gain the loudness normalization gave each window sent to STT, dB (0: none: loud enough, or too little speech)', buckets: [0, 3, 6, 10, 15, 20, 25, 30], registers: [registry] }),
    denoisedTracks: new Gauge({ name: 'helssa_denoised_tracks', help: 'Live tracks and uploads whose audio RNNoise takes the noise out of now (AUDIO_NOISE_SUPPRESSION: all of them with rnnoise, those with a noise floor with auto)', registers: [registry] }),
    denoiserShed: new Counter({ name: 'helssa_denoiser_shed_total', help: 'Tracks a noise suppression worker let go on without RNNoise because it fell behind (more noisy tracks than its core denoises in real time)', registers: [registry] }),
    humNotched: new Counter({ name: 'helssa_hum_notched_total', help: 'Windows sent to STT with mains hum detected and notched out, by frequency', labelNames: ['hz'], registers: [registry] }),
    hallucinationsDropped: new Counter({ name: 'helssa_hallucinations_dropped_total', help: 'Words taken out of STT answers as invented, by reason (segment, outside_speech, loop, phrase)', labelNames: ['reason'], registers: [registry] }),
    sttFailures: new Counter({ name: 'helssa_stt_failures_total', help: 'STT calls failed after the client retries', labelNames: ['kind'], registers: [registry] }),
    sttSeconds: new Histogram({ name: 'helssa_stt_request_seconds', help: 'Duration of STT calls', labelNames: ['kind'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30], registers: [registry] }),
    finalLatency: new Summary({
      name: 'helssa_final_added_latency_seconds',
      help: 'Gateway-added latency: last speech audio received → final event with words sent, minus the STT call (includes the endpointing silence)',
      percentiles,
      maxAgeSeconds: 600,
      ageBuckets: 5,
      registers: [registry],
    }),
    firstPartial: new Summary({
      name: 'helssa_first_partial_seconds',
      help: 'Start of an utterance\'s speech → its first partial event sent (at real time: the audio received since stands for the time)',
      percentiles,
      maxAgeSeconds: 600,
      ageBuckets: 5,
      registers: [registry],
    }),
    finalProcessing: new Summary({
      name: 'helssa_final_processing_seconds',
      help: 'Audio that closed a window received → final event sent, minus the STT call (queueing and processing only)',
      percentiles,
      maxAgeSeconds: 600,
      ageBuckets: 5,
      registers: [registry],
    }),
    activeTracks: new Gauge({ name: 'helssa_active_tracks', help: 'Tracks streaming now', registers: [registry] }),
    sttBacklogWindows: new Gauge({ name: 'helssa_stt_backlog_windows', help: 'Final windows waiting for STT (retrying through an outage included)', registers: [registry] }),
    sttBacklogSeconds: new Gauge({ name: 'helssa_stt_backlog_audio_seconds', help: 'Audio of the final windows waiting for STT, seconds', registers: [registry] }),
    sttBacklogSpilled: new Gauge({ name: 'helssa_stt_backlog_spilled_windows', help: 'Waiting final windows whose audio was spilled to disk (encrypted) to bound memory', registers: [registry] }),
    sttRefusing: new Gauge({ name: 'helssa_stt_refusing', help: "1 while the recognizer refuses the gateway's requests (key, model, deployment, format): nothing is sent, windows wait", registers: [registry] }),
    sttRefusals: new Counter({ name: 'helssa_stt_refusals_total', help: 'Times the recognizer started refusing requests', registers: [registry] }),
    sttEndpointRequests: new Counter({ name: 'helssa_stt_endpoint_requests_total', help: 'Requests per STT endpoint (STT_BASE_URLS) by outcome: ok, outage, refused, skipped (its breaker open)', labelNames: ['endpoint', 'outcome'] as const, registers: [registry] }),
    sttEndpointOpen: new Gauge({ name: 'helssa_stt_endpoint_open', help: "1 while an STT endpoint's circuit breaker is open (requests go to the next endpoint), 0.5 half-open", labelNames: ['endpoint'] as const, registers: [registry] }),
    viewers: new Gauge({ name: 'helssa_caption_viewers', help: 'Caption WebSocket connections', registers: [registry] }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
