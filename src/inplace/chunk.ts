/**
 * One chunk of an in-place job: the key range is found, then the DML and the chunk's ledger record
 * commit in one transaction (contract 12), under the job's lock and statement timeouts. What a
 * failure means for the next attempt is decided here (the failure ladder, docs/inplace.md):
 * - lock timeout, deadlock, serialization failure: the same chunk again after a jittered wait; after
 *   `retries` attempts, half the chunk;
 * - statement timeout: half the chunk;
 * - an error in the data (a constraint, a cast, a raised exception): half the chunk, down to one row,
 *   which then goes to the dead-letter table with its key and error, in the transaction that records
 *   its chunk, and the run goes on.
 */
import type pg from 'pg';
import { chunkSql, boundarySql, rangeParams, qualifiedName, rangeWhere, type ChunkTargets, type JobTable, type Key, type TimeWindow } from './statements.js';
import { recordChunk, type ChunkRecord } from './ledger.js';
import type { InplaceJob } from './job.js';

export interface ChunkPlan {
  seq: number;
  lo: Key | null;
  /** Rows of the key range (its width); the last chunk may hold fewer. */
  rows: number;
  /** Day/hour chunks: the window the key range lies in; `last` when it ends the run's scope. */
  window?: TimeWindow & { planned: number | null; last: boolean };
}

export type ChunkOutcome =
  | { kind: 'committed'; record: ChunkRecord; last: boolean; deadLetter: boolean }
  | { kind: 'retry'; error: pg.DatabaseError }
  | { kind: 'split'; error: pg.DatabaseError };

const RETRY_SAME = new Set(['55P03', '40P01', '40001']);
const TIMEOUT = '57014';

/** Errors in the rows themselves: data exceptions (22), integrity violations (23), raised exceptions (P0001). */
export function isDataError(code: string | undefined): boolean {
  return !!code && (code.startsWith('22') || code.startsWith('23') || code === 'P0001');
}

export function isChunkRetryable(code: string | undefined): boolean {
  return !!code && RETRY_SAME.has(code);
}

/** The inclusive upper key of a range `rows` wide after `lo`, or null when fewer rows are left. */
export async function boundary(c: pg.ClientBase, t: JobTable, lo: Key | null, rows: number, window?: TimeWindow): Promise<Key | null> {
  const r = await c.query({ text: boundarySql(t, lo !== null), values: [...rangeParams(lo, null, window), rows - 1], rowMode: 'array' });
  return r.rows[0] ? (r.rows[0] as string[]) : null;
}

/** Rows of the key range (lo, hi]: counted on the key index (bounded by the chunk's width). */
async function rangeRows(c: pg.ClientBase, t: JobTable, lo: Key | null, hi: Key | null, window?: TimeWindow): Promise<number> {
  const r = await c.query(`SELECT count(*)::int8 AS n FROM ${qualifiedName(t)} WHERE ${rangeWhere(t, lo !== null, hi !== null, '')}`, rangeParams(lo, hi, window));
  return Number(r.rows[0].n);
}

/**
 * Runs one chunk. Returns what happened; throws only for errors no attempt can fix (the run then
 * fails with them) — and for a lost connection, after which the caller reads the ledger to learn
 * whether the chunk committed.
 */
export async function runChunk(
  c: pg.ClientBase,
  job: InplaceJob,
  t: JobTable,
  runId: number,
  plan: ChunkPlan,
  meta: { retries: number; throttleWaitMs: number },
  targets: ChunkTargets = {},
): Promise<ChunkOutcome> {
  const hi = await boundary(c, t, plan.lo, plan.rows, plan.window);
  const params = rangeParams(plan.lo, hi, plan.window);
  const started = performance.now();
  await c.query('BEGIN');
  try {
    const wal0 = (await c.query(`SELECT pg_current_wal_insert_lsn()::text AS l`)).rows[0].l as string;
    const st = chunkSql(job, t, plan.lo !== null, hi !== null, targets);
    const r = await c.query(st.text, targets.imageColumns ? [...params, String(runId), String(plan.seq)] : params);
    if (job.markWal) await c.query(`SELECT pg_logical_emit_message(true, 'sluice.inplace', $1)`, [JSON.stringify({ job: job.job, run: runId, seq: plan.seq })]);
    const walBytes = Number((await c.query(`SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::int8 AS b`, [wal0])).rows[0].b);
    const rowsScanned = hi === null ? await rangeRows(c, t, plan.lo, null, plan.window) : plan.rows;
    const record: ChunkRecord = {
      seq: plan.seq,
      lo: plan.lo,
      hi,
      rowsScanned,
      rowsAffected: st.counted ? Number(r.rows[0].n) : (r.rowCount ?? 0),
      durationMs: performance.now() - started,
      walBytes,
      retries: meta.retries,
      throttleWaitMs: meta.throttleWaitMs,
      window: windowOf(plan),
      final: hi === null && (!plan.window || plan.window.last),
    };
    await recordChunk(c, runId, record);
    await c.query('COMMIT');
    return { kind: 'committed', record, last: record.final, deadLetter: false };
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    const e = err as pg.DatabaseError;
    if (isChunkRetryable(e.code)) return { kind: 'retry', error: e };
    if (e.code === TIMEOUT || isDataError(e.code)) {
      if (plan.rows > 1) return { kind: 'split', error: e };
      if (isDataError(e.code) || e.code === TIMEOUT) return deadLetter(c, t, runId, plan, hi, e, meta);
    }
    throw err;
  }
}

/** A one-row chunk that fails on its own: recorded as done with no rows, its key and error kept. */
async function deadLetter(
  c: pg.ClientBase,
  t: JobTable,
  runId: number,
  plan: ChunkPlan,
  hi: Key | null,
  e: pg.DatabaseError,
  meta: { retries: number; throttleWaitMs: number },
): Promise<ChunkOutcome> {
  // The failing row is the range's only row: its key is hi (or, for an open last range, the next key).
  const key = hi ?? (await boundary(c, t, plan.lo, 1, plan.window));
  if (!key) throw e;
  const record: ChunkRecord = { seq: plan.seq, lo: plan.lo, hi: key, rowsScanned: 1, rowsAffected: 0, durationMs: 0, walBytes: 0, retries: meta.retries, throttleWaitMs: meta.throttleWaitMs, window: windowOf(plan), final: false };
  await c.query('BEGIN');
  try {
    await recordChunk(c, runId, record, { key, error: e.message, sqlstate: e.code });
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return { kind: 'committed', record, last: false, deadLetter: true };
}

/** A chunk's window as recorded: the window's planned rows go with its first chunk. */
function windowOf(plan: ChunkPlan): ChunkRecord['window'] {
  return plan.window ? { from: plan.window.from, to: plan.window.to, planned: plan.lo === null ? plan.window.planned : null } : undefined;
}
