/**
 * The end of an online backfill in a PostgreSQL destination, on the apply session's connection
 * (contract 6): the swap itself in one transaction under a short lock_timeout (live → archive in
 * online.archiveSchema, staging → live, with everything carried over: swap.ts), or the cancel that
 * drops the staging table. The bookkeeping (cursors, archive row, the run's status) is written in
 * the same transaction, so a lock timeout or any failure rolls everything back.
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { crashPoint } from '../../core/crash.js';
import { TableName } from '../../core/types.js';
import { withTransaction } from '../../postgres/session.js';
import type { CancelStagingRequest, SwapRequest, SwapResult } from '../destination.js';
import { lowSpaceWarning } from './archive-space.js';
import { ensureArchiveSchema } from './archives.js';
import { qualified } from './dialect.js';
import { deleteCursor, lastDoneRows, setRunStatus, setTableState, writeCursor } from './state.js';
import { archiveName, captureCarried, swapSql } from './swap.js';

export async function swapTables(dst: pg.Client, pipeline: string, req: SwapRequest): Promise<SwapResult> {
  const { live, staging, at } = req;
  const runId = Number((await dst.query(`SELECT run_id FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [pipeline, req.name])).rows[0]?.run_id ?? 0);
  const archive = archiveName(live, runId, req.archiveSchema);
  // Before the transaction: creating the schema is not part of the time readers wait.
  await ensureArchiveSchema(dst, archive.schema);
  await dst.query('BEGIN');
  try {
    await dst.query(`SET LOCAL lock_timeout = '${req.lockTimeoutMs}ms'`);
    // The bookkeeping that needs no table lock comes first, so that it is not part of the time
    // readers wait: the same transaction, so a lock timeout rolls it back with the rest.
    await deleteCursor(dst, pipeline, req.name, TableName.format(staging));
    // Only the newest archive of a table can be rolled back (`sluice rollback`): an older one's cursor goes.
    await dst.query(`DELETE FROM _sluice.cursors WHERE pipeline = $1 AND name = $2 AND target <> $3`, [pipeline, req.name, TableName.format(live)]);
    // The new live table stands where the staging table stood (a live table without a cursor gets one).
    await writeCursor(dst, pipeline, req.name, TableName.format(live), at, null, 0);
    // The archive stands at the same position: a rollback replays into it from there (the change log keeps it).
    await writeCursor(dst, pipeline, req.name, TableName.format(archive), at, null, 0);
    // A row without its table (left by a swap whose statements once ran outside its transaction)
    // is taken over rather than failing every attempt on the key.
    await dst.query(
      `INSERT INTO _sluice.archives (pipeline, table_name, archive, run_id, drop_after)
       VALUES ($1, $2, $3, $4, CASE WHEN $5::boolean THEN NULL ELSE now() + make_interval(secs => $6::float8 * 3600) END)
       ON CONFLICT (pipeline, archive) DO UPDATE SET table_name = EXCLUDED.table_name, run_id = EXCLUDED.run_id,
         created_at = now(), drop_after = EXCLUDED.drop_after, dropped_at = NULL`,
      [pipeline, req.name, TableName.format(archive), runId, req.keepArchive, req.archiveRetentionHours],
    );
    await setTableState(dst, pipeline, req.name, 'streaming', { staging: null, detail: null, error: null, l0: null });
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
      [runId, req.attempt, TableName.format(archive), Math.round(heldSoFar * 100) / 100, JSON.stringify(validate)],
    );
    await dst.query('COMMIT');
    const lockHeldMs = performance.now() - lockedAt;
    const lowSpace = await lowSpaceWarning(dst, req.lowFreeSpacePercent).catch(() => null);
    return { archive, lockHeldMs, runId, validateLater: validate, lowSpace };
  } catch (err) {
    await dst.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Drops the staging table and records the cancel; returns the rows of the copy the live table holds. */
export async function cancelStaging(dst: pg.Client, pipeline: string, req: CancelStagingRequest): Promise<number> {
  return withTransaction(dst, async () => {
    await dst.query(`DROP TABLE IF EXISTS ${qualified(req.staging)}`);
    await deleteCursor(dst, pipeline, req.name, TableName.format(req.staging));
    // The live table is untouched: COPIED counts the run that loaded it, not the staging table's rows.
    const rowsCopied = await lastDoneRows(dst, pipeline, req.name, req.rowsCopiedIfUnknown);
    await setTableState(dst, pipeline, req.name, req.state, { l0: null, lastKey: null, staging: null, detail: null, rowsCopied });
    await setRunStatus(dst, pipeline, req.name, 'cancelled');
    return rowsCopied;
  });
}
