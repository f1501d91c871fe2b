/** The worker thread of `ConditionerThread`: conditions each window it is sent and moves the result back. */
import { conditionWindow } from './conditioner.ts';
import type { ConditionedWindow, ConditionRequest } from './conditioner-thread.ts';
import { serveRequests } from './worker-thread.ts';

await serveRequests<ConditionRequest, ConditionedWindow>(async () => async ({ audio, speech, options }) => {
  const conditioned = conditionWindow(audio, speech, options);
  return { reply: conditioned, transfer: [conditioned.audio.buffer as ArrayBuffer] };
});
