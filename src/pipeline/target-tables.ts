/**
 * The destination tables a backfill loads into: the target created from the source's catalog (schema,
 * user types, columns with the collations that sort as the source's), an existing target checked and
 * brought up to the source's columns, and the online mode's staging table (made like the live table,
 * its key now and its other indexes after the load, refused early when the swap could not carry the
 * live table's dependents or the destination lacks the space). The copier decides which, per mode.
 */
import type pg from 'pg';
import { columnDefSql, createTableSql, createUserTypeSql, qualified, quoteIdent } from '../destinations/postgres/dialect.js';
import type { Logger } from '../core/logger.js';
import { onlineAlternative, referencingKeys } from '../destinations/postgres/references.js';
import { stagingIndexSql, stagingName, tableIndexes, uncarriable, withSuffix } from '../destinations/postgres/swap.js';
import { ensureArchiveSchema, listArchives } from '../destinations/postgres/archives.js';
import { diskSpace } from '../destinations/postgres/space.js';
import { keptArchivesNote } from '../destinations/postgres/archive-space.js';
import { SluiceError } from '../core/errors.js';
import { TableName, type BackfillMode } from '../core/types.js';
import { deleteCursor } from '../destinations/postgres/state.js';
import { typeChange } from '../destinations/postgres/type-change.js';
import type { TableInfo } from '../core/columns.js';
import { destinationCollations } from '../destinations/postgres/collations.js';
import { type PipelineContext } from './context.js';
import type { TableRuntime } from './runtime.js';
import { columnTypes } from '../destinations/postgres/type-sync.js';
import { incompatibleTarget, targetProblems } from '../destinations/postgres/compat.js';

export async function createTarget(ctx: PipelineContext, dst: pg.Client, info: TableInfo, target: TableName, keyLater = false): Promise<void> {
  // Concurrent backfills may create the same schema or user type: serialise until this transaction ends.
  await dst.query(`SELECT pg_advisory_xact_lock(hashtextextended('sluice:create-target', 0))`);
  await dst.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(target.schema)}`);
  for (const t of info.userTypes) {
    const ok = (await dst.query(`SELECT to_regtype($1) IS NOT NULL AS ok`, [`${quoteIdent(t.schema)}.${quoteIdent(t.name)}`])).rows[0].ok;
    if (ok) continue;
    await dst.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(t.schema)}`);
    await dst.query(createUserTypeSql(t));
  }
  // Text columns sort as in the source, whatever the destination's default collation.
  const collations = await destinationCollations(dst, info.columns);
  for (const w of collations.warnings) ctx.logger.warn(`creating ${TableName.format(target)}: ${w}`, { table: TableName.format(info.table) });
  await dst.query(createTableSql(target, info.columns, keyLater ? [] : info.primaryKey, collations.clauses));
}

/**
 * An existing target must have the source's key; columns the source gained are added, and (when
 * the load goes into the live table) columns the source widened are widened.
 */
export async function checkTarget(ctx: PipelineContext, dst: pg.Client, rt: TableRuntime, mode: BackfillMode, inPlace: boolean): Promise<void> {
  const have = await columnTypes(dst, rt.target);
  const intoLive = mode !== 'online';
  const added = rt.info.columns.filter((c) => !have.has(c.name));
  // Sorted as in the source, like the columns of a table sluice creates.
  const collations = await destinationCollations(dst, added);
  for (const w of collations.warnings) ctx.logger.warn(`adding a column to ${TableName.format(rt.target)}: ${w}`, { table: rt.name });
  for (const c of rt.info.columns) {
    const type = have.get(c.name);
    if (type === undefined) {
      await dst.query(`ALTER TABLE ${qualified(rt.target)} ADD COLUMN ${columnDefSql(c, collations.clauses.get(c.name))}`);
    } else if (intoLive && c.support === 'builtin' && c.generatedSql === null && typeChange(type, c.typeSql).kind === 'widen') {
      ctx.logger.info('widening a column the source widened', { table: rt.name, column: c.name, from: type, to: c.typeSql });
      await dst.query(`ALTER TABLE ${qualified(rt.target)} ALTER COLUMN ${quoteIdent(c.name)} TYPE ${c.typeSql}`);
    }
  }
  // A schema created first that cannot take the rows: every problem and its fix, before any row moves.
  const problems = (await targetProblems(dst, rt.info, rt.target, { typesFromSource: !intoLive && !inPlace })).filter((p) => p.column !== null);
  if (problems.length) throw incompatibleTarget(rt.target, rt.source, problems, `or reload it with: sluice backfill ${rt.name} --mode drop`);
  const pk = await dst.query(
    `SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.ord`,
    [qualified(rt.target)],
  );
  const destKey = pk.rows.map((r) => r.attname as string);
  if (destKey.join(',') !== rt.info.primaryKey.join(',')) {
    throw new SluiceError(
      'BAD_USAGE',
      `destination ${TableName.format(rt.target)}: primary key (${destKey.join(', ') || 'none'}) differs from the source's (${rt.info.primaryKey.join(', ')}); ` +
        `fix the destination table, or reload it with: sluice backfill ${rt.name} --mode drop`,
    );
  }
}

/**
 * Online mode: the staging table `<table>__sluice_staging` in the live table's schema, looking like
 * the live table (columns, defaults, constraints, storage, comments) with only its primary key for
 * now; the other indexes are built after the load. Refuses, before anything is loaded, when the
 * live table has dependents the swap cannot carry, or when the destination lacks the space.
 */
export async function createStaging(ctx: PipelineContext, dst: pg.Client, rt: TableRuntime, keyLater: boolean): Promise<TableName> {
  const live = rt.target;
  const blockers = await uncarriable(dst, live);
  if (blockers.length) {
    const referenced = (await referencingKeys(dst, live)).length > 0;
    throw new SluiceError(
      'BAD_USAGE',
      `online backfill of ${TableName.format(live)}: the swap cannot carry ${blockers.join('; ')}; ${onlineAlternative(referenced)}`,
    );
  }
  await checkSpace(ctx, dst, live);
  // Where the swap will move the replaced table: made (or its privilege refused) before the load, not at the swap.
  await ensureArchiveSchema(dst, ctx.cfg.online.archiveSchema);
  const staging = stagingName(live);
  await dst.query(`DROP TABLE IF EXISTS ${qualified(staging)}`);
  await dst.query(`CREATE TABLE ${qualified(staging)} (LIKE ${qualified(live)} INCLUDING ALL EXCLUDING INDEXES)`);
  // The staging table is loaded from the source as it is now: a column whose type the source has
  // changed since the live table was made takes the source's type (built-in types; it is empty).
  const types = await columnTypes(dst, staging);
  for (const c of rt.info.columns) {
    const have = types.get(c.name);
    if (have === undefined || c.support !== 'builtin' || c.generatedSql !== null || typeChange(have, c.typeSql).kind === 'same') continue;
    ctx.logger.info('staging table takes the source\'s column type', { table: rt.name, column: c.name, live: have, source: c.typeSql });
    await dst.query(`ALTER TABLE ${qualified(staging)} ALTER COLUMN ${quoteIdent(c.name)} TYPE ${c.typeSql}`);
  }
  if (!keyLater) await addStagingPrimaryKey(dst, live, staging);
  return staging;
}

/** A new run starts: the staging table of an earlier online run that failed goes, with its cursor. */
export async function dropStaging(ctx: PipelineContext, dst: pg.Client, rt: TableRuntime): Promise<void> {
  const old = rt.staging;
  rt.staging = null;
  if (!old) return;
  await dst.query(`DROP TABLE IF EXISTS ${qualified(old.target)}`);
  await deleteCursor(dst, ctx.pipeline, rt.name, TableName.format(old.target));
  ctx.logger.info('dropped the staging table of an earlier run', { table: rt.name, staging: TableName.format(old.target) });
}

/** The live table's primary key on the staging table, under the name the swap renames. */
export async function addStagingPrimaryKey(dst: pg.Client, live: TableName, staging: TableName): Promise<void> {
  for (const idx of await tableIndexes(dst, live)) {
    if (!idx.isPrimary) continue;
    const name = withSuffix(idx.name, '__sluice_s');
    const has = (await dst.query(`SELECT 1 FROM pg_index WHERE indrelid = $1::regclass AND indisprimary`, [qualified(staging)])).rowCount;
    if (has) return;
    await dst.query(stagingIndexSql(idx, live, staging).replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX IF NOT EXISTS '));
    await dst.query(`ALTER TABLE ${qualified(staging)} ADD CONSTRAINT ${quoteIdent(name)} PRIMARY KEY USING INDEX ${quoteIdent(name)}`);
  }
}

/** About the live table's size again is needed; refuse when the destination can tell it lacks it. */
export async function checkSpace(ctx: PipelineContext, dst: pg.Client, live: TableName): Promise<void> {
  const size = Number((await dst.query(`SELECT pg_total_relation_size($1::regclass)::float8 AS n`, [qualified(live)])).rows[0].n);
  const need = Math.ceil(size * ctx.cfg.online.minFreeSpaceRatio);
  const free = (await diskSpace(dst))?.freeBytes ?? null;
  const fmt = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
  // Archives of earlier online backfills still hold space until they are dropped: say so, and how.
  const kept = async () => {
    const note = keptArchivesNote(await listArchives(dst, null).catch(() => []));
    return note ? `; ${note}` : '';
  };
  if (free === null) {
    const note = await kept();
    ctx.logger.warn('online backfill: cannot tell the destination\'s free space; it needs about the live table\'s size again', {
      table: TableName.format(live),
      needs: fmt(size),
      ...(note ? { archives: note.slice(2) } : {}),
    });
  } else if (free < need) {
    throw new SluiceError(
      'BAD_USAGE',
      `online backfill of ${TableName.format(live)} needs about ${fmt(size)} for the staging table, and the destination has ${fmt(free)} free${await kept()}; free space, or use --mode truncate`,
    );
  } else if (free < 2 * size) {
    const note = await kept();
    ctx.logger.warn('online backfill: the destination is short of space', {
      table: TableName.format(live),
      needs: fmt(size),
      free: fmt(free),
      ...(note ? { archives: note.slice(2) } : {}),
    });
  }
}

/** After the load: the live table's other indexes on the staging table, then statistics. */
export async function finishStaging(dst: pg.Client, rt: TableRuntime, log: Logger): Promise<void> {
  const staging = rt.staging!.target;
  const started = Date.now();
  for (const idx of await tableIndexes(dst, rt.target)) {
    if (idx.isPrimary) continue;
    await dst.query(stagingIndexSql(idx, rt.target, staging).replace(/^CREATE (UNIQUE )?INDEX /, 'CREATE $1INDEX IF NOT EXISTS '));
  }
  await dst.query(`ANALYZE ${qualified(staging)}`);
  log.info('staging table loaded and indexed', { staging: TableName.format(staging), seconds: (Date.now() - started) / 1000 });
}
