/**
 * sluice's own state in a DuckDB destination, schema `_sluice`: the same tables and columns as the
 * PostgreSQL destination keeps (destinations/postgres/state-format.ts, format 2), in DuckDB types
 * (LSNs as UBIGINT, jsonb as JSON). As there, every write that describes data is made in the same
 * transaction as that data (a chunk's progress with the chunk's rows, a cursor with the batch it
 * applied), by calling these functions inside `DuckDbFile.transaction()`; a crash at any point
 * leaves the state saying exactly what the file holds.
 *
 * No PRIMARY KEY on these tables: one process writes the file (connection.ts), so an upsert is an
 * UPDATE followed by an INSERT of what it did not find, and DuckDB's index checks stay out of the
 * transactions that write data.
 */
import { SluiceError } from '../../core/errors.js';
import { Lsn, type BackfillMode, type Position, type TableState } from '../../core/types.js';
import type { DuckDbFile } from './connection.js';

/** The format of the state this sluice reads and writes; matches the PostgreSQL destination's. */
export const DUCKDB_STATE_FORMAT = 2;

export const STATE_DDL = `
CREATE SCHEMA IF NOT EXISTS _sluice;
CREATE TABLE IF NOT EXISTS _sluice.meta (key VARCHAR NOT NULL, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS _sluice.pipelines (
  name VARCHAR NOT NULL, slot VARCHAR NOT NULL, publication VARCHAR NOT NULL, log_id VARCHAR, throttle JSON,
  pid INTEGER, host VARCHAR, version VARCHAR, started_at TIMESTAMPTZ, heartbeat_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS _sluice.tables (
  pipeline VARCHAR NOT NULL, name VARCHAR NOT NULL, target VARCHAR NOT NULL, state VARCHAR NOT NULL, mode VARCHAR,
  strategy VARCHAR NOT NULL DEFAULT 'keyset', chunk_rows INTEGER, run_id BIGINT, l0_lsn UBIGINT, last_key JSON,
  chunks_done BIGINT NOT NULL DEFAULT 0, rows_copied BIGINT NOT NULL DEFAULT 0, rows_estimated BIGINT NOT NULL DEFAULT 0,
  rows_per_second DOUBLE NOT NULL DEFAULT 0, pending_lsn UBIGINT, lag_seconds DOUBLE, error VARCHAR, staging VARCHAR,
  plan JSON, keep_archive BOOLEAN NOT NULL DEFAULT false, detail VARCHAR, requested_seq BIGINT NOT NULL DEFAULT 0,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS _sluice.cursors (
  pipeline VARCHAR NOT NULL, name VARCHAR NOT NULL, target VARCHAR NOT NULL, lsn UBIGINT NOT NULL, idx BIGINT NOT NULL,
  commit_time TIMESTAMPTZ, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), changes_applied BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS _sluice.chunks (
  pipeline VARCHAR NOT NULL, table_name VARCHAR NOT NULL, run_id BIGINT NOT NULL, lo VARCHAR NOT NULL, hi VARCHAR,
  rows BIGINT NOT NULL, done_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS _sluice.archives (
  pipeline VARCHAR NOT NULL, table_name VARCHAR NOT NULL, archive VARCHAR NOT NULL, run_id BIGINT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(), drop_after TIMESTAMPTZ, dropped_at TIMESTAMPTZ
);
CREATE SEQUENCE IF NOT EXISTS _sluice.run_ids;
CREATE TABLE IF NOT EXISTS _sluice.runs (
  id BIGINT NOT NULL DEFAULT nextval('_sluice.run_ids'), pipeline VARCHAR NOT NULL, table_name VARCHAR NOT NULL,
  mode VARCHAR NOT NULL, strategy VARCHAR NOT NULL, where_sql VARCHAR NOT NULL DEFAULT '', params JSON NOT NULL DEFAULT '{}',
  version VARCHAR, os_user VARCHAR, host VARCHAR, pid INTEGER, l0_lsn UBIGINT, started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  ended_at TIMESTAMPTZ, status VARCHAR NOT NULL DEFAULT 'running', rows_copied BIGINT NOT NULL DEFAULT 0,
  chunks BIGINT NOT NULL DEFAULT 0, error VARCHAR
);
CREATE SEQUENCE IF NOT EXISTS _sluice.request_ids;
CREATE TABLE IF NOT EXISTS _sluice.requests (
  id BIGINT NOT NULL DEFAULT nextval('_sluice.request_ids'), pipeline VARCHAR NOT NULL, kind VARCHAR NOT NULL,
  table_name VARCHAR NOT NULL, params JSON NOT NULL DEFAULT '{}', requested_by VARCHAR,
  requested_at TIMESTAMPTZ NOT NULL DEFAULT now(), handled_at TIMESTAMPTZ, outcome VARCHAR
);
`;

/** The format of the file's `_sluice` state; null when there is none. */
export async function readStateFormat(file: DuckDbFile): Promise<number | null> {
  const t = await file.all(`SELECT count(*)::INTEGER AS n FROM duckdb_tables() WHERE schema_name = '_sluice' AND table_name = 'meta'`);
  if (Number(t[0].n) === 0) return null;
  const r = await file.all(`SELECT value FROM _sluice.meta WHERE key = 'format'`);
  const format = Number(r[0]?.value);
  if (!Number.isInteger(format) || format < 1) {
    throw new SluiceError('STATE_FORMAT', `the _sluice state in DuckDB file ${file.path} has no readable format record; restore the file from a backup, or drop schema _sluice to start over (every table reloads)`);
  }
  return format;
}

/** Creates `_sluice` (one transaction), or checks that the one there is readable. Returns the format found. */
export async function ensureStateSchema(file: DuckDbFile): Promise<number | null> {
  return file.transaction(async () => {
    const found = await readStateFormat(file);
    if (found !== null && found > DUCKDB_STATE_FORMAT) {
      throw new SluiceError(
        'STATE_FORMAT',
        `the _sluice state in DuckDB file ${file.path} is format ${found}, this sluice reads formats up to ${DUCKDB_STATE_FORMAT}: upgrade sluice`,
        { context: { format: found, supported: DUCKDB_STATE_FORMAT } },
      );
    }
    if (found === null) {
      await file.run(STATE_DDL);
      await file.run(`INSERT INTO _sluice.meta VALUES ('format', $1)`, [String(DUCKDB_STATE_FORMAT)]);
    }
    return found;
  });
}

export interface TableRow {
  readonly name: string;
  readonly target: string;
  readonly state: TableState;
  readonly mode: BackfillMode | null;
  readonly runId: number | null;
  readonly l0: Lsn | null;
  readonly lastKey: string[] | null | 'done';
  readonly chunksDone: number;
  readonly rowsCopied: number;
  readonly error: string | null;
  readonly staging: string | null;
  readonly plan: Record<string, unknown> | null;
}

const parseJson = (v: unknown): unknown => (v === null || v === undefined ? null : JSON.parse(String(v)));

function toTableRow(r: Record<string, unknown>): TableRow {
  return {
    name: r.name as string,
    target: r.target as string,
    state: r.state as TableState,
    mode: (r.mode as BackfillMode | null) ?? null,
    runId: r.run_id === null ? null : Number(r.run_id),
    l0: r.l0_lsn === null ? null : Lsn.of(BigInt(r.l0_lsn as bigint)),
    lastKey: parseJson(r.last_key) as TableRow['lastKey'],
    chunksDone: Number(r.chunks_done),
    rowsCopied: Number(r.rows_copied),
    error: (r.error as string | null) ?? null,
    staging: (r.staging as string | null) ?? null,
    plan: parseJson(r.plan) as Record<string, unknown> | null,
  };
}

export async function readTables(file: DuckDbFile, pipeline: string): Promise<TableRow[]> {
  return (await file.all(`SELECT * FROM _sluice.tables WHERE pipeline = $1 ORDER BY name`, [pipeline])).map(toTableRow);
}

export async function readTable(file: DuckDbFile, pipeline: string, name: string): Promise<TableRow | null> {
  const r = await file.all(`SELECT * FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [pipeline, name]);
  return r.length ? toTableRow(r[0]) : null;
}

export interface TableFields {
  target: string;
  mode: BackfillMode | null;
  chunkRows: number;
  runId: number | null;
  l0: Lsn | null;
  lastKey: string[] | null | 'done';
  error: string | null;
  staging: string | null;
  plan: Record<string, unknown> | null;
  detail: string | null;
}

const COLUMN: Record<keyof TableFields, string> = {
  target: 'target',
  mode: 'mode',
  chunkRows: 'chunk_rows',
  runId: 'run_id',
  l0: 'l0_lsn',
  lastKey: 'last_key',
  error: 'error',
  staging: 'staging',
  plan: 'plan',
  detail: 'detail',
};

/** Moves a table to `state`, setting the fields given (an absent field keeps its value). */
export async function setTableState(file: DuckDbFile, pipeline: string, name: string, state: TableState, fields: Partial<TableFields> = {}): Promise<void> {
  await file.run(
    `INSERT INTO _sluice.tables (pipeline, name, target, state) SELECT $1, $2, $3, 'queued'
      WHERE NOT EXISTS (SELECT 1 FROM _sluice.tables WHERE pipeline = $1 AND name = $2)`,
    [pipeline, name, fields.target ?? ''],
  );
  const sets = ['state = $3', 'updated_at = now()'];
  const params: (string | number | null)[] = [pipeline, name, state];
  for (const key of Object.keys(fields) as (keyof TableFields)[]) {
    const v = fields[key];
    let value: string | number | null;
    if (v === null || v === undefined) value = null;
    else if (key === 'l0') value = (v as Lsn).toString();
    else if (key === 'lastKey' || key === 'plan') value = JSON.stringify(v);
    else value = v as string | number;
    params.push(value);
    const cast = key === 'l0' ? '::UBIGINT' : key === 'lastKey' || key === 'plan' ? '::JSON' : '';
    sets.push(`${COLUMN[key]} = $${params.length}${cast}`);
  }
  await file.run(`UPDATE _sluice.tables SET ${sets.join(', ')} WHERE pipeline = $1 AND name = $2`, params);
}

export interface CursorRow {
  readonly name: string;
  readonly target: string;
  readonly position: Position;
  readonly changesApplied: number;
}

export async function readCursors(file: DuckDbFile, pipeline: string): Promise<CursorRow[]> {
  const r = await file.all(`SELECT name, target, lsn, idx, changes_applied FROM _sluice.cursors WHERE pipeline = $1 ORDER BY name, target`, [pipeline]);
  return r.map((x) => ({
    name: x.name as string,
    target: x.target as string,
    position: { lsn: Lsn.of(BigInt(x.lsn as bigint)), idx: Number(x.idx) },
    changesApplied: Number(x.changes_applied),
  }));
}

/** Moves a target's apply cursor; call it in the transaction of the batch it describes. */
export async function writeCursor(
  file: DuckDbFile,
  pipeline: string,
  name: string,
  target: string,
  position: Position,
  commitTimeMs: number | null,
  applied: number,
): Promise<void> {
  const params = [pipeline, name, target, position.lsn.toString(), position.idx, commitTimeMs === null ? null : commitTimeMs / 1000, applied];
  await file.run(
    `UPDATE _sluice.cursors SET lsn = $4::UBIGINT, idx = $5, commit_time = coalesce(to_timestamp($6::DOUBLE), commit_time), applied_at = now(),
       changes_applied = changes_applied + $7 WHERE pipeline = $1 AND name = $2 AND target = $3`,
    params,
  );
  await file.run(
    `INSERT INTO _sluice.cursors (pipeline, name, target, lsn, idx, commit_time, changes_applied)
     SELECT $1, $2, $3, $4::UBIGINT, $5, to_timestamp($6::DOUBLE), $7
      WHERE NOT EXISTS (SELECT 1 FROM _sluice.cursors WHERE pipeline = $1 AND name = $2 AND target = $3)`,
    params,
  );
}

export async function deleteCursor(file: DuckDbFile, pipeline: string, name: string, target: string): Promise<void> {
  await file.run(`DELETE FROM _sluice.cursors WHERE pipeline = $1 AND name = $2 AND target = $3`, [pipeline, name, target]);
}

/** Opens the audit record of a backfill run; returns its id. */
export async function startRun(
  file: DuckDbFile,
  run: { pipeline: string; table: string; mode: BackfillMode; strategy: string; l0: Lsn | null; where?: string; version?: string },
): Promise<number> {
  const r = await file.all(
    `INSERT INTO _sluice.runs (pipeline, table_name, mode, strategy, where_sql, version, pid, l0_lsn) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::UBIGINT) RETURNING id`,
    [run.pipeline, run.table, run.mode, run.strategy, run.where ?? '', run.version ?? null, process.pid, run.l0 === null ? null : run.l0.toString()],
  );
  return Number(r[0].id);
}

export type RunStatus = 'catching_up' | 'done' | 'failed' | 'cancelled';

export async function setRunStatus(file: DuckDbFile, pipeline: string, name: string, status: RunStatus, error: string | null = null): Promise<void> {
  await file.run(
    `UPDATE _sluice.runs SET status = $3, error = coalesce($4, error), ended_at = CASE WHEN $3 = 'catching_up' THEN NULL ELSE now() END
      WHERE id = (SELECT run_id FROM _sluice.tables WHERE pipeline = $1 AND name = $2) AND ended_at IS NULL`,
    [pipeline, name, status, error],
  );
}

/** Records one copied keyset chunk; call it in the chunk's transaction. */
export async function recordChunk(file: DuckDbFile, pipeline: string, name: string, lastKey: string[] | 'done', rows: number, rowsPerSecond: number): Promise<void> {
  await file.run(
    `UPDATE _sluice.tables SET last_key = $3::JSON, chunks_done = chunks_done + 1, rows_copied = rows_copied + $4, rows_per_second = $5, updated_at = now()
      WHERE pipeline = $1 AND name = $2`,
    [pipeline, name, JSON.stringify(lastKey), rows, rowsPerSecond],
  );
  await file.run(
    `UPDATE _sluice.runs SET chunks = chunks + 1, rows_copied = rows_copied + $3 WHERE id = (SELECT run_id FROM _sluice.tables WHERE pipeline = $1 AND name = $2)`,
    [pipeline, name, rows],
  );
}

/** Records one copied range chunk (interval, ctid); call it in the chunk's transaction. */
export async function recordRangeChunk(file: DuckDbFile, pipeline: string, name: string, runId: number, lo: string, hi: string | null, rows: number, rowsPerSecond: number): Promise<void> {
  await file.run(`INSERT INTO _sluice.chunks (pipeline, table_name, run_id, lo, hi, rows) VALUES ($1, $2, $3, $4, $5, $6)`, [pipeline, name, runId, lo, hi, rows]);
  await file.run(
    `UPDATE _sluice.tables SET chunks_done = chunks_done + 1, rows_copied = rows_copied + $3, rows_per_second = $4, updated_at = now() WHERE pipeline = $1 AND name = $2`,
    [pipeline, name, rows, rowsPerSecond],
  );
  await file.run(`UPDATE _sluice.runs SET chunks = chunks + 1, rows_copied = rows_copied + $2 WHERE id = $1`, [runId, rows]);
}

export async function readRangeChunks(file: DuckDbFile, pipeline: string, name: string, runId: number): Promise<{ lo: string; hi: string | null }[]> {
  const r = await file.all(`SELECT lo, hi FROM _sluice.chunks WHERE pipeline = $1 AND table_name = $2 AND run_id = $3 ORDER BY lo`, [pipeline, name, runId]);
  return r.map((x) => ({ lo: x.lo as string, hi: (x.hi as string | null) ?? null }));
}

/** The next load sequence of a table's run: one more than the chunks recorded (see dialect.ts, dedupedSelectSql). */
export async function nextLoadSeq(file: DuckDbFile, pipeline: string, name: string): Promise<number> {
  const r = await file.all(`SELECT chunks_done FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [pipeline, name]);
  return r.length ? Number(r[0].chunks_done) + 1 : 1;
}
