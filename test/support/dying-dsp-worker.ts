/** The DSP worker, dying (as a crash in a codec would end it) once it has answered its third batch. */
import { parentPort } from 'node:worker_threads';
import '../../src/audio/dsp-worker.ts';

let batches = 0;
parentPort!.on('message', () => {
  // Inside the batch's handler, after the worker's own (which has answered it): later batches are never read.
  if (++batches === 3) process.exit(70);
});
