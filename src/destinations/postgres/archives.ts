/**
 * Archives: the tables an online swap replaced (contract 6), kept for `online.archiveRetentionHours`
 * in a schema of their own (`online.archiveSchema`, default `sluice_archive`), each recorded in
 * `_sluice.archives` under its full name. Everything here goes by that recorded name, so archives
 * an older sluice left in the live table's schema (`<schema>.<table>__sluice_archive_<run>`) are
 * listed, swept and dropped the same way.
 *
 * Dropping is idempotent and safe to race: the archive's row is locked first (`FOR UPDATE`), the
 * table dropped with `IF EXISTS`, and the row marked in the same transaction; a second dropper waits
 * on the row and then finds it marked. Only the recorded archive table is ever dropped.
 */
import type pg from 'pg';
import { SluiceError } from '../../core/errors.js';
import { TableName } from '../../core/types.js';
import type { ArchiveRow, DropOutcome } from '../destination.js';
import { qualified, quoteIdent } from './dialect.js';

export type { ArchiveRow, DropOutcome };

/**
 * The archives not dropped yet, oldest first: of one pipeline, or of every pipeline of this
 * destination (`pipeline` null). Empty when there is no `_sluice` state.
 */
export async function listArchives(client: pg.ClientBase, pipeline: string | null): Promise<ArchiveRow[]> {
  const has = (await client.query(`SELECT to_regclass('_sluice.archives') IS NOT NULL AS ok`)).rows[0].ok;
  if (!has) return [];
  const r = await client.query(
    `SELECT pipeline, table_name, archive, run_id, created_at, drop_after FROM _sluice.archives
      WHERE ($1::text IS NULL OR pipeline = $1) AND dropped_at IS NULL ORDER BY created_at, archive`,
    [pipeline],
  );
  const names = r.rows.map((x) => qualifiedText(x.archive as string));
  const sizes = names.length
    ? (
        await client.query(
          `SELECT n.i::int AS i, pg_total_relation_size(to_regclass(n.q))::float8 AS bytes FROM unnest($1::text[]) WITH ORDINALITY n(q, i)`,
          [names],
        )
      ).rows
    : [];
  const bytesAt = new Map(sizes.map((s) => [Number(s.i) - 1, s.bytes === null ? null : Number(s.bytes)]));
  return r.rows.map((x, i) => ({
    pipeline: x.pipeline as string,
    table: x.table_name as string,
    archive: x.archive as string,
    runId: x.run_id === null ? null : Number(x.run_id),
    createdAt: x.created_at as Date,
    dropAfter: (x.drop_after as Date | null) ?? null,
    bytes: bytesAt.get(i) ?? null,
  }));
}

/** The quoted, qualified form of a recorded archive name; a name that does not parse is quoted whole. */
function qualifiedText(archive: string): string {
  try {
    return qualified(TableName.parse(archive));
  } catch {
    return quoteIdent(archive);
  }
}

/**
 * Drops one recorded archive and marks its row, in one transaction (call it outside one). Waits at
 * most `lockTimeoutMs` for a lock on the archive (a reader of it), then fails; a dependent object
 * (a user's view on the archive) fails it too, with PostgreSQL's message: nothing is dropped then.
 */
export async function dropArchive(client: pg.ClientBase, pipeline: string, archive: string, lockTimeoutMs: number): Promise<DropOutcome> {
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL lock_timeout = '${Math.max(1, Math.round(lockTimeoutMs))}ms'`);
    const row = await client.query(`SELECT dropped_at FROM _sluice.archives WHERE pipeline = $1 AND archive = $2 FOR UPDATE`, [pipeline, archive]);
    if (row.rowCount === 0) throw new SluiceError('BAD_USAGE', `no archive ${archive} is recorded for pipeline ${pipeline}`);
    if (row.rows[0].dropped_at !== null) {
      await client.query('COMMIT');
      return 'already dropped';
    }
    const name = qualifiedText(archive);
    const there = (await client.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [name])).rows[0].ok as boolean;
    await client.query(`DROP TABLE IF EXISTS ${name}`);
    await client.query(`UPDATE _sluice.archives SET dropped_at = now() WHERE pipeline = $1 AND archive = $2`, [pipeline, archive]);
    // Its rollback position goes with it: the change log need not keep its changes any longer.
    await client.query(`DELETE FROM _sluice.cursors WHERE pipeline = $1 AND target = $2`, [pipeline, archive]);
    await client.query('COMMIT');
    return there ? 'dropped' : 'table was gone';
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * Makes sure the archive schema exists and that sluice may move tables into it (CREATE on it).
 * Outside a transaction: two swaps creating it at once would otherwise fail one on the catalog's
 * unique key; here the loser finds it made.
 */
export async function ensureArchiveSchema(client: pg.ClientBase, schema: string): Promise<void> {
  const q = quoteIdent(schema);
  const exists = async () => (await client.query(`SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS ok`, [schema])).rows[0].ok as boolean;
  if (!(await exists())) {
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${q}`);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '42501') {
        throw new SluiceError(
          'MISSING_PRIVILEGE',
          `the archive schema ${schema} (online.archiveSchema) does not exist and this role may not create it: ` +
            `create it (CREATE SCHEMA ${q} AUTHORIZATION <sluice's role>), or GRANT CREATE ON DATABASE to sluice's role`,
          { cause: err },
        );
      }
      // A concurrent creator won the race.
      if (!(code === '23505' || code === '42P06') || !(await exists())) throw err;
    }
  }
  const ok = (await client.query(`SELECT has_schema_privilege(oid, 'CREATE') AS ok FROM pg_namespace WHERE nspname = $1`, [schema])).rows[0].ok as boolean;
  if (!ok) {
    throw new SluiceError(
      'MISSING_PRIVILEGE',
      `sluice's role may not create tables in the archive schema ${schema} (online.archiveSchema), where online swaps move the replaced table: ` +
        `GRANT CREATE ON SCHEMA ${q} TO <sluice's role>, or set online.archiveSchema to a schema it owns`,
    );
  }
}
