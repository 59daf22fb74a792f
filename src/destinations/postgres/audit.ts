/** The runs' audit (`_sluice.runs`) and the recorded requests (`_sluice.requests`), read for the operator's page and API. */
import type pg from 'pg';
import type { RequestRow, RunRow } from '../destination.js';
import { stateSchemaExists } from './state.js';

export async function readRuns(c: pg.ClientBase, pipeline: string, table: string | null, limit: number): Promise<RunRow[]> {
  if (!(await stateSchemaExists(c))) return [];
  const r = await c.query(
    `SELECT id, table_name, mode, strategy, where_sql, params, os_user, host, l0_lsn::text AS l0, started_at, ended_at, status, rows_copied, chunks, error
       FROM _sluice.runs WHERE pipeline = $1 AND ($2::text IS NULL OR table_name = $2) ORDER BY id DESC LIMIT $3`,
    [pipeline, table, limit],
  );
  return r.rows.map((x) => ({
    id: Number(x.id),
    table: x.table_name,
    mode: x.mode,
    strategy: x.strategy,
    where: x.where_sql,
    params: x.params ?? {},
    osUser: x.os_user,
    host: x.host,
    l0: x.l0,
    startedAt: x.started_at,
    endedAt: x.ended_at,
    status: x.status,
    rowsCopied: Number(x.rows_copied),
    chunks: Number(x.chunks),
    error: x.error,
  }));
}

export async function readRequests(c: pg.ClientBase, pipeline: string, limit: number): Promise<RequestRow[]> {
  if (!(await stateSchemaExists(c))) return [];
  const r = await c.query(
    `SELECT id, kind, table_name, params, requested_by, requested_at, handled_at, outcome
       FROM _sluice.requests WHERE pipeline = $1 ORDER BY id DESC LIMIT $2`,
    [pipeline, limit],
  );
  return r.rows.map((x) => ({
    id: Number(x.id),
    kind: x.kind,
    table: x.table_name,
    params: x.params ?? {},
    requestedBy: x.requested_by,
    requestedAt: x.requested_at,
    handledAt: x.handled_at,
    outcome: x.outcome,
  }));
}
