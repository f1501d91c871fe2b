/**
 * The denoiser worker on a core it shares: each batch takes 4 ms per 20 ms of audio in it on top of the
 * model (the thread blocked, not spinning), so eight real-time streams need 160 % of it.
 */
import { parentPort } from 'node:worker_threads';
import type { Batch } from '../../src/audio/worker-batches.ts';

const BLOCKED_MS_PER_SAMPLE = 4 / 320;
const blocker = new Int32Array(new SharedArrayBuffer(4));
// Before the worker's own handler, which hands the batch's samples back (transferred: gone from here).
parentPort!.on('message', (batch: Batch) => Atomics.wait(blocker, 0, 0, (batch.bytes.length / 2) * BLOCKED_MS_PER_SAMPLE));
await import('../../src/audio/denoiser-worker.ts');
