/**
 * The finish of a fill: `finish: { notNull: [col] }` makes each column NOT NULL without holding an
 * exclusive lock for a table scan — CHECK (col IS NOT NULL) NOT VALID (instant), VALIDATE (scans
 * under SHARE UPDATE EXCLUSIVE: reads and writes go on), SET NOT NULL (instant: PostgreSQL 12+ proves
 * it from the valid check), then the check is dropped. Each step is idempotent, so a crash between two
 * is finished by running the job again; each waits at most lockTimeoutMs for its lock, and is retried.
 */
import type pg from 'pg';
import { SluiceError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { backoffMs, sleep } from '../core/retry.js';
import type { TableFacts } from './catalog.js';
import type { InplaceJob } from './job.js';
import { q, qualifiedName } from './statements.js';

const LOCK_ATTEMPTS = 20;

export async function finishNotNull(c: pg.ClientBase, job: InplaceJob, facts: TableFacts, logger: Logger): Promise<void> {
  const table = qualifiedName(facts);
  for (const col of job.finish.notNull) {
    const a = (await c.query(`SELECT attnotnull FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND NOT attisdropped`, [facts.oid, col])).rows[0];
    if (!a) throw new SluiceError('BAD_USAGE', `job ${job.job}: finish.notNull names ${col}, which is not a column of ${facts.schema}.${facts.name}`);
    if (a.attnotnull) continue;
    const con = `${col}_not_null_sluice`.slice(0, 63);
    const has = async () => (await c.query(`SELECT convalidated FROM pg_constraint WHERE conrelid = $1 AND conname = $2`, [facts.oid, con])).rows[0] as { convalidated: boolean } | undefined;
    if (!(await has())) await locked(c, job, `ALTER TABLE ${table} ADD CONSTRAINT ${q(con)} CHECK (${q(col)} IS NOT NULL) NOT VALID`, logger);
    if (!(await has())?.convalidated) {
      try {
        // A scan of the whole table: no statement timeout, but still no long wait for the lock.
        await locked(c, job, `SET LOCAL statement_timeout = 0; ALTER TABLE ${table} VALIDATE CONSTRAINT ${q(con)}`, logger);
      } catch (err) {
        if ((err as pg.DatabaseError).code !== '23514') throw err;
        const n = (await c.query(`SELECT count(*)::int8 AS n FROM ${table} WHERE ${q(col)} IS NULL`)).rows[0].n;
        throw new SluiceError(
          'SOURCE_ERROR',
          `job ${job.job}: finish: ${n} rows of ${facts.schema}.${facts.name} still have ${col} NULL, so it cannot be NOT NULL (rows written since their chunk? \`sluice inplace verify\` names the ranges; the check ${con} stays NOT VALID meanwhile)`,
        );
      }
    }
    await locked(c, job, `ALTER TABLE ${table} ALTER COLUMN ${q(col)} SET NOT NULL`, logger);
    await locked(c, job, `ALTER TABLE ${table} DROP CONSTRAINT IF EXISTS ${q(con)}`, logger);
    logger.info('column is NOT NULL now', { job: job.job, column: col });
  }
}

/** One DDL statement in its own transaction, retried while its lock is not granted within lockTimeoutMs. */
async function locked(c: pg.ClientBase, job: InplaceJob, sql: string, logger: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await c.query('BEGIN');
      await c.query(sql);
      await c.query('COMMIT');
      return;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      if ((err as pg.DatabaseError).code !== '55P03' || attempt >= LOCK_ATTEMPTS) throw err;
      const wait = backoffMs(attempt, 200, 5000);
      logger.info('finish: lock not granted in time; retrying', { job: job.job, attempt, waitMs: wait });
      await sleep(wait);
    }
  }
}
