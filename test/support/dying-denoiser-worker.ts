/** The denoiser worker, dying (as a crash in the model would end it) once it has answered its third batch. */
import { parentPort } from 'node:worker_threads';
import '../../src/audio/denoiser-worker.ts';

let batches = 0;
parentPort!.on('message', () => {
  if (++batches === 3) setImmediate(() => process.exit(70));
});
