/**
 * Column type changes on the source, carried to the destination by the Applier. When a table's
 * change stream describes a new column set, each column whose type or type modifier changed since
 * the table's previous column set in the change log (every column, when the log holds none) is
 * compared with the destination column, and `columnAction` (type-change.ts)
 * decides: keep it, `ALTER … TYPE` it in the apply transaction (and the staging table of an online
 * backfill), or stop the table with a message naming what to run.
 */
import type pg from 'pg';
import { SluiceError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { SourceLookups, StreamType } from '../../core/source-lookups.js';
import { TableName, type RelationColumns } from '../../core/types.js';
import { classify } from '../../postgres/errors.js';
import { qualified, quoteIdent } from './dialect.js';
import { columnAction } from './type-change.js';

export interface TypeSyncInput {
  /** Source table name (`schema.name`), for messages. */
  readonly name: string;
  /** The destination table the batch applies to. */
  readonly table: TableName;
  /** Another table that must follow the same column types (the staging table of an online backfill). */
  readonly alsoTable?: TableName;
  readonly rel: RelationColumns;
  readonly prev: RelationColumns | null;
  /** Column → `format_type()` of the destination table. */
  readonly destTypes: ReadonlyMap<string, string>;
}

interface ChangedColumn {
  readonly name: string;
  /** The type before, or null when the change log holds no earlier column set of the table. */
  readonly from: string | null;
  readonly to: string;
  readonly builtin: boolean;
}

/**
 * Brings the destination's column types in step with a new column set. Returns true when it
 * altered a table (the caller reads the destination's types again).
 */
export async function syncColumnTypes(dst: pg.ClientBase, source: SourceLookups, input: TypeSyncInput, logger: Logger): Promise<boolean> {
  const changed = await changedColumns(source, input.rel, input.prev);
  let altered = false;
  for (const c of changed) {
    const dest = input.destTypes.get(c.name);
    if (dest === undefined) continue;
    if (!c.builtin) {
      // Without an earlier column set, a user type is taken as it is (as it always was).
      if (c.from === null || c.from === c.to || dest === c.to) continue;
      throw stop(input, c, `type ${c.from} became ${c.to}, and sluice carries changes of built-in types only`);
    }
    const act = columnAction(c.from, c.to, dest);
    if (act.action === 'stop') throw stop(input, c, `${act.why}; sluice changes a destination column's type itself only when the change widens it`);
    if (act.action === 'alter') {
      await alterType(dst, input, input.table, c, dest, logger);
      altered = true;
    }
  }
  if (input.alsoTable && changed.length > 0) {
    const also = await columnTypes(dst, input.alsoTable);
    for (const c of changed) {
      const dest = also.get(c.name);
      // Widened only: the staging table's own replay stops it if anything else is wrong.
      if (dest === undefined || !c.builtin || columnAction(null, c.to, dest).action !== 'alter') continue;
      await alterType(dst, input, input.alsoTable, c, dest, logger);
    }
  }
  return altered;
}

/** Column → `format_type()` of a destination table. */
export async function columnTypes(dst: pg.ClientBase, table: TableName): Promise<Map<string, string>> {
  const r = await dst.query(
    `SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
    [qualified(table)],
  );
  return new Map(r.rows.map((x) => [x.attname as string, x.type as string]));
}

/**
 * Columns present in both column sets whose type or type modifier differs, with both types as the
 * source names them. Without an earlier column set (no change of the table reached the change log
 * before this one) every column is a candidate, its earlier type unknown (`from` null).
 */
async function changedColumns(source: SourceLookups, rel: RelationColumns, prev: RelationColumns | null): Promise<ChangedColumn[]> {
  const pairs: { name: string; from: [number, number] | null; to: [number, number] }[] = [];
  rel.names.forEach((name, i) => {
    const to: [number, number] = [rel.typeOids[i], rel.typeMods?.[i] ?? -1];
    if (!prev) {
      if (rel.typeMods !== undefined) pairs.push({ name, from: null, to });
      return;
    }
    const j = prev.names.indexOf(name);
    if (j < 0) return;
    // Before sluice kept type modifiers a changed modifier cannot be told from none; only a changed type can.
    const known = rel.typeMods !== undefined && prev.typeMods !== undefined;
    const from: [number, number] = [prev.typeOids[j], known ? prev.typeMods![j] : -1];
    if (from[0] !== to[0] || (known && from[1] !== to[1])) pairs.push({ name, from, to: known ? to : [to[0], -1] });
  });
  if (pairs.length === 0) return [];
  const types: StreamType[] = pairs.flatMap((p) => [p.from ?? p.to, p.to]);
  const names = await source.typeNames(types);
  return pairs.map((p, k) => ({
    name: p.name,
    from: p.from ? names[2 * k] : null,
    to: names[2 * k + 1],
    builtin: (p.from === null || source.isBuiltinType(p.from[0])) && source.isBuiltinType(p.to[0]),
  }));
}

async function alterType(dst: pg.ClientBase, input: TypeSyncInput, table: TableName, c: ChangedColumn, was: string, logger: Logger): Promise<void> {
  const sql = `ALTER TABLE ${qualified(table)} ALTER COLUMN ${quoteIdent(c.name)} TYPE ${c.to}`;
  logger.info('widening a column the source widened', { table: input.name, destination: TableName.format(table), column: c.name, from: was, to: c.to });
  try {
    await dst.query(sql);
  } catch (err) {
    const e = classify('destination', `widening ${TableName.format(table)}.${c.name} from ${was} to ${c.to}`, err);
    if (e.retryable) throw e;
    throw new SluiceError(
      'DESTINATION_ERROR',
      `${e.message}; fix what stops it (a view or rule using the column must be dropped and re-created around the change), run on the destination: ${sql}, then restart sluice run; or reload the table: sluice backfill ${input.name} --mode drop`,
      { cause: err, context: e.context },
    );
  }
}

function stop(input: TypeSyncInput, c: ChangedColumn, what: string): SluiceError {
  const fix =
    `run on the destination: ALTER TABLE ${qualified(input.table)} ALTER COLUMN ${quoteIdent(c.name)} TYPE ${c.to}, then restart sluice run; ` +
    `or reload the table: sluice backfill ${input.name} --mode drop`;
  return new SluiceError('DESTINATION_ERROR', `source ${input.name}: column ${c.name} ${what}; ${fix}`, {
    context: { table: input.name, column: c.name, from: c.from, to: c.to },
  });
}
