/**
 * The audit ledger of in-place jobs, in the job's own database (schema `_sluice`), so that a chunk's
 * record commits in the same transaction as the chunk's DML (contract 12: exactly once).
 *
 * - inplace_runs: one row per run — who, why, the statement and its sha256, the job as given, sluice's
 *   version and commit, the database's system_identifier, start, end, outcome. Each run's `hash`
 *   covers its opening record and the previous run's hash (a chain: an edited or deleted run breaks
 *   it); `outcome_hash` covers the hash and the outcome once the run ends.
 * - inplace_chunks: one row per committed chunk — key bounds, rows, duration, WAL bytes, retries,
 *   throttle waits. Never the rows' values.
 * - inplace_images (jobs with undo): each changed row's key, and the columns it sets before and after,
 *   as text, written by the chunk's own statement; `revert` restores from them.
 * - inplace_dead_letters: the key and error of each row that failed on its own.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import { osUser } from '../core/os-user.js';
import type { Key } from './statements.js';

export const LEDGER_DDL = `
CREATE SCHEMA IF NOT EXISTS _sluice;
CREATE TABLE IF NOT EXISTS _sluice.inplace_runs (
  id               bigserial PRIMARY KEY,
  job              text NOT NULL,
  table_name       text NOT NULL,
  kind             text NOT NULL,
  statement        text NOT NULL,
  statement_sha256 text NOT NULL,
  params           jsonb NOT NULL,
  reason           text NOT NULL,
  actor            text,
  host             text,
  sluice_version   text NOT NULL,
  git_commit       text,
  system_identifier text NOT NULL,
  started_at       timestamptz NOT NULL,
  prev_hash        text,
  hash             text NOT NULL,
  state            text NOT NULL DEFAULT 'running',
  requested        text,
  throttle_override jsonb,
  ended_at         timestamptz,
  rows_affected    bigint NOT NULL DEFAULT 0,
  rows_scanned     bigint NOT NULL DEFAULT 0,
  chunks           int NOT NULL DEFAULT 0,
  dead_letters     int NOT NULL DEFAULT 0,
  error            text,
  outcome_hash     text
);
CREATE INDEX IF NOT EXISTS inplace_runs_job ON _sluice.inplace_runs (job, id);
CREATE TABLE IF NOT EXISTS _sluice.inplace_chunks (
  run_id          bigint NOT NULL REFERENCES _sluice.inplace_runs (id),
  seq             int NOT NULL,
  lo              jsonb,
  hi              jsonb,
  rows_scanned    bigint NOT NULL,
  rows_affected   bigint NOT NULL,
  duration_ms     int NOT NULL,
  wal_bytes       bigint NOT NULL,
  retries         int NOT NULL,
  throttle_wait_ms int NOT NULL,
  win_from        text,
  win_to          text,
  planned         bigint,
  final           boolean NOT NULL DEFAULT false,
  committed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS _sluice.inplace_images (
  run_id bigint NOT NULL,
  seq    int NOT NULL,
  key    jsonb NOT NULL,
  before jsonb NOT NULL,
  after  jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS inplace_images_chunk ON _sluice.inplace_images (run_id, seq);
CREATE TABLE IF NOT EXISTS _sluice.inplace_dead_letters (
  id       bigserial PRIMARY KEY,
  run_id   bigint NOT NULL REFERENCES _sluice.inplace_runs (id),
  key      jsonb NOT NULL,
  error    text NOT NULL,
  sqlstate text,
  at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  attempts int NOT NULL DEFAULT 1,
  resolved_at timestamptz
);`;

export type RunState = 'running' | 'paused' | 'done' | 'failed' | 'cancelled';

export interface RunRow {
  id: number;
  job: string;
  table_name: string;
  kind: string;
  statement: string;
  statement_sha256: string;
  params: unknown;
  reason: string;
  actor: string | null;
  host: string | null;
  sluice_version: string;
  git_commit: string | null;
  system_identifier: string;
  started_at: string;
  prev_hash: string | null;
  hash: string;
  state: RunState;
  requested: string | null;
  throttle_override: Record<string, unknown> | null;
  ended_at: string | null;
  rows_affected: number;
  rows_scanned: number;
  chunks: number;
  dead_letters: number;
  error: string | null;
  outcome_hash: string | null;
}

export interface ChunkRecord {
  seq: number;
  lo: Key | null;
  hi: Key | null;
  /** Day/hour chunks: the time window the chunk lies in, and the rows of it planned (on the window's first chunk). */
  window?: { from: string; to: string; planned: number | null };
  /** The run's last chunk. */
  final: boolean;
  rowsScanned: number;
  rowsAffected: number;
  durationMs: number;
  walBytes: number;
  retries: number;
  throttleWaitMs: number;
}

export interface NewRun {
  job: string;
  table: string;
  kind: string;
  statement: string;
  params: unknown;
  reason: string;
  version: string;
  gitCommit: string | null;
  systemIdentifier: string;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
export const statementSha = sha256;

/** Serializes values for hashing: keys sorted, so a jsonb round trip hashes the same. */
function canonical(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v ?? null);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
}

/** The hash of a run's opening record, chained to the previous run's. */
export function openingHash(r: Pick<RunRow, 'id' | 'job' | 'table_name' | 'kind' | 'statement' | 'statement_sha256' | 'params' | 'reason' | 'actor' | 'host' | 'sluice_version' | 'git_commit' | 'system_identifier' | 'started_at' | 'prev_hash'>): string {
  return sha256(
    canonical([r.prev_hash, r.id, r.job, r.table_name, r.kind, r.statement, r.statement_sha256, r.params, r.reason, r.actor, r.host, r.sluice_version, r.git_commit, r.system_identifier, new Date(r.started_at).toISOString()]),
  );
}

export function outcomeHash(r: Pick<RunRow, 'hash' | 'state' | 'ended_at' | 'rows_affected' | 'rows_scanned' | 'chunks' | 'dead_letters' | 'error'>): string {
  return sha256(canonical([r.hash, r.state, r.ended_at ? new Date(r.ended_at).toISOString() : null, Number(r.rows_affected), Number(r.rows_scanned), r.chunks, r.dead_letters, r.error]));
}

export async function ensureLedger(c: pg.ClientBase): Promise<void> {
  // Concurrent first runs: one creates, the others wait on the lock and find it made.
  await c.query('BEGIN');
  try {
    await c.query(`SELECT pg_advisory_xact_lock(hashtext('sluice.inplace.ledger'))`);
    await c.query(LEDGER_DDL);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

const RUN_COLUMNS = `id::int AS id, job, table_name, kind, statement, statement_sha256, params, reason, actor, host, sluice_version, git_commit,
  system_identifier, started_at::text AS started_at, prev_hash, hash, state, requested, throttle_override, ended_at::text AS ended_at,
  rows_affected::float8 AS rows_affected, rows_scanned::float8 AS rows_scanned, chunks, dead_letters, error, outcome_hash`;

/** Opens a run: its row, hashed and chained to the last run, in one transaction under the ledger's lock. */
export async function openRun(c: pg.ClientBase, n: NewRun): Promise<RunRow> {
  await c.query('BEGIN');
  try {
    await c.query(`SELECT pg_advisory_xact_lock(hashtext('sluice.inplace.ledger'))`);
    const prev = (await c.query(`SELECT hash FROM _sluice.inplace_runs ORDER BY id DESC LIMIT 1`)).rows[0]?.hash ?? null;
    const ins = await c.query(
      `INSERT INTO _sluice.inplace_runs (job, table_name, kind, statement, statement_sha256, params, reason, actor, host,
         sluice_version, git_commit, system_identifier, started_at, prev_hash, hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, date_trunc('milliseconds', clock_timestamp()), $13, '')
       RETURNING ${RUN_COLUMNS}`,
      [n.job, n.table, n.kind, n.statement, sha256(n.statement), JSON.stringify(n.params), n.reason, osUser(), hostname(), n.version, n.gitCommit, n.systemIdentifier, prev],
    );
    const row = ins.rows[0] as RunRow;
    row.hash = openingHash(row);
    await c.query(`UPDATE _sluice.inplace_runs SET hash = $2 WHERE id = $1`, [row.id, row.hash]);
    await c.query('COMMIT');
    return row;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** The job's last run of its own (a revert is a run of kind 'revert' beside it: see revertOf). */
export async function lastRun(c: pg.ClientBase, job: string): Promise<RunRow | undefined> {
  return (await c.query(`SELECT ${RUN_COLUMNS} FROM _sluice.inplace_runs WHERE job = $1 AND kind <> 'revert' ORDER BY id DESC LIMIT 1`, [job])).rows[0];
}

/** The latest revert of a run, if any. */
export async function revertOf(c: pg.ClientBase, runId: number): Promise<RunRow | undefined> {
  return (await c.query(`SELECT ${RUN_COLUMNS} FROM _sluice.inplace_runs WHERE kind = 'revert' AND (params->>'reverts')::int8 = $1 ORDER BY id DESC LIMIT 1`, [runId])).rows[0];
}

export async function runById(c: pg.ClientBase, id: number): Promise<RunRow | undefined> {
  return (await c.query(`SELECT ${RUN_COLUMNS} FROM _sluice.inplace_runs WHERE id = $1`, [id])).rows[0];
}

export interface LastChunk {
  seq: number;
  hi: Key | null;
  winFrom: string | null;
  winTo: string | null;
  final: boolean;
}

/** The run's last committed chunk (where the run resumes). */
export async function lastChunk(c: pg.ClientBase, runId: number): Promise<LastChunk | undefined> {
  const r = await c.query(`SELECT seq, hi, win_from AS "winFrom", win_to AS "winTo", final FROM _sluice.inplace_chunks WHERE run_id = $1 ORDER BY seq DESC LIMIT 1`, [runId]);
  return r.rows[0] as LastChunk | undefined;
}

/** Records a chunk; called inside the chunk's transaction, after its DML. */
export async function recordChunk(c: pg.ClientBase, runId: number, k: ChunkRecord, deadLetter?: { key: Key; error: string; sqlstate?: string }): Promise<void> {
  await c.query(
    `INSERT INTO _sluice.inplace_chunks (run_id, seq, lo, hi, rows_scanned, rows_affected, duration_ms, wal_bytes, retries, throttle_wait_ms, win_from, win_to, planned, final)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
    [runId, k.seq, k.lo ? JSON.stringify(k.lo) : null, k.hi ? JSON.stringify(k.hi) : null, k.rowsScanned, k.rowsAffected, Math.round(k.durationMs), k.walBytes, k.retries, Math.round(k.throttleWaitMs),
     k.window?.from ?? null, k.window?.to ?? null, k.window?.planned ?? null, k.final],
  );
  if (deadLetter) {
    await c.query(`INSERT INTO _sluice.inplace_dead_letters (run_id, key, error, sqlstate) VALUES ($1, $2, $3, $4)`, [runId, JSON.stringify(deadLetter.key), deadLetter.error, deadLetter.sqlstate ?? null]);
  }
  await c.query(
    `UPDATE _sluice.inplace_runs SET rows_affected = rows_affected + $2, rows_scanned = rows_scanned + $3, chunks = chunks + 1,
            dead_letters = dead_letters + $4 WHERE id = $1`,
    [runId, k.rowsAffected, k.rowsScanned, deadLetter ? 1 : 0],
  );
}

/** Ends a run (done, failed, cancelled) or marks it paused/running; a final state seals it with its outcome hash. */
export async function setRunState(c: pg.ClientBase, runId: number, state: RunState, error: string | null = null): Promise<void> {
  const final = state === 'done' || state === 'failed' || state === 'cancelled';
  const r = await c.query(
    `UPDATE _sluice.inplace_runs SET state = $2, error = $3, requested = NULL,
            ended_at = CASE WHEN $4 THEN date_trunc('milliseconds', clock_timestamp()) ELSE NULL END
      WHERE id = $1 RETURNING ${RUN_COLUMNS}`,
    [runId, state, error, final],
  );
  const row = r.rows[0] as RunRow;
  await c.query(`UPDATE _sluice.inplace_runs SET outcome_hash = $2 WHERE id = $1`, [runId, final ? outcomeHash(row) : null]);
}

/** Seals a finished run's outcome again after sluice changed it (retry-failed), keeping its state and end. */
export async function resealRun(c: pg.ClientBase, runId: number): Promise<void> {
  const row = (await c.query(`SELECT ${RUN_COLUMNS} FROM _sluice.inplace_runs WHERE id = $1`, [runId])).rows[0] as RunRow;
  await c.query(`UPDATE _sluice.inplace_runs SET outcome_hash = $2 WHERE id = $1`, [runId, outcomeHash(row)]);
}

export interface AuditProblem {
  run: number;
  problem: string;
}

/**
 * Checks the ledger: each run's hash against its record and the previous run's hash, each ended run's
 * outcome hash, and that its chunks add up to its totals. An empty list: the ledger is intact.
 */
export async function checkLedger(c: pg.ClientBase): Promise<{ runs: number; problems: AuditProblem[] }> {
  const runs = (await c.query(`SELECT ${RUN_COLUMNS} FROM _sluice.inplace_runs ORDER BY id`)).rows as RunRow[];
  const sums = new Map<number, { n: number; rows: number; scanned: number }>(
    (await c.query(`SELECT run_id::int AS id, count(*)::int AS n, coalesce(sum(rows_affected), 0)::float8 AS rows, coalesce(sum(rows_scanned), 0)::float8 AS scanned FROM _sluice.inplace_chunks GROUP BY run_id`)).rows.map(
      (r) => [r.id as number, { n: r.n as number, rows: r.rows as number, scanned: r.scanned as number }],
    ),
  );
  const problems: AuditProblem[] = [];
  let prev: string | null = null;
  for (const r of runs) {
    if (r.prev_hash !== prev) problems.push({ run: r.id, problem: `prev_hash ${short(r.prev_hash)} is not the hash of the run before it (${short(prev)}): a run was deleted or edited` });
    if (openingHash(r) !== r.hash) problems.push({ run: r.id, problem: 'its opening record (job, statement, reason, actor, database, start…) does not match its hash: edited' });
    const ended = r.state === 'done' || r.state === 'failed' || r.state === 'cancelled';
    if (ended && outcomeHash(r) !== r.outcome_hash) problems.push({ run: r.id, problem: 'its outcome (state, end, rows, chunks, error) does not match its outcome hash: edited' });
    const s = sums.get(r.id) ?? { n: 0, rows: 0, scanned: 0 };
    if (s.n !== r.chunks || s.rows !== Number(r.rows_affected)) {
      problems.push({ run: r.id, problem: `its chunks add up to ${s.n} chunks and ${s.rows} rows, the run says ${r.chunks} and ${r.rows_affected}: chunk records were edited` });
    }
    prev = r.hash;
  }
  return { runs: runs.length, problems };
}

function short(h: string | null): string {
  return h ? h.slice(0, 12) : 'none';
}
