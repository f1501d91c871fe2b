/**
 * The worker thread of `ArchiveThread`: holds each open track's TrackArchive and applies the operations
 * the gateway sends, in order. Opening and closing a spool are asynchronous (files, fsync); operations of
 * other tracks go on meanwhile.
 */
import { parentPort } from 'node:worker_threads';
import { SpoolOp, type FromArchiveWorker, type ToArchiveWorker } from './archive-thread.ts';
import { TrackArchive } from './track-archive.ts';
import { BATCH_OP_SIZE } from '../audio/worker-batches.ts';

const port = parentPort!;
const archives = new Map<number, TrackArchive>();
const reply = (message: FromArchiveWorker) => port.postMessage(message);

port.on('message', (message: ToArchiveWorker) => {
  if (message.type === 'ops') {
    const { ops, bytes } = message.batch;
    for (let i = 0; i < ops.length; i += BATCH_OP_SIZE) {
      const archive = archives.get(ops[i + 1]);
      if (!archive) continue;
      if (ops[i] === SpoolOp.packet) archive.packet(Buffer.from(bytes.buffer, bytes.byteOffset + ops[i + 2], ops[i + 3]));
      else archive.silence(ops[i + 2]);
    }
    return;
  }
  const { id } = message;
  if (message.type === 'open') {
    TrackArchive.open(message.options).then(
      (archive) => (archives.set(id, archive), reply({ type: 'opened', id })),
      (error: Error) => reply({ type: 'opened', id, error: error.message }),
    );
    return;
  }
  const archive = archives.get(id);
  archives.delete(id);
  if (!archive) return reply({ type: 'closed', id, error: 'no such spool' });
  archive.close().then(
    (completed) => reply({ type: 'closed', id, completed }),
    (error: Error) => reply({ type: 'closed', id, error: error.message }),
  );
});
