/**
 * `sluice inplace revert JOB [--run N]`: the way back from an update run with `undo: true`. Chunk by
 * chunk, under the job's throttle, each row goes back to its before-image — only when it still holds
 * the value the job wrote: a row the application changed since is left as it is, and named (kept
 * with the revert run's dead letters). A revert is a run of its own in the ledger (kind `revert`),
 * each of its chunks committed with its record, so it too resumes after a crash and never restores a
 * chunk twice.
 */
import type pg from 'pg';
import { SluiceError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { sleep } from '../core/retry.js';
import { gitCommit } from '../core/code-version.js';
import { readTable, systemIdentifier } from './catalog.js';
import { HealthGate } from './health.js';
import type { InplaceJob } from './job.js';
import { ensureLedger, lastChunk, lastRun, openRun, recordChunk, revertOf, runById, setRunState, statementSha, type RunRow } from './ledger.js';
import { connect, JOB_LOCK_CLASS } from './runner.js';
import { q, qualifiedName, type JobTable, type KeyColumn } from './statements.js';
import { resolveTargets } from './targets.js';

export interface RevertResult {
  revert: RunRow;
  of: RunRow;
  restored: number;
  skipped: number;
  /** Up to 20 keys of rows left as they are. */
  skippedKeys: string[][];
}

/** The statement that restores one chunk's rows. Parameters: the reverted run's id, the chunk's seq. */
export function revertSql(t: JobTable, columns: KeyColumn[]): string {
  const key = t.key.map((c, i) => `(i.key->>${i})::${c.type}`).join(', ');
  const set = columns.map((c, i) => `${q(c.name)} = (i.before->>${i})::${c.type}`).join(', ');
  const now = columns.map((c) => `${q(t.name)}.${q(c.name)}::text`).join(', ');
  const after = columns.map((_, i) => `i.after->>${i}`).join(', ');
  return (
    `UPDATE ${qualifiedName(t)} SET ${set} FROM _sluice.inplace_images i ` +
    `WHERE i.run_id = $1 AND i.seq = $2 AND (${t.key.map((c) => `${q(t.name)}.${q(c.name)}`).join(', ')}) = (${key}) ` +
    `AND ROW(${now}) IS NOT DISTINCT FROM ROW(${after}) RETURNING i.key`
  );
}

export async function revertJob(
  job: InplaceJob,
  o: { databaseUrl: string; version: string; logger: Logger; runId?: number; reason?: string; stopRequested?: () => boolean },
): Promise<RevertResult> {
  const c = await connect(o.databaseUrl, job, 'revert');
  const h = await connect(o.databaseUrl, job, 'health');
  try {
    const facts = await readTable(c, job.table);
    await ensureLedger(c);
    if (!(await c.query(`SELECT pg_try_advisory_lock(${JOB_LOCK_CLASS}, hashtext($1)) AS ok`, [job.job])).rows[0].ok) {
      throw new SluiceError('BAD_USAGE', `job ${job.job} is running in another process: cancel it first (sluice inplace cancel)`);
    }
    const of = o.runId !== undefined ? await runById(c, o.runId) : await lastRun(c, job.job);
    if (!of || of.job !== job.job) throw new SluiceError('BAD_USAGE', `job ${job.job} has no run ${o.runId ?? ''} to revert`.replace('  ', ' '));
    if (of.kind !== 'update' || !(of.params as { undo?: boolean }).undo) {
      throw new SluiceError('BAD_USAGE', `run ${of.id} of ${job.job} kept no before-images (only update jobs with undo: true can be reverted${of.kind === 'archive-delete' ? '; an archive-delete keeps its rows in its archive table' : ''})`);
    }
    if (of.state === 'running' || of.state === 'paused') {
      throw new SluiceError('BAD_USAGE', `run ${of.id} is ${of.state}: \`sluice inplace cancel\` it first, so that it changes no more rows while they are restored`);
    }
    const targets = await resolveTargets(c, job, facts);
    const columns = targets.imageColumns!;
    const statement = revertSql(facts, columns);
    let revert = await revertOf(c, of.id);
    if (revert && revert.state === 'done') throw new SluiceError('BAD_USAGE', `run ${of.id} was reverted already (run ${revert.id}, ${revert.ended_at})`);
    if (revert && revert.statement_sha256 !== statementSha(statement)) throw new SluiceError('BAD_USAGE', `the revert of run ${of.id} (run ${revert.id}) was started by another version of the job; cancel it in the ledger first`);
    if (!revert) {
      const reason = o.reason ?? `revert of run ${of.id}: ${of.reason}`;
      revert = await openRun(c, { job: job.job, table: of.table_name, kind: 'revert', statement, params: { reverts: of.id }, reason, version: o.version, gitCommit: gitCommit(), systemIdentifier: await systemIdentifier(c) });
      o.logger.info('revert started', { job: job.job, run: revert.id, reverts: of.id });
    } else {
      o.logger.info('resuming revert', { job: job.job, run: revert.id, reverts: of.id, chunks: revert.chunks });
    }
    await setRunState(c, revert.id, 'running');
    return await restoreChunks(c, new HealthGate(h, facts.oid, job.throttle, o.logger), job, of, revert, statement, o);
  } finally {
    await c.end().catch(() => undefined);
    await h.end().catch(() => undefined);
  }
}

async function restoreChunks(
  c: pg.Client,
  gate: HealthGate,
  job: InplaceJob,
  of: RunRow,
  revert: RunRow,
  statement: string,
  o: { logger: Logger; stopRequested?: () => boolean },
): Promise<RevertResult> {
  const seqs = (await c.query(`SELECT DISTINCT seq FROM _sluice.inplace_images WHERE run_id = $1 AND seq > coalesce($2::int, 0) ORDER BY seq`, [of.id, (await lastChunk(c, revert.id))?.seq ?? null])).rows.map(
    (r) => r.seq as number,
  );
  for (const seq of seqs) {
    if (o.stopRequested?.()) {
      await setRunState(c, revert.id, 'paused');
      return summary(c, of, revert.id);
    }
    const waited = await gate.waitOpen(() => o.stopRequested?.() ?? false);
    const started = performance.now();
    let restored = 0;
    await c.query('BEGIN');
    try {
      const keys = (await c.query(`SELECT key FROM _sluice.inplace_images WHERE run_id = $1 AND seq = $2`, [of.id, seq])).rows.map((r) => r.key as string[]);
      const done = new Set((await c.query(statement, [of.id, seq])).rows.map((r) => JSON.stringify(r.key)));
      restored = done.size;
      await recordChunk(c, revert.id, { seq, lo: null, hi: null, rowsScanned: keys.length, rowsAffected: restored, durationMs: performance.now() - started, walBytes: 0, retries: 0, throttleWaitMs: waited, final: false });
      for (const k of keys) {
        if (done.has(JSON.stringify(k))) continue;
        await c.query(`INSERT INTO _sluice.inplace_dead_letters (run_id, key, error) VALUES ($1, $2, $3)`, [revert.id, JSON.stringify(k), `changed since run ${of.id} wrote it (or deleted): left as it is`]);
        await c.query(`UPDATE _sluice.inplace_runs SET dead_letters = dead_letters + 1 WHERE id = $1`, [revert.id]);
      }
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      await setRunState(c, revert.id, 'failed', `chunk ${seq}: ${errorMessage(err)}`).catch(() => undefined);
      throw new SluiceError('SOURCE_ERROR', `revert of run ${of.id} failed at its chunk ${seq}: ${errorMessage(err)} (run it again to resume)`, { cause: err });
    }
    const pace = gate.paceMs(restored, 0, performance.now() - started);
    if (pace > 0) await sleep(pace);
  }
  await setRunState(c, revert.id, 'done');
  o.logger.info('revert done', { job: job.job, run: revert.id, reverts: of.id });
  return summary(c, of, revert.id);
}

async function summary(c: pg.ClientBase, of: RunRow, revertId: number): Promise<RevertResult> {
  const revert = (await runById(c, revertId))!;
  const skippedKeys = (await c.query(`SELECT key FROM _sluice.inplace_dead_letters WHERE run_id = $1 ORDER BY at LIMIT 20`, [revertId])).rows.map((r) => r.key as string[]);
  return { revert, of, restored: revert.rows_affected, skipped: revert.dead_letters, skippedKeys };
}
