/**
 * The Swapper: the end of an online backfill (contract 6). When the staging table's
 * replay has reached the live table's position, it pauses applying to that table, brings both to
 * the same position, and swaps them in one destination transaction under a short lock_timeout:
 * live → archive (moved into online.archiveSchema), staging → live, with grants, owner, comments,
 * policies, triggers and dependent views carried over (destinations/postgres/swap.ts). A lock timeout rolls everything back; the
 * table resumes streaming and the swap is retried with backoff, so it never queues long behind a
 * reader nor blocks readers for long. Any other failure rolls back the same way (the archive row,
 * the cursors and the run's status are statements of the swap's transaction) and is retried with a
 * longer jittered backoff (at most a minute apart); `status` shows the error meanwhile. The live
 * table streams throughout, so the table is never marked failed for it.
 */
import { performance } from 'node:perf_hooks';
import { crashPoint } from '../core/crash.js';
import { backoffMs, sleep } from '../core/retry.js';
import { TableName } from '../core/types.js';
import { qualified } from '../destinations/postgres/dialect.js';
import { deleteCursor, setTableState, writeCursor } from '../destinations/postgres/state.js';
import { archiveName, captureCarried, swapSql } from '../destinations/postgres/swap.js';
import { ensureArchiveSchema } from '../destinations/postgres/archives.js';
import { lowSpaceWarning } from './archive-space.js';
import { classify } from '../postgres/errors.js';
import type { Applier } from './applier.js';
import type { PipelineContext } from './context.js';
import type { TableRuntime } from './runtime.js';
import { validateForeignKeysLater } from './foreign-keys.js';

export interface SwapperHooks {
  onSwapped(rt: TableRuntime, archive: TableName, lockHeldMs: number, attempts: number): void;
  /** Records a word on what the table waits for (status). */
  onDetail(rt: TableRuntime, detail: string | null): void;
}

export class Swapper {
  private readonly active = new Map<string, { abort: AbortController; done: Promise<void> }>();
  /** Tables being cancelled: no swap of them starts until `release`. */
  private readonly held = new Set<string>();

  constructor(
    private readonly ctx: PipelineContext,
    private readonly applier: Applier,
    private readonly hooks: SwapperHooks,
  ) {}

  /** Starts swapping `rt` unless a swap of it is already under way. */
  request(rt: TableRuntime): void {
    if (this.active.has(rt.name) || this.held.has(rt.name) || !rt.staging) return;
    const abort = new AbortController();
    const done = this.swap(rt, abort.signal).finally(() => this.active.delete(rt.name));
    this.active.set(rt.name, { abort, done });
  }

  /** Stops a swap in progress (cancel, shutdown); resolves when it has. */
  async abort(name: string): Promise<void> {
    const a = this.active.get(name);
    if (!a) return;
    a.abort.abort();
    await a.done;
  }

  /** Stops a swap in progress and keeps new ones from starting until `release` (a cancel). */
  async hold(name: string): Promise<void> {
    this.held.add(name);
    await this.abort(name);
  }

  release(name: string): void {
    this.held.delete(name);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.active.keys()].map((n) => this.abort(n)));
  }

  private async swap(rt: TableRuntime, signal: AbortSignal): Promise<void> {
    const log = this.ctx.logger.child({ table: rt.name });
    const timeoutMs = this.ctx.cfg.online.swapLockTimeoutMs;
    let failures = 0;
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        const result = await this.applier.exclusive(rt, async (dst, bringTo) => {
          // Under the table's lock; a cancel takes it too, so the staging table cannot go meanwhile.
          const st = rt.staging;
          if (!st || signal.aborted) return null;
          if (rt.state !== 'swapping') {
            await setTableState(dst, this.ctx.pipeline, rt.name, 'swapping', {});
            rt.state = 'swapping';
          }
          // Both tables to the same position: the head as of now.
          const head = this.ctx.changeLog.head();
          const at = { lsn: head.lsn, idx: Number.MAX_SAFE_INTEGER };
          await bringTo(at);
          if (signal.aborted || rt.staging !== st) return null;
          crashPoint('online:before-swap');
          const live = rt.target;
          const staging = st.target;
          const runId = Number((await dst.query(`SELECT run_id FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [this.ctx.pipeline, rt.name])).rows[0]?.run_id ?? 0);
          const archive = archiveName(live, runId, this.ctx.cfg.online.archiveSchema);
          // Before the transaction: creating the schema is not part of the time readers wait.
          await ensureArchiveSchema(dst, archive.schema);
          await dst.query('BEGIN');
          try {
            await dst.query(`SET LOCAL lock_timeout = '${timeoutMs}ms'`);
            // The bookkeeping that needs no table lock comes first, so that it is not part of the time
            // readers wait: the same transaction, so a lock timeout rolls it back with the rest.
            await deleteCursor(dst, this.ctx.pipeline, rt.name, TableName.format(staging));
            // The new live table stands where the staging table stood (a live table without a cursor gets one).
            await writeCursor(dst, this.ctx.pipeline, rt.name, TableName.format(live), at, null, 0);
            const retentionHours = this.ctx.cfg.online.archiveRetentionHours;
            // A row without its table (left by a swap whose statements once ran outside its transaction)
            // is taken over rather than failing every attempt on the key.
            await dst.query(
              `INSERT INTO _sluice.archives (pipeline, table_name, archive, run_id, drop_after)
               VALUES ($1, $2, $3, $4, CASE WHEN $5::boolean THEN NULL ELSE now() + make_interval(secs => $6::float8 * 3600) END)
               ON CONFLICT (pipeline, archive) DO UPDATE SET table_name = EXCLUDED.table_name, run_id = EXCLUDED.run_id,
                 created_at = now(), drop_after = EXCLUDED.drop_after, dropped_at = NULL`,
              [this.ctx.pipeline, rt.name, TableName.format(archive), runId, rt.keepArchive, retentionHours],
            );
            await setTableState(dst, this.ctx.pipeline, rt.name, 'streaming', { staging: null, detail: null, error: null, l0: null });
            await dst.query(`LOCK TABLE ${qualified(live)} IN ACCESS EXCLUSIVE MODE`);
            const lockedAt = performance.now();
            await dst.query(`LOCK TABLE ${qualified(staging)} IN ACCESS EXCLUSIVE MODE`);
            const carried = await captureCarried(dst, live);
            // One round trip for the renames and everything carried (a multi-statement simple query: it
            // runs inside this transaction, and the first error aborts it as before).
            await dst.query(swapSql(live, staging, archive, carried, runId).join(';\n'));
            crashPoint('online:in-swap');
            const heldSoFar = performance.now() - lockedAt;
            const validate = carried.foreignKeys.filter((f) => f.validated);
            await dst.query(
              `UPDATE _sluice.runs SET status = 'done', ended_at = now(),
                 params = params || jsonb_build_object('swapAttempts', $2::int, 'archive', $3::text, 'swapLockMsBeforeCommit', $4::float8)
                   || CASE WHEN jsonb_array_length($5::jsonb) > 0 THEN jsonb_build_object('validate', $5::jsonb) ELSE '{}' END
               WHERE id = $1`,
              [runId, attempt, TableName.format(archive), Math.round(heldSoFar * 100) / 100, JSON.stringify(validate)],
            );
            await dst.query('COMMIT');
            const heldMs = performance.now() - lockedAt;
            // Still under the table's apply lock: the Applier may be queued on it, and must find the
            // staging table (now the live one, under the live name) gone from its targets.
            rt.staging = null;
            rt.cursor = at;
            rt.applyHalted = false;
            rt.state = 'streaming';
            rt.l0 = null;
            rt.error = null;
            const lowSpace = await lowSpaceWarning(dst, this.ctx.cfg.online.lowFreeSpacePercent).catch(() => null);
            return { archive, heldMs, at, lowSpace, validate, runId };
          } catch (err) {
            await dst.query('ROLLBACK').catch(() => {});
            throw err;
          }
        });
        if (!result) return;
        this.hooks.onDetail(rt, null);
        log.info('swapped: the new table is live', {
          archive: TableName.format(result.archive),
          lockHeldMs: Math.round(result.heldMs * 10) / 10,
          attempts: attempt,
        });
        if (result.lowSpace) log.warn(`destination short of space after the swap: ${result.lowSpace}`);
        this.hooks.onSwapped(rt, result.archive, result.heldMs, attempt);
        // Added back NOT VALID in the swap; validated now, outside its lock (SHARE UPDATE EXCLUSIVE).
        validateForeignKeysLater(this.ctx, result.validate, log, result.runId);
        return;
      } catch (err) {
        const e = classify('destination', `swapping ${TableName.format(rt.target)}`, err);
        const lockTimeout = (e.context.sqlstate as string | undefined) === '55P03';
        if (!lockTimeout) failures++;
        // A lock timeout is the swap working as meant (readers come first): retry soon. Anything else
        // backs off longer, up to a minute, and says why.
        const delay = lockTimeout ? backoffMs(attempt, 50, 5000) : backoffMs(failures, 1000, 60_000);
        const detail = lockTimeout
          ? `waiting for the swap lock (attempt ${attempt}: readers or writers held it > ${timeoutMs} ms)`
          : `swap failed (${failures}×): ${e.message}; retrying in ${Math.round(delay / 1000)} s`;
        this.hooks.onDetail(rt, detail);
        if (!lockTimeout) log.error('swap failed; rolled back, retrying (the staging table keeps replaying)', { error: e.message, attempt: failures, inMs: delay });
        else if (attempt === 1 || attempt % 10 === 0) log.warn('swap did not get its lock in time; retrying', { attempt, inMs: delay });
        await sleep(delay, signal);
      }
    }
  }
}

