/**
 * `sluice rollback TABLE`: the table an online backfill replaced comes back. The newest kept archive
 * stands at the position of the swap that archived it (its cursor), and the change log has kept the
 * table's changes since (TableRuntime.rollbackFrom bounds the purge). The destination makes the
 * archive the table's staging table again (ApplySession.restoreArchive); from then on it is an online
 * backfill whose load is done: the Applier replays the changes since the swap into it and, drained,
 * asks the Swapper, which swaps it in under the swap's lock rules (short lock_timeout, retried with
 * backoff, readers never see the table missing). The table it replaces becomes the newest archive,
 * with a cursor of its own, so a rollback can itself be rolled back while that archive is kept.
 *
 * Crash-safe by construction: the restore is one destination transaction that leaves the state of an
 * online backfill in `catching_up` with its staging cursor, which a restart resumes like any other.
 */
import { hostname } from 'node:os';
import { Position, TableName } from '../core/types.js';
import type { Applier } from './applier.js';
import { enginesOf, type PipelineContext } from './context.js';
import type { TableRuntime } from './runtime.js';

export interface RollbackRequest {
  readonly requestId: number | null;
  readonly actor: string | null;
  readonly keepArchive: boolean;
}

/** Why `rt` cannot be rolled back now, or null. `busy`: a backfill of it runs or waits in the queue. */
export function rollbackRefusal(rt: TableRuntime, busy: boolean): string | null {
  if (busy || rt.staging || rt.state !== 'streaming') {
    return `refused: ${rt.name} is ${rt.staging ? `${rt.state} (an online backfill or rollback is under way)` : rt.state}; a rollback starts from a streaming table: wait for it, or \`sluice cancel ${rt.name}\` first`;
  }
  return null;
}

/** Restores the archive as the staging table; the Applier and Swapper take it from there. Returns the request's outcome. */
export async function startRollback(ctx: PipelineContext, applier: Applier, rt: TableRuntime, req: RollbackRequest): Promise<string> {
  return applier.exclusive(rt, async (session) => {
    if (!session.restoreArchive) return `refused: ${enginesOf(ctx).destination.type} destinations cannot roll back a table yet`;
    const restored = await session.restoreArchive({
      name: rt.name,
      live: rt.target,
      lockTimeoutMs: ctx.cfg.online.swapLockTimeoutMs,
      requestId: req.requestId,
      actor: req.actor,
      host: hostname(),
      version: ctx.version,
    });
    session.forget([restored.staging]);
    // Under the table's apply lock: the Applier finds the staging target, with its cursor, on its next turn.
    rt.staging = { target: restored.staging, cursor: restored.at };
    rt.state = 'catching_up';
    rt.mode = 'online';
    rt.keepArchive = req.keepArchive;
    rt.rollbackFrom = null;
    rt.error = null;
    rt.detail = `rolling back to ${restored.archive}: replaying the changes since its swap`;
    ctx.logger.info('rollback: the archive is the staging table again; replaying the changes since its swap, then swapping it in', {
      table: rt.name,
      archive: restored.archive,
      from: restored.at.lsn,
      indexesBuilt: restored.indexesBuilt.length ? restored.indexesBuilt : undefined,
    });
    const built = restored.indexesBuilt.length ? `; built ${restored.indexesBuilt.length} index(es) the archive lacked` : '';
    return `rolling back to ${restored.archive} (run ${restored.runId}): replaying changes since its swap into ${TableName.format(restored.staging)}, then swapping it in${built}`;
  });
}

/**
 * The rollback position of a table from its cursors: a cursor of a target that is neither its live
 * table nor its staging table is its newest kept archive's (the swap writes it, dropping the archive
 * deletes it). The earliest, should there be several.
 */
export function rollbackPosition(cursors: Iterable<{ name: string; target: string; position: Position }>, name: string, current: readonly (string | null)[]): Position | null {
  let out: Position | null = null;
  for (const c of cursors) {
    if (c.name !== name || current.includes(c.target)) continue;
    if (out === null || Position.compare(c.position, out) < 0) out = c.position;
  }
  return out;
}
