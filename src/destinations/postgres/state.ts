/**
 * sluice's own state in the destination, schema `_sluice`. Every write that describes data is
 * made in the same transaction as that data (chunk progress with chunk rows, apply cursors with
 * applied changes), so after a crash the state is exactly what the destination holds.
 */
import type pg from 'pg';
import { Lsn, Position, type BackfillMode, type TableState } from '../../core/types.js';
import { hostname } from 'node:os';
import type { PipelineRun, TableRow } from '../destination.js';

export const STATE_SCHEMA = '_sluice';

/** Creating and upgrading the schema (its format, the migrations) is state-format.ts. */
export { ensureStateSchema } from './state-format.js';
export type { TableRow };


export interface CursorRow {
  readonly name: string;
  /** The destination table this cursor belongs to (the live table, or a staging table). */
  readonly target: string;
  readonly position: Position;
  readonly commitTime: Date | null;
  readonly changesApplied: number;
}

export async function stateSchemaExists(client: pg.ClientBase): Promise<boolean> {
  const r = await client.query(`SELECT to_regclass('_sluice.tables') IS NOT NULL AS ok`);
  return r.rows[0].ok;
}

function toTableRow(r: Record<string, unknown>): TableRow {
  const lastKey = r.last_key as unknown;
  return {
    name: r.name as string,
    target: r.target as string,
    state: r.state as TableState,
    mode: (r.mode as BackfillMode | null) ?? null,
    chunkRows: (r.chunk_rows as number | null) ?? null,
    runId: r.run_id === null ? null : Number(r.run_id),
    l0: r.l0_lsn === null ? null : Lsn.parse(r.l0_lsn as string),
    lastKey: lastKey === null ? null : lastKey === 'done' ? 'done' : (lastKey as string[]),
    chunksDone: Number(r.chunks_done),
    rowsCopied: Number(r.rows_copied),
    rowsEstimated: Number(r.rows_estimated),
    rowsPerSecond: Number(r.rows_per_second),
    pendingLsn: r.pending_lsn === null || r.pending_lsn === undefined ? null : Lsn.parse(r.pending_lsn as string),
    lagSeconds: r.lag_seconds === null ? null : Number(r.lag_seconds),
    error: (r.error as string | null) ?? null,
    staging: (r.staging as string | null) ?? null,
    keepArchive: Boolean(r.keep_archive),
    plan: (r.plan as Record<string, unknown> | null) ?? null,
    detail: (r.detail as string | null) ?? null,
    progress: (r.progress as Record<string, unknown> | null | undefined) ?? null,
    updatedAt: r.updated_at as Date,
  };
}

export async function readTables(client: pg.ClientBase, pipeline: string): Promise<TableRow[]> {
  const r = await client.query(`SELECT * FROM _sluice.tables WHERE pipeline = $1 ORDER BY name`, [pipeline]);
  return r.rows.map(toTableRow);
}

export async function readTable(client: pg.ClientBase, pipeline: string, name: string): Promise<TableRow | null> {
  const r = await client.query(`SELECT * FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [pipeline, name]);
  return r.rowCount ? toTableRow(r.rows[0]) : null;
}

/** Every apply cursor of the pipeline, keyed by `cursorKey(name, target)`. */
export async function readCursors(client: pg.ClientBase, pipeline: string): Promise<Map<string, CursorRow>> {
  const r = await client.query(
    `SELECT name, target, lsn::text AS lsn, idx, commit_time, changes_applied FROM _sluice.cursors WHERE pipeline = $1`,
    [pipeline],
  );
  return new Map(
    r.rows.map((x) => [
      cursorKey(x.name, x.target),
      {
        name: x.name as string,
        target: x.target as string,
        position: { lsn: Lsn.parse(x.lsn), idx: Number(x.idx) },
        commitTime: x.commit_time as Date | null,
        changesApplied: Number(x.changes_applied),
      },
    ]),
  );
}

/** The change log the pipeline last ran with, or null. */
export async function knownLogId(client: pg.ClientBase, pipeline: string): Promise<string | null> {
  const r = await client.query(`SELECT log_id FROM _sluice.pipelines WHERE name = $1`, [pipeline]);
  return (r.rows[0]?.log_id as string | undefined) ?? null;
}

/** Records the pipeline as running now (its slot, publication, change log and this process). */
export async function registerPipeline(client: pg.ClientBase, run: PipelineRun): Promise<void> {
  await client.query(
    `INSERT INTO _sluice.pipelines (name, slot, publication, log_id, pid, host, version, started_at, heartbeat_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now())
     ON CONFLICT (name) DO UPDATE SET slot = $2, publication = $3, log_id = $4, pid = $5, host = $6, version = $7, started_at = now(), heartbeat_at = now()`,
    [run.pipeline, run.slot, run.publication, run.logId, process.pid, hostname(), run.version],
  );
}

export function cursorKey(name: string, target: string): string {
  return `${name}\u0000${target}`;
}

export async function deleteCursor(client: pg.ClientBase, pipeline: string, name: string, target: string): Promise<void> {
  await client.query(`DELETE FROM _sluice.cursors WHERE pipeline = $1 AND name = $2 AND target = $3`, [pipeline, name, target]);
}

export async function writeCursor(
  client: pg.ClientBase,
  pipeline: string,
  name: string,
  target: string,
  position: Position,
  commitTimeMs: number | null,
  applied: number,
): Promise<void> {
  await client.query(
    `INSERT INTO _sluice.cursors (pipeline, name, target, lsn, idx, commit_time, applied_at, changes_applied)
     VALUES ($1, $2, $3, $4::pg_lsn, $5, to_timestamp($6::float8 / 1000), now(), $7)
     ON CONFLICT (pipeline, name, target) DO UPDATE SET lsn = EXCLUDED.lsn, idx = EXCLUDED.idx,
       commit_time = coalesce(EXCLUDED.commit_time, _sluice.cursors.commit_time), applied_at = now(),
       changes_applied = _sluice.cursors.changes_applied + EXCLUDED.changes_applied`,
    [pipeline, name, target, Lsn.format(position.lsn), position.idx, commitTimeMs, applied],
  );
}

export async function setTableState(
  client: pg.ClientBase,
  pipeline: string,
  name: string,
  state: TableState,
  fields: Partial<{
    target: string;
    mode: BackfillMode | null;
    chunkRows: number;
    runId: number | null;
    l0: Lsn | null;
    lastKey: string[] | null | 'done';
    chunksDone: number;
    rowsCopied: number;
    rowsEstimated: number;
    error: string | null;
    staging: string | null;
    keepArchive: boolean;
    detail: string | null;
    plan: Record<string, unknown> | null;
    strategy: string;
  }> = {},
): Promise<void> {
  const sets: string[] = ['state = $3', 'updated_at = now()'];
  const params: unknown[] = [pipeline, name, state];
  const add = (col: string, value: unknown, cast = '') => {
    params.push(value);
    sets.push(`${col} = $${params.length}${cast}`);
  };
  if ('target' in fields) add('target', fields.target);
  if ('mode' in fields) add('mode', fields.mode);
  if ('chunkRows' in fields) add('chunk_rows', fields.chunkRows);
  if ('runId' in fields) add('run_id', fields.runId);
  if ('l0' in fields) add('l0_lsn', fields.l0 === null || fields.l0 === undefined ? null : Lsn.format(fields.l0), '::pg_lsn');
  if ('lastKey' in fields) add('last_key', fields.lastKey === null ? null : JSON.stringify(fields.lastKey), '::jsonb');
  if ('chunksDone' in fields) add('chunks_done', fields.chunksDone);
  if ('rowsCopied' in fields) add('rows_copied', fields.rowsCopied);
  if ('rowsEstimated' in fields) add('rows_estimated', fields.rowsEstimated);
  if ('error' in fields) add('error', fields.error);
  if ('staging' in fields) add('staging', fields.staging);
  if ('keepArchive' in fields) add('keep_archive', fields.keepArchive);
  if ('detail' in fields) add('detail', fields.detail);
  if ('plan' in fields) add('plan', fields.plan === null ? null : JSON.stringify(fields.plan), '::jsonb');
  if ('strategy' in fields) add('strategy', fields.strategy);
  await client.query(
    `INSERT INTO _sluice.tables (pipeline, name, target, state) VALUES ($1, $2, $3, 'queued') ON CONFLICT (pipeline, name) DO NOTHING`,
    [pipeline, name, fields.target ?? ''],
  );
  await client.query(`UPDATE _sluice.tables SET ${sets.join(', ')} WHERE pipeline = $1 AND name = $2`, params);
}

export type RunStatus = 'catching_up' | 'done' | 'failed' | 'cancelled';

/**
 * Moves the table's current run (its audit row) to `status`; a finished run (ended_at set) never
 * moves again. 'catching_up' keeps the run open; the others end it.
 */
export async function setRunStatus(client: pg.ClientBase, pipeline: string, name: string, status: RunStatus, error: string | null = null): Promise<void> {
  await client.query(
    `UPDATE _sluice.runs SET status = $3, error = coalesce($4, error), ended_at = CASE WHEN $3 = 'catching_up' THEN NULL ELSE now() END
      WHERE id = (SELECT run_id FROM _sluice.tables WHERE pipeline = $1 AND name = $2) AND ended_at IS NULL`,
    [pipeline, name, status, error],
  );
}

/** Records one copied range chunk (interval, ctid), in the chunk's own transaction. */
export async function recordRangeChunk(
  client: pg.ClientBase,
  pipeline: string,
  name: string,
  runId: number,
  lo: string,
  hi: string | null,
  rows: number,
  rowsPerSecond: number,
): Promise<void> {
  await client.query(
    `INSERT INTO _sluice.chunks (pipeline, table_name, run_id, lo, hi, rows) VALUES ($1, $2, $3, $4, $5, $6)`,
    [pipeline, name, runId, lo, hi, rows],
  );
  await client.query(
    `UPDATE _sluice.tables SET chunks_done = chunks_done + 1, rows_copied = rows_copied + $3, rows_per_second = $4, updated_at = now()
      WHERE pipeline = $1 AND name = $2`,
    [pipeline, name, rows, rowsPerSecond],
  );
  await client.query(`UPDATE _sluice.runs SET chunks = chunks + 1, rows_copied = rows_copied + $2 WHERE id = $1`, [runId, rows]);
}

export async function readRangeChunks(
  client: pg.ClientBase,
  pipeline: string,
  name: string,
  runId: number,
): Promise<{ lo: string; hi: string | null }[]> {
  const r = await client.query(`SELECT lo, hi FROM _sluice.chunks WHERE pipeline = $1 AND table_name = $2 AND run_id = $3`, [pipeline, name, runId]);
  return r.rows;
}

/** Records one copied chunk, in the chunk's own transaction. */
export async function recordChunk(
  client: pg.ClientBase,
  pipeline: string,
  name: string,
  lastKey: string[] | 'done',
  rows: number,
  rowsPerSecond: number,
): Promise<void> {
  await client.query(
    `UPDATE _sluice.tables SET last_key = $3::jsonb, chunks_done = chunks_done + 1, rows_copied = rows_copied + $4,
       rows_per_second = $5, updated_at = now() WHERE pipeline = $1 AND name = $2`,
    [pipeline, name, JSON.stringify(lastKey), rows, rowsPerSecond],
  );
  await client.query(
    `UPDATE _sluice.runs SET chunks = chunks + 1, rows_copied = rows_copied + $3
      WHERE id = (SELECT run_id FROM _sluice.tables WHERE pipeline = $1 AND name = $2)`,
    [pipeline, name, rows],
  );
}

/**
 * Rows of the copy the live table holds when a cancelled run did not replace it: its last finished
 * run's, or a cancelled truncate/drop reload's partial copy if that came later. Called before the
 * cancelled run's own status is set. Without such a run, `otherwise`.
 */
export async function lastDoneRows(c: pg.ClientBase, pipeline: string, name: string, otherwise: number): Promise<number> {
  const r = await c.query(
    `SELECT rows_copied FROM _sluice.runs WHERE pipeline = $1 AND table_name = $2
        AND (status = 'done' OR (status = 'cancelled' AND mode IN ('truncate', 'drop')))
      ORDER BY id DESC LIMIT 1`,
    [pipeline, name],
  );
  return r.rowCount ? Number(r.rows[0].rows_copied) : otherwise;
}
