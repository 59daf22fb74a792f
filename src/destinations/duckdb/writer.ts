/**
 * The DuckDB destination's writes: a chunk appended with its progress, the end of a load (one
 * dedupe, then the mode's move into place), a batch of changes applied with its cursor, the online
 * swap, a truncate and an added column. Each is one DuckDB transaction; the state write that goes
 * with it (state.ts) is a callback run inside that transaction, so the two commit together.
 *
 * SQL text comes from dialect.ts, value conversion from types.ts.
 */
import type { DuckDBAppender } from '@duckdb/node-api';
import { duckdb } from './native.js';
import type { BackfillMode, CapturedValue, TableName } from '../../core/types.js';
import type { DuckDbFile } from './connection.js';
import { classifyDuckDb } from './errors.js';
import {
  addColumnSql,
  columnCommentsSql,
  applyFillSql,
  createBatchTableSql,
  createLoadTableSql,
  createSchemaSql,
  createTableSql,
  dropTableSql,
  dropUnresolvedSql,
  insertDedupedSql,
  mergeBatchSql,
  renameSql,
  setColumnSql,
  swapSql,
  truncateSql,
  unknownValuesSql,
  upsertDedupedSql,
} from './dialect.js';
import { toDuckValue, type DuckColumn } from './types.js';

/** What a table's writes need: its columns in DuckDB form and its primary key. */
export interface TableShape {
  readonly columns: readonly DuckColumn[];
  readonly key: readonly string[];
}

/** Appends one captured text value converted for its column. */
function appendCaptured(appender: DuckDBAppender, column: DuckColumn, text: string | null): void {
  const v = toDuckValue(column.name, column.type, text);
  const { DuckDBBlobValue, DuckDBDateValue, DuckDBTimestampTZValue, DuckDBTimestampValue, DuckDBIntervalValue } = duckdb();
  if (v === null) appender.appendNull();
  else if (typeof v === 'string') appender.appendVarchar(v);
  else if (v instanceof DuckDBBlobValue) appender.appendBlob(v.bytes);
  else if (v instanceof DuckDBDateValue) appender.appendDate(v);
  else if (v instanceof DuckDBTimestampTZValue) appender.appendTimestampTZ(v);
  else if (v instanceof DuckDBTimestampValue) appender.appendTimestamp(v);
  else if (v instanceof DuckDBIntervalValue) appender.appendInterval(v);
  else throw new Error(`column ${column.name}: no append path for ${String(v)}`);
}

/** Appends rows to `table` (schema, name, catalog) through DuckDB's appender; `extra` fills columns after the shape's. */
async function appendRows(
  file: DuckDbFile,
  table: { schema: string; name: string; catalog?: string },
  columns: readonly DuckColumn[],
  rows: Iterable<readonly (string | null)[]>,
  extra?: (appender: DuckDBAppender, index: number) => void,
): Promise<number> {
  const what = `appending rows to ${table.schema}.${table.name}`;
  const appender = await file.connection.createAppender(table.name, table.schema, table.catalog ?? null).catch((err) => {
    throw classifyDuckDb(file.path, what, err);
  });
  let n = 0;
  try {
    for (const row of rows) {
      for (let i = 0; i < columns.length; i++) appendCaptured(appender, columns[i], row[i]);
      extra?.(appender, n);
      appender.endRow();
      n++;
    }
    appender.flushSync();
  } catch (err) {
    throw classifyDuckDb(file.path, what, err);
  } finally {
    try {
      appender.closeSync();
    } catch {
      // The error that stopped the append is the one to report.
    }
  }
  return n;
}

/** Creates the schema and a table of the shape (no key: dialect.ts says why). */
export async function createTarget(file: DuckDbFile, target: TableName, shape: TableShape): Promise<void> {
  await file.run(createSchemaSql(target.schema));
  await createTable(file, target, shape.columns);
}

/** A table of these columns, with the comments catalog.ts reads back. */
async function createTable(file: DuckDbFile, target: TableName, columns: readonly DuckColumn[]): Promise<void> {
  await file.run(createTableSql(target, columns));
  for (const sql of columnCommentsSql(target, columns)) await file.run(sql);
}

/**
 * A new, empty load table, for the start of a backfill run. Not on a resume: the chunks committed
 * before the crash are in the load table, and their progress in the state says so.
 */
export async function createLoadTable(file: DuckDbFile, load: TableName, shape: TableShape): Promise<void> {
  await file.run(createSchemaSql(load.schema));
  await file.run(dropTableSql(load));
  await file.run(createLoadTableSql(load, shape.columns));
  for (const sql of columnCommentsSql(load, shape.columns)) await file.run(sql);
}

/**
 * Appends one chunk (rows of captured text values, in shape column order) to the load table with
 * load sequence `seq`, and runs `recordProgress` (state.ts recordChunk / recordRangeChunk) in the
 * same transaction: both commit, or neither.
 */
export async function appendChunk(
  file: DuckDbFile,
  load: TableName,
  shape: TableShape,
  rows: readonly (readonly (string | null)[])[],
  seq: number,
  recordProgress: () => Promise<void>,
): Promise<number> {
  return file.transaction(async () => {
    const n = await appendRows(file, load, shape.columns, rows, (a) => a.appendBigInt(BigInt(seq)));
    await recordProgress();
    return n;
  });
}

/**
 * The end of a load, in one transaction: the one dedupe (dialect.ts, dedupedSelectSql), moved
 * into place as the mode says, the load table dropped, and `recordDone` (the state: the table's
 * cursor set back to L0 for the replay) committed with it.
 * - online: into a new staging table (replay then runs into it, and swap() puts it live);
 * - truncate: the live table emptied and filled (its views, comments and the table itself stay);
 * - drop: the live table dropped and created anew with the load's columns;
 * - upsert: merged over the live table by key.
 */
export async function finishLoad(
  file: DuckDbFile,
  mode: BackfillMode,
  load: TableName,
  into: TableName,
  shape: TableShape,
  recordDone: () => Promise<void>,
): Promise<void> {
  await file.transaction(async () => {
    if (mode === 'online' || mode === 'drop') {
      await file.run(dropTableSql(into));
      await createTable(file, into, shape.columns);
      await file.run(insertDedupedSql(into, load, shape.columns, shape.key));
    } else if (mode === 'truncate') {
      await file.run(truncateSql(into));
      await file.run(insertDedupedSql(into, load, shape.columns, shape.key));
    } else {
      await file.run(upsertDedupedSql(into, load, shape.columns, shape.key));
    }
    await file.run(dropTableSql(load));
    await recordDone();
  });
}

/** live → archive (or dropped when `archive` is null), staging → live, and the state, in one transaction. */
export async function swap(file: DuckDbFile, live: TableName, staging: TableName, archive: string | null, recordSwap: () => Promise<void>): Promise<void> {
  await file.transaction(async () => {
    for (const sql of swapSql(live, staging, archive)) await file.run(sql);
    await recordSwap();
  });
}

/** One image of a compacted batch: the row (UNCHANGED for a left-out TOASTed value) and, for an image born of a key change, the old key. */
export interface BatchImage {
  readonly row: readonly CapturedValue[];
  readonly fromKey?: readonly (string | null)[];
}

/** A compacted batch of one table: last image per key, and the keys to delete (disjoint from the images' keys). */
export interface Batch {
  readonly upserts: readonly BatchImage[];
  readonly deletes: readonly (readonly (string | null)[])[];
  /** A TRUNCATE of the source before these changes (they follow it). */
  readonly truncateFirst?: boolean;
}

/**
 * Reads the current values of `columns` from the source for the rows with these keys (text values),
 * each result row as key values then column values; a key the source no longer has is left out.
 */
export type FillFromSource = (keys: readonly (readonly string[])[], columns: readonly string[]) => Promise<(string | null)[][]>;

const BATCH = '_sluice_batch';
const FILL = '_sluice_fill';

/**
 * Applies a batch set-wise, in one transaction with `commitCursor`: the images and delete markers
 * are appended to a temp batch table, images whose left-out columns the destination cannot supply
 * are filled from the source, and one MERGE applies it. A TRUNCATE before the batch is applied first.
 */
export async function applyBatch(
  file: DuckDbFile,
  target: TableName,
  shape: TableShape,
  batch: Batch,
  fill: FillFromSource | null,
  commitCursor: () => Promise<void>,
): Promise<void> {
  await file.transaction(async () => {
    await applyBatchRows(file, target, shape, batch, fill);
    await commitCursor();
  });
}

/** applyBatch's statements, inside a transaction the caller holds (several segments and one cursor). */
export async function applyBatchRows(file: DuckDbFile, target: TableName, shape: TableShape, batch: Batch, fill: FillFromSource | null): Promise<void> {
  const names = shape.columns.map((c) => c.name);
  const keyIdx = shape.key.map((k) => names.indexOf(k));
  if (batch.truncateFirst) await file.run(truncateSql(target));
  await file.run(createBatchTableSql(BATCH, shape.columns));
  const staged: (string | null)[][] = [];
  const extras: [string, string | null, string | null][] = [];
  for (const img of batch.upserts) {
    const unchanged = img.row.some((v) => v === false);
    staged.push(img.row.map((v) => (v === false ? null : v)));
    extras.push(['u', unchanged ? img.row.map((v) => (v === false ? '1' : '0')).join('') : null, unchanged && img.fromKey ? JSON.stringify(img.fromKey) : null]);
  }
  for (const key of batch.deletes) {
    const row: (string | null)[] = names.map(() => null);
    keyIdx.forEach((ci, j) => (row[ci] = key[j]));
    staged.push(row);
    extras.push(['d', null, null]);
  }
  await appendRows(file, { catalog: 'temp', schema: 'main', name: BATCH }, shape.columns, staged, (a, i) => {
    const [op, mask, from] = extras[i];
    a.appendVarchar(op);
    if (mask === null) a.appendNull();
    else a.appendVarchar(mask);
    if (from === null) a.appendNull();
    else a.appendVarchar(from);
  });
  // Only images that left values out can need them from the source: without any, no query for them.
  if (extras.some(([, mask]) => mask !== null)) await resolveUnknownValues(file, target, shape, fill);
  await file.run(mergeBatchSql(target, BATCH, shape.columns, shape.key));
}

/** destinations/postgres' applier does the same; the reasons are written at dialect.ts unknownValuesSql. */
async function resolveUnknownValues(file: DuckDbFile, target: TableName, shape: TableShape, fill: FillFromSource | null): Promise<void> {
  const need = await file.all(unknownValuesSql(target, BATCH, shape.key));
  if (need.length === 0) return;
  const names = shape.columns.map((c) => c.name);
  if (fill) {
    const keys = need.map((r) => shape.key.map((k) => r[k] as string));
    const columns = names.filter((n) => !shape.key.includes(n));
    const got = await fill(keys, columns);
    const byName = new Map(shape.columns.map((c) => [c.name, c]));
    const fillColumns = [...shape.key, ...columns].map((n) => byName.get(n)!);
    await file.run(createBatchTableSql(FILL, fillColumns));
    await appendRows(file, { catalog: 'temp', schema: 'main', name: FILL }, fillColumns, got, (a) => {
      a.appendVarchar('u');
      a.appendNull();
      a.appendNull();
    });
    await file.run(applyFillSql(BATCH, FILL, shape.columns, shape.key));
  }
  for (const sql of dropUnresolvedSql(target, BATCH, shape.key)) await file.run(sql);
}

/**
 * A column the source gained, with the value the source gave existing rows (its DEFAULT, as text; null
 * for none). Its own transaction, or the caller's when one is open (a batch that carries the column).
 */
export async function addColumn(file: DuckDbFile, target: TableName, column: DuckColumn, existingValue: string | null): Promise<void> {
  const inOne = (fn: () => Promise<void>) => (file.inTransaction ? fn() : file.transaction(fn));
  await inOne(async () => {
    await file.run(addColumnSql(target, column));
    for (const sql of columnCommentsSql(target, [column])) await file.run(sql);
    if (existingValue !== null) await file.run(setColumnSql(target, column.name), [toDuckValue(column.name, column.type, existingValue)]);
  });
}

export async function renameTable(file: DuckDbFile, from: TableName, to: string): Promise<void> {
  await file.run(renameSql(from, to));
}
