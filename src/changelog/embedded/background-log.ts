/**
 * The embedded change log as capture uses it: changes are buffered here as they arrive, and every
 * flush hands them to a thread of their own (log-writer-thread.ts) that writes and fsyncs them, so
 * that reading the replication stream never stops for a write. At most one write is under way; what
 * arrives meanwhile goes into the next one (group commit: the slower the disk, the larger the write).
 *
 * Durability is reported, not returned: `flush()` returns the head that is durable so far, and
 * `onWritten(head)` says when a write is. Capture acknowledges the slot from there (contract 1).
 * Memory is bounded by the caller: past BACKLOG_CHANGES changes or BACKLOG_BYTES of rows waiting,
 * `backlogged` is set and the stream must stop being read until a write completes.
 */
import { Worker } from 'node:worker_threads';
import { SluiceError, type ErrorCode } from '../../core/errors.js';
import type { Change, Lsn, Position, RelationColumns } from '../../core/types.js';
import type { ChangeLog, LogHead, PendingChange } from '../changelog.js';
import type { EmbeddedChangeLog } from './embedded-change-log.js';
import type { LogWriterData, LogWriterReply, LogWriterRequest } from './log-writer-thread.js';

/** Changes waiting for a write past which reading the source pauses. */
const BACKLOG_CHANGES = 100_000;
/** Bytes of rows waiting for a write past which reading the source pauses. */
const BACKLOG_BYTES = 48 << 20;

export interface BackgroundLogOptions {
  readonly fsync: boolean;
  /** A write of `changes` changes is durable: everything up to `head` may be acknowledged. */
  readonly onWritten: (head: LogHead, changes: number) => void;
  /** A write failed: nothing more is written. */
  readonly onFailed: (err: SluiceError) => void;
}

export class BackgroundLog implements ChangeLog {
  private readonly worker: Worker;
  private inFlight = false;
  /** Changes in the write under way. */
  private inFlightChanges = 0;
  /** A flush was asked for during a write: write again as soon as it is done. */
  private again = false;
  private failure: SluiceError | null = null;
  private waiting: (() => void)[] = [];
  private ended: Promise<void> | null = null;

  constructor(
    private readonly log: EmbeddedChangeLog,
    private readonly opts: BackgroundLogOptions,
  ) {
    const workerData: LogWriterData = { file: log.file, fsync: opts.fsync };
    this.worker = new Worker(new URL('./log-writer-thread.js', import.meta.url), { workerData, resourceLimits: { maxYoungGenerationSizeMb: 8 } });
    this.worker.on('message', (m: LogWriterReply) => this.onReply(m));
    this.worker.on('error', (err) => this.fail(new SluiceError('CHANGELOG_ERROR', `change log ${log.file}: writer thread failed: ${err.message}`, { cause: err })));
    // A writer gone without a word would leave capture waiting for a write that never completes.
    this.worker.on('exit', (code) => {
      if (!this.ended) this.fail(new SluiceError('CHANGELOG_ERROR', `change log ${log.file}: writer thread exited (code ${code})`));
    });
  }

  get file(): string {
    return this.log.file;
  }

  get buffered(): number {
    return this.log.buffered;
  }

  /** A write is under way: `flush()` now only asks for the next one. */
  get writing(): boolean {
    return this.inFlight;
  }

  /** So much waits for a write that the source should not be read until one completes. */
  get backlogged(): boolean {
    return this.log.buffered >= BACKLOG_CHANGES || this.log.bufferedBytes >= BACKLOG_BYTES;
  }

  relationVersion(table: string, columns: RelationColumns): number {
    return this.log.relationVersion(table, columns);
  }

  relation(version: number): RelationColumns {
    return this.log.relation(version);
  }

  previousRelation(table: string, version: number): RelationColumns | null {
    return this.log.previousRelation(table, version);
  }

  append(change: PendingChange): void {
    this.log.append(change);
  }

  commit(lsn: Lsn, endLsn: Lsn, commitTimeMs: number): void {
    this.log.commit(lsn, endLsn, commitTimeMs);
  }

  advance(endLsn: Lsn): void {
    this.log.advance(endLsn);
  }

  /** Starts writing what is buffered (or asks for it after the write under way); returns the head durable so far. */
  flush(): LogHead {
    if (this.failure) throw this.failure;
    if (this.inFlight) this.again = true;
    else this.send();
    return this.log.head();
  }

  /** Resolves when no write is under way and nothing asked for is left (or the writer failed). */
  settle(): Promise<void> {
    if (!this.inFlight) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  head(): LogHead {
    return this.log.head();
  }

  read(table: string, after: Position, limit: number, upTo?: Position): Change[] {
    return this.log.read(table, after, limit, upTo);
  }

  purge(table: string, upTo: Position): number {
    return this.log.purge(table, upTo);
  }

  count(table: string, after: Position): number {
    return this.log.count(table, after);
  }

  close(): void {
    void this.end();
  }

  /** Closes the writer's file after the write under way, then this thread's. */
  end(): Promise<void> {
    this.ended ??= (async () => {
      await this.settle();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 5000);
        this.worker.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        this.worker.once('message', (m: LogWriterReply) => {
          if (m.type === 'closed') void this.worker.terminate();
        });
        this.worker.postMessage({ type: 'close' } satisfies LogWriterRequest);
      });
      this.log.close();
    })();
    return this.ended;
  }

  private send(): void {
    const batch = this.log.takeBatch();
    if (batch === null) return this.release();
    this.inFlight = true;
    this.inFlightChanges = batch.count;
    const request: LogWriterRequest = { type: 'write', batch };
    this.worker.postMessage(request, [batch.meta.buffer as ArrayBuffer, ...batch.buffers]);
  }

  private onReply(m: LogWriterReply): void {
    if (m.type === 'failed') return this.fail(new SluiceError(m.code as ErrorCode, m.message));
    if (m.type !== 'written' || this.failure) return;
    this.inFlight = false;
    this.log.written(m.head);
    this.log.recycle(m);
    this.opts.onWritten(m.head, this.inFlightChanges);
    // A flush asked for during the write takes what arrived meanwhile (group commit); otherwise the
    // next write waits for the caller's next flush, at its usual pace (fewer, larger commits).
    if (this.again) {
      this.again = false;
      this.send();
    } else {
      this.release();
    }
  }

  private fail(err: SluiceError): void {
    if (this.failure) return;
    this.failure = err;
    this.inFlight = false;
    this.release();
    this.opts.onFailed(err);
  }

  private release(): void {
    const waiting = this.waiting.splice(0);
    for (const resolve of waiting) resolve();
  }
}
