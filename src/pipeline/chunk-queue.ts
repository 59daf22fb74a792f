/**
 * One chunk queue for every backfilling table: a bounded pool of workers (`pipeline.workers`), each
 * with its own source and destination connection. A free worker takes the next chunk of the running
 * table with the most work left that has room for another chunk in flight (its strategy's
 * parallelism). No static assignment: a slow range does not hold the others back.
 *
 * Capacity: at most `workers` chunks in flight in all; each table's in-flight chunks are bounded by
 * its parallelism (1 for keyset). Planning a table's next chunk is serialised per table.
 */
import type pg from 'pg';
import { SluiceError } from '../core/errors.js';
import type { ChunkWriter } from '../destinations/destination.js';
import type { Logger } from '../core/logger.js';
import { backoffMs, sleep } from '../core/retry.js';
import { closeClient } from '../postgres/connection.js';
import { isConnectionLoss } from '../postgres/errors.js';
import type { Chunk, Planner } from './chunking.js';
import type { TableRuntime } from './runtime.js';

export interface WorkerConnections {
  src: pg.Client;
  writer: ChunkWriter;
}

export interface TableLoad {
  readonly rt: TableRuntime;
  readonly planner: Planner;
  readonly signal: AbortSignal;
  /** Copies one chunk and commits its progress; returns the rows copied. */
  copy(chunk: Chunk, conns: WorkerConnections): Promise<number>;
  /** Called before every chunk: waits while the throttle is closed. */
  admit(chunk: Chunk): Promise<void>;
  /** Called once when the load has failed for good (no more retries), while chunks may be in flight. */
  failed?(err: unknown): void;
}

interface Entry {
  load: TableLoad;
  inFlight: number;
  planning: boolean;
  exhausted: boolean;
  error: unknown;
  settle: (ok: boolean) => void;
  fail: (err: unknown) => void;
}

export class ChunkQueue {
  private readonly entries = new Set<Entry>();
  private readonly workers: Promise<void>[] = [];
  private wakeups: (() => void)[] = [];
  private stopped = false;

  constructor(
    private readonly size: number,
    private readonly connectWorker: () => Promise<WorkerConnections>,
    private readonly log: Logger,
  ) {}

  /** Copies every chunk of `load`. Resolves true when all are committed, false when aborted. */
  run(load: TableLoad): Promise<boolean> {
    this.ensureWorkers();
    return new Promise<boolean>((resolve, reject) => {
      const entry: Entry = {
        load,
        inFlight: 0,
        planning: false,
        exhausted: false,
        error: null,
        settle: (ok) => {
          this.entries.delete(entry);
          resolve(ok);
        },
        fail: (err) => {
          this.entries.delete(entry);
          reject(err);
        },
      };
      this.entries.add(entry);
      load.signal.addEventListener('abort', () => this.wake(), { once: true });
      this.wake();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await Promise.allSettled(this.workers);
  }

  private ensureWorkers(): void {
    while (this.workers.length < this.size) this.workers.push(this.work(this.workers.length));
  }

  private wake(): void {
    const w = this.wakeups;
    this.wakeups = [];
    for (const f of w) f();
  }

  private idle(): Promise<void> {
    return new Promise((resolve) => {
      this.wakeups.push(resolve);
      setTimeout(resolve, 500).unref();
    });
  }

  /** Settles entries that are finished (all chunks done, aborted, or failed with nothing in flight). */
  private settle(e: Entry): void {
    if (e.inFlight > 0) return;
    if (e.error) return e.fail(e.error);
    if (e.load.signal.aborted) return e.settle(false);
    if (e.exhausted) e.settle(true);
  }

  /** The table with the most work left that can take another chunk now. */
  private pick(): Entry | null {
    let best: Entry | null = null;
    let bestLeft = -Infinity;
    for (const e of this.entries) {
      if (e.exhausted || e.planning || e.error || e.load.signal.aborted) continue;
      if (e.inFlight >= e.load.planner.parallelism) continue;
      const left = e.load.rt.rowsEstimated - e.load.rt.rowsCopied;
      if (left > bestLeft) {
        best = e;
        bestLeft = left;
      }
    }
    return best;
  }

  private async work(n: number): Promise<void> {
    let conns: WorkerConnections | null = null;
    try {
      while (!this.stopped) {
        for (const e of [...this.entries]) this.settle(e);
        const e = this.pick();
        if (!e) {
          await this.idle();
          continue;
        }
        e.inFlight++;
        // Only the worker that is planning may end the planning: others finishing a chunk must not.
        let planning = true;
        e.planning = true;
        try {
          const chunk = await this.withRetry(e, 'planning a chunk', conns, (c) => {
            conns = c;
            return e.load.planner.next(c.src);
          }, () => (conns = null));
          planning = false;
          e.planning = false;
          this.wake();
          if (!chunk) {
            e.exhausted = true;
            continue;
          }
          await e.load.admit(chunk);
          const started = Date.now();
          const rows = await this.withRetry(e, 'chunk', conns, (c) => {
            conns = c;
            return e.load.copy(chunk, c);
          }, () => (conns = null));
          e.load.planner.done(chunk, rows, (Date.now() - started) / 1000);
        } catch (err) {
          if (!e.error) e.load.failed?.(err);
          e.error ??= err;
          if (conns && !(err instanceof SluiceError && !err.retryable)) {
            await closeWorker(conns);
            conns = null;
          }
        } finally {
          if (planning) e.planning = false;
          e.inFlight--;
          this.settle(e);
          this.wake();
        }
      }
    } finally {
      if (conns) await closeWorker(conns);
      this.log.debug('chunk worker stopped', { worker: n });
    }
  }

  /**
   * Runs `fn` on the worker's connections (opened when missing). A retryable failure closes them
   * and runs `fn` again on new ones after a backoff: up to 6 attempts, and for as long as it takes
   * when the server or the path to it is away (a restart, an outage), so the load resumes by itself.
   */
  private async withRetry<T>(
    e: Entry,
    what: string,
    conns: WorkerConnections | null,
    fn: (c: WorkerConnections) => Promise<T>,
    drop: () => void,
  ): Promise<T> {
    let c = conns;
    let lost = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        c ??= await this.connectWorker();
        return await fn(c);
      } catch (err) {
        const retryable = err instanceof SluiceError ? err.retryable : isConnectionLoss(err);
        const connection = isConnectionLoss(err);
        if (connection) lost++;
        if (!retryable || (!connection && attempt - lost >= 6) || e.load.signal.aborted || this.stopped) throw err;
        // An absent server is asked again every few seconds: a connect attempt costs little, and the load resumes soon after it is back.
        const delay = connection ? backoffMs(lost, 300, 5000) : backoffMs(attempt, 300, 15_000);
        this.log.warn(`${what} failed; retrying`, { table: e.load.rt.name, attempt, inMs: delay, error: (err as Error).message });
        if (c) await closeWorker(c);
        c = null;
        drop();
        await sleep(delay, e.load.signal);
        if (e.load.signal.aborted || this.stopped) throw err;
      }
    }
  }
}

async function closeWorker(c: WorkerConnections): Promise<void> {
  await Promise.allSettled([closeClient(c.src), c.writer.close()]);
}
