/**
 * The first half of `sluice rollback` in a PostgreSQL destination: the archive an online swap kept
 * becomes the table's staging table again, in one transaction, without touching the live table.
 *
 * The archive stands where the swap left it: in the archive schema, its indexes renamed
 * `<index>__sluice_a<run>`, no foreign keys, the live table's triggers and policies of that time.
 * Made into a staging table it must look like one the copier made, so that the ordinary swap
 * (online-swap.ts) can put it back under the same lock rules: it moves to the live schema under the
 * staging name, each index of today's live table is matched by name (`<index>__sluice_s`; one the
 * archive lacks is built here, outside any lock on the live table, one only the archive has is
 * dropped), and its own triggers and policies go, since the swap re-creates the live table's by name.
 * Its cursor (written by the swap that archived it) becomes the staging cursor; the archive's row
 * goes (the run records it); a run is opened for the rollback, and the table waits in `catching_up`
 * while the Applier replays the changes since the swap into it.
 */
import type pg from 'pg';
import { noArchiveToRollBack, SluiceError } from '../../core/errors.js';
import { Lsn, TableName, type Position } from '../../core/types.js';
import type { RestoreArchiveRequest, RestoreArchiveResult } from '../destination.js';
import { withTransaction } from '../../postgres/session.js';
import { qualified, quoteIdent } from './dialect.js';
import { setTableState } from './state.js';
import { stagingIndexSql, stagingName, tableIndexes, withSuffix } from './swap.js';

/** The newest archive of `name` that can be rolled back (it has a cursor), or null. */
export async function rollbackArchive(client: pg.ClientBase, pipeline: string, name: string): Promise<{ archive: string; runId: number | null; at: Position } | null> {
  const r = await client.query(
    `SELECT a.archive, a.run_id, c.lsn::text AS lsn, c.idx
       FROM _sluice.archives a JOIN _sluice.cursors c ON c.pipeline = a.pipeline AND c.name = a.table_name AND c.target = a.archive
      WHERE a.pipeline = $1 AND a.table_name = $2 AND a.dropped_at IS NULL
      ORDER BY a.created_at DESC LIMIT 1`,
    [pipeline, name],
  );
  const row = r.rows[0];
  if (!row) return null;
  return { archive: row.archive as string, runId: row.run_id === null ? null : Number(row.run_id), at: { lsn: Lsn.parse(row.lsn), idx: Number(row.idx) } };
}

export async function restoreArchive(dst: pg.Client, pipeline: string, req: RestoreArchiveRequest): Promise<RestoreArchiveResult> {
  const { live } = req;
  const staging = stagingName(live);
  return withTransaction(dst, async () => {
    await dst.query(`SET LOCAL lock_timeout = '${Math.max(1, Math.round(req.lockTimeoutMs))}ms'`);
    const found = await rollbackArchive(dst, pipeline, req.name);
    if (!found) throw noArchiveToRollBack(req.name);
    await dst.query(`SELECT 1 FROM _sluice.archives WHERE pipeline = $1 AND archive = $2 FOR UPDATE`, [pipeline, found.archive]);
    const archive = TableName.parse(found.archive);
    const exists = (await dst.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [qualified(archive)])).rows[0].ok as boolean;
    if (!exists) throw new SluiceError('BAD_USAGE', `archive ${found.archive} of ${req.name} is recorded but its table is gone; nothing to roll back to`);
    const taken = (await dst.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [qualified(staging)])).rows[0].ok as boolean;
    if (taken) throw new SluiceError('BAD_USAGE', `${qualified(staging)} exists: a staging table is in the way of the rollback (drop it if no backfill of ${req.name} runs)`);

    // The archive's own indexes, by name, before it moves.
    const archived = new Map((await tableIndexes(dst, archive)).map((i) => [i.name, i]));
    // Into the live schema under the staging name: renamed in the archive schema first, so that no
    // table of the live schema is ever in the way of its archive name.
    await dst.query(`ALTER TABLE ${qualified(archive)} RENAME TO ${quoteIdent(staging.name)}`);
    if (archive.schema !== live.schema) await dst.query(`ALTER TABLE ${quoteIdent(archive.schema)}.${quoteIdent(staging.name)} SET SCHEMA ${quoteIdent(live.schema)}`);
    const suffix = `__sluice_a${found.runId ?? 0}`;
    const built: string[] = [];
    for (const idx of await tableIndexes(dst, live)) {
      const was = withSuffix(idx.name, suffix);
      if (archived.has(was)) {
        await dst.query(`ALTER INDEX ${quoteIdent(live.schema)}.${quoteIdent(was)} RENAME TO ${quoteIdent(withSuffix(idx.name, '__sluice_s'))}`);
        archived.delete(was);
      } else {
        await dst.query(stagingIndexSql(idx, live, staging));
        built.push(idx.name);
      }
    }
    // Indexes only the archive has (dropped from the live table since): not part of the table it becomes.
    for (const idx of archived.values()) {
      if (idx.isPrimary) throw new SluiceError('BAD_USAGE', `archive ${found.archive} has a primary key the live table ${qualified(live)} lacks; roll back by hand`);
      await dst.query(`DROP INDEX ${quoteIdent(live.schema)}.${quoteIdent(idx.name)}`);
    }
    // The swap re-creates the live table's triggers and policies on it by name.
    const t = qualified(staging);
    const triggers = await dst.query(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, [t]);
    for (const tr of triggers.rows) await dst.query(`DROP TRIGGER ${quoteIdent(tr.tgname)} ON ${t}`);
    const policies = await dst.query(`SELECT polname FROM pg_policy WHERE polrelid = $1::regclass`, [t]);
    for (const p of policies.rows) await dst.query(`DROP POLICY ${quoteIdent(p.polname)} ON ${t}`);
    await dst.query(`ALTER TABLE ${t} NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY`);

    await dst.query(`UPDATE _sluice.cursors SET target = $3 WHERE pipeline = $1 AND name = $2 AND target = $4`, [pipeline, req.name, TableName.format(staging), found.archive]);
    await dst.query(`DELETE FROM _sluice.archives WHERE pipeline = $1 AND archive = $2`, [pipeline, found.archive]);
    const run = await dst.query(
      `INSERT INTO _sluice.runs (pipeline, table_name, mode, strategy, params, version, os_user, host, pid, l0_lsn, status)
       VALUES ($1, $2, 'online', 'rollback', $3, $4, $5, $6, $7, $8::pg_lsn, 'catching_up') RETURNING id`,
      [
        pipeline,
        req.name,
        JSON.stringify({ rollback: { archive: found.archive, archiveRun: found.runId, from: Lsn.format(found.at.lsn), indexesBuilt: built }, requestId: req.requestId }),
        req.version,
        req.actor,
        req.host,
        process.pid,
        Lsn.format(found.at.lsn),
      ],
    );
    const runId = Number(run.rows[0].id);
    await setTableState(dst, pipeline, req.name, 'catching_up', {
      mode: 'online',
      runId,
      staging: TableName.format(staging),
      lastKey: 'done',
      l0: null,
      error: null,
      detail: `rolling back to ${found.archive}: replaying the changes since its swap`,
    });
    return { archive: found.archive, staging, at: found.at, runId, indexesBuilt: built };
  });
}
