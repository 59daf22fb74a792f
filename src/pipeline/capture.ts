/**
 * The main thread's handle on capture running in a worker thread (capture-worker.ts): start, stop,
 * counters, and the durable head handed to the change log's reader so the Applier sees new changes.
 */
import { Worker } from 'node:worker_threads';
import type { EmbeddedChangeLog } from '../changelog/embedded/embedded-change-log.js';
import { SluiceError, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { Lsn } from '../core/types.js';
import type { CaptureMessage, CaptureWorkerData } from './capture-worker.js';

export interface CaptureOptions extends Omit<CaptureWorkerData, 'logFile' | 'fsync'> {
  readonly log: EmbeddedChangeLog;
  readonly fsync: boolean;
  readonly logger: Logger;
  readonly onFatal: (err: SluiceError) => void;
  readonly onDurable: () => void;
}

export class Capture {
  private worker: Worker | null = null;
  private stopped: Promise<void> | null = null;
  captured = 0;
  confirmedLsn: Lsn = Lsn.zero;

  constructor(private readonly opts: CaptureOptions) {}

  start(): Promise<void> {
    const { log, logger, onFatal, onDurable, fsync, ...rest } = this.opts;
    const data: CaptureWorkerData = { ...rest, logFile: log.file, fsync };
    const worker = new Worker(new URL('./capture-worker.js', import.meta.url), { workerData: data });
    this.worker = worker;
    let started = false;
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (m: CaptureMessage) => {
        switch (m.type) {
          case 'durable':
            log.setDurable({ lsn: Lsn.of(BigInt(m.lsn)), endLsn: Lsn.of(BigInt(m.endLsn)), commitTimeMs: m.commitTimeMs });
            this.captured = m.captured;
            this.confirmedLsn = Lsn.of(BigInt(m.confirmed));
            onDurable();
            return;
          case 'log':
            logger[m.level](m.msg, m.fields);
            return;
          case 'started':
            started = true;
            resolve();
            return;
          case 'fatal': {
            const err = new SluiceError(m.code as ErrorCode, m.message, { retryable: m.retryable });
            if (!started) reject(err);
            else onFatal(err);
            return;
          }
          case 'stopped':
            return;
        }
      });
      worker.on('error', (err) => {
        const e = new SluiceError('INTERNAL', `capture thread failed: ${err.message}`, { cause: err });
        if (!started) reject(e);
        else onFatal(e);
      });
    });
  }

  /** Asks the worker to flush, acknowledge and close; waits for it. */
  async stop(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    if (!this.stopped) {
      this.stopped = new Promise<void>((resolve) => {
        const done = () => resolve();
        w.on('message', (m: CaptureMessage) => {
          if (m.type === 'stopped') void w.terminate().then(done, done);
        });
        w.on('exit', done);
        w.postMessage({ type: 'stop' });
        setTimeout(() => void w.terminate().then(done, done), 10_000).unref();
      });
    }
    await this.stopped;
    this.worker = null;
  }
}
