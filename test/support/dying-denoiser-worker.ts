/** The denoiser worker, dying (as a crash in the model would end it) once it has answered its third batch. */
import { parentPort } from 'node:worker_threads';
import '../../src/audio/denoiser-worker.ts';

let batches = 0;
parentPort!.on('message', () => {
  // At once, inside the batch's handler (after the worker's own, which has answered it): the batches queued
  // behind it are never read.
  if (++batches === 3) process.exit(70);
});
