/**
 * Foreign keys added back after a table was replaced (an online swap, a `--mode drop --cascade`
 * reload): added NOT VALID, then validated once the data is in (docs/architecture.md, "Foreign keys
 * in the destination"). Validation takes SHARE UPDATE EXCLUSIVE only (reads and writes go on).
 *
 * sluice applies each table in its own transactions, so right after a load the child may still
 * reference parent rows the parent's replay has not brought yet: a validation that finds a missing
 * parent is tried again (with backoff, for some minutes) until every table has caught up.
 */
import type pg from 'pg';
import type { Logger } from '../../core/logger.js';
import { backoffMs, sleep } from '../../core/retry.js';
import { TableName } from '../../core/types.js';
import { connect } from '../../postgres/session.js';
import { qualified } from './dialect.js';
import { addForeignKeySql, validateForeignKeySql, type ForeignKey } from './foreign-keys.js';

const VALIDATE_ATTEMPTS = 40;

/** Validations under way (a test or a shutdown may wait for them). */
export const validations = new Set<Promise<void>>();

/**
 * Adds each key back NOT VALID. Inside a transaction each goes under a savepoint: one that no longer
 * fits the recreated table (a column gone at the source) is skipped with a warning, not the reload.
 */
export async function recreateForeignKeys(dst: pg.ClientBase, fks: readonly ForeignKey[], log: Logger, inTransaction = true): Promise<void> {
  for (const fk of fks) {
    const has = await dst.query(`SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2`, [qualified(fk.table), fk.name]);
    if (has.rowCount) continue; // added back before a restart
    try {
      if (inTransaction) await dst.query('SAVEPOINT sluice_fk');
      await dst.query(addForeignKeySql(fk));
      if (inTransaction) await dst.query('RELEASE SAVEPOINT sluice_fk');
      log.info('foreign key added back (NOT VALID until validated)', { constraint: fk.name, on: TableName.format(fk.table) });
    } catch (err) {
      if (inTransaction) await dst.query('ROLLBACK TO SAVEPOINT sluice_fk');
      log.warn('could not add a foreign key back; add it by hand', { constraint: fk.name, sql: addForeignKeySql(fk), error: (err as Error).message });
    }
  }
}

/**
 * Validates the keys in the background, on a session of its own; never throws. The run that added
 * them back lists them in its params (`validate`, written in the same transaction); when every one
 * is validated (or gone) the list is removed, so a restart validates what a crash left behind.
 */
export function validateForeignKeysLater(url: string, fks: readonly ForeignKey[], log: Logger, runId?: number): void {
  if (fks.length === 0) return;
  const p = validate(url, fks, log, runId).catch((err) => log.warn('foreign key validation stopped', { error: (err as Error).message }));
  validations.add(p);
  void p.finally(() => validations.delete(p));
}

async function validate(url: string, fks: readonly ForeignKey[], log: Logger, runId?: number): Promise<void> {
  const dst = await connect('destination', url, 'sluice-validate');
  let all = true;
  try {
    for (const fk of fks) {
      for (let attempt = 1; ; attempt++) {
        try {
          await dst.query(validateForeignKeySql(fk));
          log.info('foreign key validated', { constraint: fk.name, on: TableName.format(fk.table) });
          break;
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === '42704' || code === '42P01') break; // dropped meanwhile
          if (code !== '23503' || attempt >= VALIDATE_ATTEMPTS) {
            all = false;
            log.warn('foreign key left NOT VALID: validate it once the tables agree', { constraint: fk.name, sql: validateForeignKeySql(fk), error: (err as Error).message });
            break;
          }
          await sleep(backoffMs(attempt, 500, 15_000));
        }
      }
    }
    if (all && runId !== undefined) await dst.query(`UPDATE _sluice.runs SET params = params - 'validate' WHERE id = $1`, [runId]);
  } finally {
    await dst.end().catch(() => {});
  }
}

/** The validations a stop or crash left pending (runs whose params still list keys to validate). */
export async function resumeValidations(url: string, pipeline: string, dst: pg.ClientBase, log: Logger): Promise<void> {
  // A run still loading (status running) validates after its load, when it resumes.
  const r = await dst.query(
    `SELECT id, params->'validate' AS v FROM _sluice.runs WHERE pipeline = $1 AND params ? 'validate' AND status IN ('done', 'catching_up') ORDER BY id`,
    [pipeline],
  );
  for (const row of r.rows) {
    log.info('validating foreign keys an earlier run added back', { run: Number(row.id), keys: (row.v as ForeignKey[]).map((f) => f.name) });
    validateForeignKeysLater(url, row.v as ForeignKey[], log, Number(row.id));
  }
}

