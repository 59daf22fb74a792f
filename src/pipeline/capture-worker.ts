/**
 * Capture in its own thread. Decoding pgoutput and writing the change log (JSON, SQLite, fsync) are
 * CPU work that would otherwise share one thread with the Applier; here they run beside it. The
 * worker owns the replication connection and the log's writer; the main thread reads the same SQLite
 * file (WAL mode: readers do not block the writer) and hears the durable head after every flush.
 * Contract 1 is unchanged: the worker acknowledges the slot only after its own fsync.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EmbeddedChangeLog } from '../changelog/embedded/embedded-change-log.js';
import { SluiceError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { Streamer } from './streamer.js';

export interface CaptureWorkerData {
  url: string;
  slot: string;
  publication: string;
  logFile: string;
  fsync: boolean;
  heartbeatIntervalMs: number;
  replicationTimeoutMs: number;
}

export type CaptureMessage =
  | { type: 'started' }
  | { type: 'durable'; lsn: string; endLsn: string; commitTimeMs: number; captured: number; confirmed: string }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; msg: string; fields?: Record<string, unknown> }
  | { type: 'fatal'; code: string; message: string; retryable: boolean }
  | { type: 'stopped' };

function post(m: CaptureMessage): void {
  parentPort!.postMessage(m);
}

function workerLogger(bound: Record<string, unknown> = {}): Logger {
  const emit = (level: 'debug' | 'info' | 'warn' | 'error') => (msg: string, fields?: Record<string, unknown>) =>
    post({ type: 'log', level, msg, fields: { ...bound, ...fields } });
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error'), child: (f) => workerLogger({ ...bound, ...f }) };
}

async function main(): Promise<void> {
  const d = workerData as CaptureWorkerData;
  const log = new EmbeddedChangeLog(d.logFile, { fsync: d.fsync, role: 'writer' });
  let streamer: Streamer | null = null;
  const report = () => {
    const h = log.head();
    post({
      type: 'durable',
      lsn: h.lsn.toString(),
      endLsn: h.endLsn.toString(),
      commitTimeMs: h.commitTimeMs,
      captured: streamer?.captured ?? 0,
      confirmed: (streamer?.confirmedLsn ?? 0n).toString(),
    });
  };
  streamer = new Streamer({
    url: d.url,
    slot: d.slot,
    publication: d.publication,
    log,
    logger: workerLogger(),
    heartbeatIntervalMs: d.heartbeatIntervalMs,
    replicationTimeoutMs: d.replicationTimeoutMs,
    onFatal: (err) => post({ type: 'fatal', code: err.code, message: err.message, retryable: err.retryable }),
    onDurable: report,
  });
  parentPort!.on('message', (m: { type: string }) => {
    if (m.type !== 'stop') return;
    void (async () => {
      await streamer?.stop().catch(() => {});
      report();
      log.close();
      post({ type: 'stopped' });
    })();
  });
  try {
    await streamer.start();
  } catch (err) {
    const e = err instanceof SluiceError ? err : new SluiceError('SOURCE_ERROR', (err as Error).message);
    post({ type: 'fatal', code: e.code, message: e.message, retryable: e.retryable });
    return;
  }
  report();
  post({ type: 'started' });
}

void main();
