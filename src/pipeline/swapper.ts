/**
 * The Swapper: the end of an online backfill (contract 6). When the staging table's
 * replay has reached the live table's position, it pauses applying to that table, brings both to
 * the same position, and has the destination swap them in one transaction under a short lock
 * timeout (ApplySession.swap): live → archive (moved into online.archiveSchema), staging → live,
 * with grants, owner, comments, policies, triggers and dependent views carried over (for PostgreSQL:
 * destinations/postgres/online-swap.ts). A lock timeout rolls everything back; the
 * table resumes streaming and the swap is retried with backoff, so it never queues long behind a
 * reader nor blocks readers for long. Any other failure rolls back the same way (the archive row,
 * the cursors and the run's status are statements of the swap's transaction) and is retried with a
 * longer jittered backoff (at most a minute apart); `status` shows the error meanwhile. The live
 * table streams throughout, so the table is never marked failed for it.
 */
import { crashPoint } from '../core/crash.js';
import { backoffMs, sleep } from '../core/retry.js';
import { TableName } from '../core/types.js';
import type { Applier } from './applier.js';
import { enginesOf, type PipelineContext } from './context.js';
import type { TableRuntime } from './runtime.js';

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
        const result = await this.applier.exclusive(rt, async (session, bringTo) => {
          // Under the table's lock; a cancel takes it too, so the staging table cannot go meanwhile.
          const st = rt.staging;
          if (!st || signal.aborted) return null;
          if (rt.state !== 'swapping') {
            await session.setTableState(rt.name, 'swapping');
            rt.state = 'swapping';
          }
          // Both tables to the same position: the head as of now.
          const head = this.ctx.changeLog.head();
          const at = { lsn: head.lsn, idx: Number.MAX_SAFE_INTEGER };
          await bringTo(at);
          if (signal.aborted || rt.staging !== st) return null;
          crashPoint('online:before-swap');
          const online = this.ctx.cfg.online;
          const swapped = await session.swap({
            name: rt.name,
            live: rt.target,
            staging: st.target,
            at,
            attempt,
            lockTimeoutMs: timeoutMs,
            archiveSchema: online.archiveSchema,
            archiveRetentionHours: online.archiveRetentionHours,
            keepArchive: rt.keepArchive,
            lowFreeSpacePercent: online.lowFreeSpacePercent,
          });
          // Still under the table's apply lock: the Applier may be queued on it, and must find the
          // staging table (now the live one, under the live name) gone from its targets.
          rt.staging = null;
          rt.cursor = at;
          // The archive stands at `at` too: the change log keeps what a rollback would replay into it.
          rt.rollbackFrom = at;
          rt.applyHalted = false;
          rt.state = 'streaming';
          rt.l0 = null;
          rt.error = null;
          return swapped;
        });
        if (!result) return;
        this.hooks.onDetail(rt, null);
        log.info('swapped: the new table is live', {
          archive: TableName.format(result.archive),
          lockHeldMs: Math.round(result.lockHeldMs * 10) / 10,
          attempts: attempt,
        });
        if (result.lowSpace) log.warn(`destination short of space after the swap: ${result.lowSpace}`);
        this.hooks.onSwapped(rt, result.archive, result.lockHeldMs, attempt);
        // Added back NOT VALID in the swap; validated now, outside its lock (SHARE UPDATE EXCLUSIVE).
        enginesOf(this.ctx).destination.validateForeignKeysLater(result.validateLater, log, result.runId);
        return;
      } catch (err) {
        const destination = enginesOf(this.ctx).destination;
        const e = destination.classifyError(`swapping ${TableName.format(rt.target)}`, err);
        const lockTimeout = destination.isLockTimeout(e);
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

