/**
 * `sluice inplace retry-failed JOB`: once the cause is fixed, the rows a finished run sent to the
 * dead-letter table are tried again, one by one, each in a transaction with its own chunk record
 * (bounds (key, key]: exactly that row) and the dead letter marked resolved, so that the run's totals
 * and the ledger stay exact. A row that fails again stays, its error and attempts updated.
 */
import type pg from 'pg';
import { SluiceError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { readTable } from './catalog.js';
import type { InplaceJob } from './job.js';
import { ensureLedger, lastChunk, lastRun, recordChunk, resealRun, type RunRow } from './ledger.js';
import { connect, JOB_LOCK_CLASS } from './runner.js';
import { chunkSql, type Key } from './statements.js';
import { resolveTargets } from './targets.js';

export interface RetryResult {
  run: RunRow;
  resolved: number;
  failing: { key: Key; error: string }[];
}

export async function retryFailed(job: InplaceJob, o: { databaseUrl: string; logger: Logger }): Promise<RetryResult> {
  const c = await connect(o.databaseUrl, job, 'retry');
  try {
    await ensureLedger(c);
    if (!(await c.query(`SELECT pg_try_advisory_lock(${JOB_LOCK_CLASS}, hashtext($1)) AS ok`, [job.job])).rows[0].ok) {
      throw new SluiceError('BAD_USAGE', `job ${job.job} is running in another process: retry its failed rows once it is done`);
    }
    const run = await lastRun(c, job.job);
    if (!run) throw new SluiceError('BAD_USAGE', `job ${job.job} has not run yet: nothing to retry`);
    if (run.state !== 'done') throw new SluiceError('BAD_USAGE', `run ${run.id} of ${job.job} is ${run.state}: \`sluice inplace run\` finishes it first (its failed rows are retried after)`);
    const facts = await readTable(c, job.table);
    const targets = { ...(await resolveTargets(c, job, facts)), exactKey: true };
    const sql = chunkSql(job, facts, false, false, targets);
    const letters = (await c.query(`SELECT id::int AS id, key FROM _sluice.inplace_dead_letters WHERE run_id = $1 AND resolved_at IS NULL ORDER BY id`, [run.id])).rows as { id: number; key: Key }[];
    let resolved = 0;
    const failing: RetryResult['failing'] = [];
    for (const l of letters) {
      const seq = ((await lastChunk(c, run.id))?.seq ?? 0) + 1;
      await c.query('BEGIN');
      try {
        const r = await c.query(sql.text, targets.imageColumns ? [...l.key, String(run.id), String(seq)] : l.key);
        const n = sql.counted ? Number(r.rows[0].n) : (r.rowCount ?? 0);
        await recordChunk(c, run.id, { seq, lo: l.key, hi: l.key, rowsScanned: 0, rowsAffected: n, durationMs: 0, walBytes: 0, retries: 0, throttleWaitMs: 0, final: false });
        await c.query(`UPDATE _sluice.inplace_dead_letters SET resolved_at = clock_timestamp() WHERE id = $1`, [l.id]);
        await c.query(`UPDATE _sluice.inplace_runs SET dead_letters = dead_letters - 1 WHERE id = $1`, [run.id]);
        await resealRun(c, run.id);
        await c.query('COMMIT');
        resolved++;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        const e = err as pg.DatabaseError;
        if (!e.code) throw err;
        await c.query(`UPDATE _sluice.inplace_dead_letters SET attempts = attempts + 1, error = $2, sqlstate = $3 WHERE id = $1`, [l.id, errorMessage(err), e.code]);
        failing.push({ key: l.key, error: errorMessage(err) });
      }
    }
    o.logger.info('failed rows retried', { job: job.job, run: run.id, resolved, stillFailing: failing.length });
    return { run: (await lastRun(c, job.job))!, resolved, failing };
  } finally {
    await c.end().catch(() => undefined);
  }
}
