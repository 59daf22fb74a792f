/**
 * The thread that writes the embedded change log for capture (background-log.ts): it receives packed
 * batches (write-batch.ts), writes each in one SQLite transaction (fsync'd), and answers with the
 * head that is now durable, handing the batch's arrays back for reuse. It writes nothing else and
 * decides nothing: what is acknowledged to the source is decided by capture, from these answers.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SluiceError } from '../../core/errors.js';
import { EmbeddedChangeLog } from './embedded-change-log.js';
import type { LogHead } from '../changelog.js';
import type { WriteBatch } from './write-batch.js';

export interface LogWriterData {
  readonly file: string;
  readonly fsync: boolean;
}

export type LogWriterRequest = { type: 'write'; batch: WriteBatch } | { type: 'close' };

export type LogWriterReply =
  | { type: 'written'; head: LogHead; meta: Float64Array; buffers: ArrayBuffer[] }
  | { type: 'failed'; code: string; message: string }
  | { type: 'closed' };

const d = workerData as LogWriterData;
const port = parentPort!;
let log: EmbeddedChangeLog | null = null;

port.on('message', (m: LogWriterRequest) => {
  if (m.type === 'close') {
    log?.close();
    log = null;
    port.postMessage({ type: 'closed' } satisfies LogWriterReply);
    return;
  }
  try {
    // Opened on the first batch: the opening thread has already set the file up (format, leftovers).
    log ??= new EmbeddedChangeLog(d.file, { fsync: d.fsync, role: 'reader' });
    const head = log.writeBatch(m.batch);
    const reply: LogWriterReply = { type: 'written', head, meta: m.batch.meta, buffers: m.batch.buffers };
    port.postMessage(reply, [m.batch.meta.buffer as ArrayBuffer, ...m.batch.buffers]);
  } catch (err) {
    const e = err instanceof SluiceError ? err : new SluiceError('CHANGELOG_ERROR', `change log ${d.file}: write failed: ${(err as Error).message}`);
    port.postMessage({ type: 'failed', code: e.code, message: e.message } satisfies LogWriterReply);
  }
});
