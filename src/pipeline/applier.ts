/**
 * The Applier: moves every live table's apply cursor towards the change log's head, in batches,
 * committing each batch and its cursor in one destination transaction (contract 2). Replay after
 * a backfill is the same loop starting from L0 (docs/architecture.md, "One mechanism for apply, replay and
 * catch-up").
 *
 * A batch is compacted per primary key (only the last image of a key matters) and handed to the
 * destination's apply session (destinations/destination.ts), which writes it set-wise with the
 * cursor in one transaction. A TRUNCATE or a new column set splits the batch into segments, still
 * in the same transaction.
 */
import { SluiceError } from '../core/errors.js';
import { crashPoint } from '../core/crash.js';
import type { SourceLookups } from '../core/source-lookups.js';
import { sleep, backoffMs } from '../core/retry.js';
import { Position, TableName, type CapturedValue, type Change, type RelationColumns } from '../core/types.js';
import type { ApplySegment, ApplySession, Destination } from '../destinations/destination.js';
import { enginesOf, type PipelineContext } from './context.js';
import { Mutex, type TableRuntime } from './runtime.js';

export interface ApplierHooks {
  onCaughtUp(rt: TableRuntime): void;
  onTableFailed(rt: TableRuntime, err: SluiceError): void;
  onApplied?(rt: TableRuntime, changes: number): void;
  /** An online backfill's staging table has reached the live table's position: time to swap. */
  onStagingCaughtUp?(rt: TableRuntime): void;
}

interface ApplyTarget {
  readonly kind: 'live' | 'staging';
  readonly table: TableName;
  cursor: Position;
}

interface Image {
  row: CapturedValue[];
  /** The old key to fill unchanged columns from (a key change whose old image is not in the batch). */
  fromKey?: (string | null)[];
}

const IDLE_CURSOR_ADVANCE_MS = 1000;

export class Applier {
  private readonly destination: Destination;
  private readonly sourceLookups: SourceLookups;
  private readonly session: ApplySession;
  /**
   * One user of the Applier's session at a time. The apply loop (one table after another) and
   * `exclusive` (the swap, a cancel: another table than the one the loop is on) would otherwise
   * interleave their statements on one session, and one's COMMIT would end the other's transaction.
   * Always taken after the table's lock, never before it.
   */
  private readonly sessionLock = new Mutex();
  private stopping = false;
  /** Why applying is held by an operator (`sluice pause --apply`), or null; capture keeps filling the change log. */
  pausedBy: string | null = null;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private lastIdleAdvance = new Map<string, number>();
  /** The next batch of a target, read while the destination worked on the previous one. */
  private readonly readAhead = new Map<string, { after: Position; batch: { changes: Change[]; full: boolean } }>();
  private lastPurge = 0;
  private failures = 0;
  /** Changes applied since start (for status and benchmarks). */
  applied = 0;

  constructor(
    private readonly ctx: PipelineContext,
    private readonly tables: Map<string, TableRuntime>,
    private readonly hooks: ApplierHooks,
  ) {
    const engines = enginesOf(ctx);
    this.destination = engines.destination;
    this.sourceLookups = engines.source.openLookups('sluice-apply');
    this.session = this.destination.openApplySession({ pipeline: ctx.pipeline, logger: ctx.logger, source: this.sourceLookups });
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.run();
  }

  /** Wakes the loop: new changes are durable. */
  poke(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.poke();
    await this.loop;
    this.loop = null;
    await this.sessionLock.run(() => this.resetSession());
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      let busy = false;
      try {
        for (const rt of this.tables.values()) {
          if (this.stopping || this.pausedBy) break;
          if (await this.step(rt)) busy = true;
        }
        this.purge();
        this.failures = 0;
      } catch (err) {
        // Connection-level trouble: drop the session (temp tables go with it) and back off.
        this.failures++;
        const e = err instanceof SluiceError ? err : this.destination.classifyError('applying changes', err);
        this.ctx.logger.warn('apply failed; retrying', { error: e.message, attempt: this.failures });
        await this.sessionLock.run(() => this.resetSession());
        // An absent destination is asked again every few seconds, so applies resume soon after it is back.
        await sleep(backoffMs(this.failures, 200, this.destination.isConnectionLoss(e) ? 5000 : 10_000));
        continue;
      }
      if (!busy && !this.stopping) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, this.ctx.cfg.apply.flushIntervalMs);
          this.wake = done;
          function done() {
            clearTimeout(t);
            resolve();
          }
        });
        this.wake = null;
      }
    }
  }

  private async resetSession(): Promise<void> {
    // The source connection (filling unchanged columns) may be the one that was lost.
    await Promise.all([this.session.close(), this.sourceLookups.close()]);
  }

  /** The destination tables of `rt` that receive its changes now, with their cursors. */
  private targetsOf(rt: TableRuntime): ApplyTarget[] {
    const out: ApplyTarget[] = [];
    if (rt.cursor !== null && !rt.applyHalted) out.push({ kind: 'live', table: rt.target, cursor: rt.cursor });
    if (rt.staging?.cursor) out.push({ kind: 'staging', table: rt.staging.target, cursor: rt.staging.cursor });
    return out;
  }

  /** Applies one batch to each target of one table. Returns true when it applied something. */
  private async step(rt: TableRuntime): Promise<boolean> {
    if (this.targetsOf(rt).length === 0) return false;
    return rt.lock.run(() => this.sessionLock.run(async () => {
      let busy = false;
      await this.session.open();
      for (const target of this.targetsOf(rt)) {
        let r: { applied: number; drained: boolean };
        try {
          r = await this.applyBatch(rt, target);
        } catch (err) {
          const e = this.session.batchFailure(`applying changes to ${TableName.format(target.table)}`, err);
          if (e.retryable) throw e;
          // What the session built for the table may be gone with the aborted transaction; rebuilt next time.
          this.session.forget();
          if (target.kind === 'live') rt.applyHalted = true;
          this.hooks.onTableFailed(rt, e);
          return false;
        }
        if (r.applied > 0) busy = true;
        if (r.applied > 0 && (target.kind === 'staging' || rt.state === 'catching_up')) crashPoint('replay:batch');
        if (!r.drained) continue;
        if (target.kind === 'live' && rt.state === 'catching_up' && !rt.staging) await this.caughtUp(rt);
        // Drained: the staging table has replayed up to the head; the swap brings both tables to one position.
        if (target.kind === 'staging') {
          crashPoint('online:replay');
          this.hooks.onStagingCaughtUp?.(rt);
        }
      }
      return busy;
    }));
  }

  /**
   * Applies the next batch of `target` (up to `upTo` when given) in one transaction with its cursor.
   * `drained` means nothing more was pending: the cursor then moves to the head (or `upTo`) now and then,
   * so lag and purging see it current even when the table has no changes.
   */
  private async applyBatch(rt: TableRuntime, target: ApplyTarget, upTo?: Position): Promise<{ applied: number; drained: boolean }> {
    const log = this.ctx.changeLog;
    const head = log.head();
    // A batch is bounded by changes and by the bytes of their stored rows: what the Applier holds
    // decoded at once (a batch and the one read ahead) sets the process's peak memory.
    const limits = { limit: this.ctx.cfg.apply.batchRows, maxBytes: this.ctx.cfg.apply.batchBytes };
    const key = `${TableName.format(target.table)}|${rt.name}`;
    const ahead = this.readAhead.get(key);
    this.readAhead.delete(key);
    const { changes, full } =
      ahead && !upTo && Position.compare(ahead.after, target.cursor) === 0 && ahead.batch.changes.length > 0
        ? ahead.batch
        : log.readBatch(rt.name, target.cursor, { ...limits, upTo });
    if (changes.length === 0) {
      const at: Position = upTo ?? { lsn: head.lsn, idx: Number.MAX_SAFE_INTEGER };
      const key = `${rt.name}|${target.kind}`;
      const now = Date.now();
      const due = upTo !== undefined || now - (this.lastIdleAdvance.get(key) ?? 0) >= IDLE_CURSOR_ADVANCE_MS;
      if (due && Position.compare(at, target.cursor) > 0) {
        this.lastIdleAdvance.set(key, now);
        await this.session.advanceCursor(rt.name, target.table, at);
        this.setCursor(rt, target, at);
        if (target.kind === 'live' && !upTo) rt.lastCommitTimeMs = head.commitTimeMs || rt.lastCommitTimeMs;
      }
      return { applied: 0, drained: true };
    }
    const last = changes[changes.length - 1];
    // While the destination works on this batch's main statement, read the next batch from the log
    // (the read and its JSON parsing are the Applier's largest cost on this thread).
    let prefetched = false;
    const prefetch =
      upTo || !full
        ? undefined
        : () => {
            if (prefetched) return;
            prefetched = true;
            this.readAhead.set(key, { after: last.position, batch: log.readBatch(rt.name, last.position, limits) });
          };
    const segments = this.segmentsOf(rt, changes);
    await this.session.applyBatch(rt, target.table, segments, { position: last.position, commitTimeMs: last.commitTimeMs, changes: changes.length }, prefetch);
    this.setCursor(rt, target, last.position);
    if (target.kind === 'live') {
      rt.changesApplied += changes.length;
      rt.lastCommitTimeMs = last.commitTimeMs;
    }
    this.applied += changes.length;
    this.hooks.onApplied?.(rt, changes.length);
    return { applied: changes.length, drained: !full };
  }

  private setCursor(rt: TableRuntime, target: ApplyTarget, at: Position): void {
    target.cursor = at;
    if (target.kind === 'live') rt.cursor = at;
    else if (rt.staging) rt.staging.cursor = at;
  }

  /**
   * Runs `fn` while nothing else applies to the table, on the Applier's connection, which nothing
   * else uses meanwhile (the loop waits, whatever table it is on). `bringTo(p)`
   * applies every target of the table up to position `p` and leaves each cursor exactly at `p`
   * (the online swap needs the live and the staging table at the same position).
   */
  async exclusive<T>(rt: TableRuntime, fn: (session: ApplySession, bringTo: (p: Position) => Promise<void>) => Promise<T>): Promise<T> {
    return rt.lock.run(() => this.sessionLock.run(async () => {
      await this.session.open();
      const bringTo = async (p: Position) => {
        for (const target of this.targetsOf(rt)) {
          for (;;) {
            const r = await this.applyBatch(rt, target, p);
            if (r.drained) break;
          }
        }
      };
      const tables = [rt.target, rt.staging?.target].filter((t): t is TableName => !!t);
      try {
        return await fn(this.session, bringTo);
      } finally {
        // A swap or a cancel changes which table stands under these names: describe them afresh next time.
        this.session.forget(tables);
        this.readAhead.clear();
      }
    }));
  }

  /** Nothing pending after a reload's replay: the table is streaming. */
  private async caughtUp(rt: TableRuntime): Promise<void> {
    await this.session.markCaughtUp(rt.name);
    rt.state = 'streaming';
    rt.l0 = null;
    rt.error = null;
    this.hooks.onCaughtUp(rt);
  }

  /**
   * Splits a batch where a TRUNCATE or a new column set starts, and compacts each run of rows per
   * primary key (the destination writes only the last image of a key).
   */
  private segmentsOf(rt: TableRuntime, changes: readonly Change[]): ApplySegment[] {
    const out: ApplySegment[] = [];
    let start = 0;
    for (let i = 1; i <= changes.length; i++) {
      const boundary =
        i === changes.length ||
        changes[i].kind === 'truncate' ||
        changes[i - 1].kind === 'truncate' ||
        changes[i].relationVersion !== changes[start].relationVersion;
      if (!boundary) continue;
      const first = changes[start];
      if (first.kind === 'truncate') {
        out.push({ kind: 'truncate' });
      } else {
        const version = first.relationVersion;
        const rel = this.ctx.changeLog.relation(version);
        const keyIdx = rt.info.primaryKey.map((k) => rel.names.indexOf(k));
        if (keyIdx.some((k) => k < 0)) {
          throw new SluiceError('SOURCE_ERROR', `source ${rt.name}: the change stream lacks primary key columns (${rt.info.primaryKey.join(', ')})`);
        }
        const { upserts, deletes } = compact(changes.slice(start, i), rel, keyIdx);
        out.push({ kind: 'rows', relationVersion: version, columns: rel, previous: this.ctx.changeLog.previousRelation(rt.name, version), keyIdx, upserts, deletes });
      }
      start = i;
    }
    return out;
  }

  /** Drops changes every target has applied, keeping each pending backfill's changes since its L0. */
  private purge(): void {
    const now = Date.now();
    if (now - this.lastPurge < 1000) return;
    this.lastPurge = now;
    const log = this.ctx.changeLog;
    const head = log.head();
    for (const rt of this.tables.values()) {
      let bound: Position | null = rt.cursor;
      const staging = rt.staging?.cursor ?? null;
      if (staging !== null && (bound === null || Position.compare(staging, bound) < 0)) bound = staging;
      if (rt.rollbackFrom !== null && (bound === null || Position.compare(rt.rollbackFrom, bound) < 0)) bound = rt.rollbackFrom;
      if (rt.l0 !== null) {
        const keep = Position.before(rt.l0);
        if (bound === null || Position.compare(keep, bound) < 0) bound = keep;
      }
      if (bound === null) {
        // Not loaded and no backfill under way: its next backfill fixes a new L0 past the head.
        bound = { lsn: head.lsn, idx: Number.MAX_SAFE_INTEGER };
      }
      log.purge(rt.name, bound);
    }
  }
}

/** compact()'s map key of a primary key: the text itself for a one-column key (no JSON per change). */
export function compactKey(key: readonly (string | null)[]): string {
  return key.length === 1 ? (key[0] === null ? '\u0000' : `=${key[0]}`) : JSON.stringify(key);
}

/**
 * Compacts a segment per primary key: the result holds the last image of each surviving key and
 * the keys to delete; the two are disjoint. Unchanged (TOASTed) values are filled from an earlier
 * image of the same row in the batch when there is one.
 */
export function compact(
  changes: readonly Change[],
  rel: RelationColumns,
  keyIdx: readonly number[],
): { upserts: Map<string, Image>; deletes: Map<string, (string | null)[]> } {
  const upserts = new Map<string, Image>();
  const deletes = new Map<string, (string | null)[]>();
  const keyOfRow = (row: readonly CapturedValue[]) => keyIdx.map((i) => row[i] as string | null);
  const oldKeyOf = (c: Change): (string | null)[] | null => {
    const old = c.oldKey;
    if (!old) return null;
    // Under REPLICA IDENTITY FULL the old "key" is the whole old row.
    return old.length === rel.names.length && old.length !== keyIdx.length ? keyIdx.map((i) => old[i]) : [...old];
  };
  for (const c of changes) {
    if (c.kind === 'insert') {
      // Rows read from the log are this batch's own arrays: an insert keeps its array.
      const row = c.row as CapturedValue[];
      const k = compactKey(keyOfRow(row));
      deletes.delete(k);
      upserts.set(k, { row });
    } else if (c.kind === 'update') {
      const newKey = keyOfRow(c.row!);
      const nk = compactKey(newKey);
      let base = upserts.get(nk);
      let fromKey: (string | null)[] | undefined = base?.fromKey;
      const oldKey = oldKeyOf(c);
      if (oldKey) {
        const ok = compactKey(oldKey);
        if (ok !== nk) {
          const oldImg = upserts.get(ok);
          upserts.delete(ok);
          deletes.set(ok, oldKey);
          base = oldImg;
          fromKey = oldImg ? (oldImg.fromKey ?? oldKey) : oldKey;
        }
      }
      let row = c.row as CapturedValue[];
      let unchanged = false;
      for (let i = 0; i < row.length; i++) {
        if (row[i] === false) {
          if (base && base.row[i] !== false) {
            if (row === c.row) row = [...row];
            row[i] = base.row[i];
          } else unchanged = true;
        }
      }
      deletes.delete(nk);
      upserts.set(nk, unchanged && fromKey ? { row, fromKey } : { row });
    } else if (c.kind === 'delete') {
      const key = oldKeyOf(c)!;
      const k = compactKey(key);
      upserts.delete(k);
      deletes.set(k, key);
    }
  }
  return { upserts, deletes };
}
