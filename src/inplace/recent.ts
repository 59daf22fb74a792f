/**
 * The newest in-place runs recorded in a database's ledger (`_sluice.inplace_runs`), for the operator
 * page (`GET /api/v1/inplace`): read-only, one short session, an empty list when the database has no
 * ledger yet (no in-place job ever ran there).
 */
import pg from 'pg';
import { errorMessage, SluiceError } from '../core/errors.js';

export interface RecentInplaceRun {
  job: string;
  runId: number;
  table: string;
  /** `run`, `revert`, `retry-failed`… */
  kind: string;
  state: string;
  /** Asked of the running process and not yet acted on (pause, cancel), else null. */
  requested: string | null;
  rowsAffected: number;
  rowsScanned: number;
  chunks: number;
  deadLetters: number;
  startedAt: string;
  endedAt: string | null;
  reason: string;
  /** user@host of whoever started it. */
  who: string | null;
  error: string | null;
}

export async function recentInplaceRuns(url: string, limit = 20): Promise<RecentInplaceRun[]> {
  const c = new pg.Client({ connectionString: url, application_name: 'sluice inplace list' });
  c.on('error', () => undefined);
  try {
    await c.connect();
  } catch (err) {
    throw new SluiceError('SOURCE_UNREACHABLE', `cannot connect to the source to read its in-place runs: ${errorMessage(err)} (check source.url)`, { cause: err });
  }
  try {
    if (!(await c.query(`SELECT to_regclass('_sluice.inplace_runs') IS NOT NULL AS ok`)).rows[0].ok) return [];
    const rows = (
      await c.query(
        `SELECT id::int8::float8 AS id, job, table_name, kind, state, requested, rows_affected::float8 AS rows_affected,
                rows_scanned::float8 AS rows_scanned, chunks, dead_letters, started_at, ended_at, reason, actor, host, error
           FROM _sluice.inplace_runs ORDER BY id DESC LIMIT $1`,
        [limit],
      )
    ).rows;
    return rows.map((r) => ({
      job: r.job,
      runId: Number(r.id),
      table: r.table_name,
      kind: r.kind,
      state: r.state,
      requested: r.requested ?? null,
      rowsAffected: Number(r.rows_affected),
      rowsScanned: Number(r.rows_scanned),
      chunks: Number(r.chunks),
      deadLetters: Number(r.dead_letters),
      startedAt: new Date(r.started_at).toISOString(),
      endedAt: r.ended_at ? new Date(r.ended_at).toISOString() : null,
      reason: r.reason,
      who: r.actor ? `${r.actor}${r.host ? `@${r.host}` : ''}` : null,
      error: r.error ?? null,
    }));
  } finally {
    await c.end().catch(() => undefined);
  }
}
