/**
 * Pure SQL builders for a DuckDB destination. No I/O: every function returns text, and
 * test/unit/duckdb-dialect.test.ts pins the output.
 *
 * The shape of a load and of an apply (docs/architecture.md, "DuckDB destination"):
 * - A backfill appends its chunks to a load table: the target's columns plus `_sluice_seq`, the
 *   chunk's load sequence; no key, no index, nothing checked per row.
 * - After the last chunk, one statement moves the load into place keeping one row per primary key,
 *   the one with the highest `_sluice_seq` (`dedupedSelectSql`); why any surviving copy is right is
 *   written there.
 * - Each batch of changes is appended to a temp batch table (the last image per key, or a delete
 *   marker) and applied by one MERGE per table.
 * DuckDB tables that sluice writes carry no PRIMARY KEY: the load must not check one, and the MERGE
 * matches by the key columns with a hash join. One row per key holds because the load is deduplicated
 * once and every later write is a MERGE by key.
 */
import { qualified, quoteIdent, quoteLiteral } from '../../core/quote.js';
import type { TableName } from '../../core/types.js';
import type { DuckColumn } from './types.js';

// Standard SQL quoting, as PostgreSQL reads it (DuckDB strings have no backslash escapes either).
export { qualified, quoteIdent, quoteLiteral };

export function columnList(names: readonly string[], alias?: string): string {
  return names.map((n) => (alias ? `${alias}.${quoteIdent(n)}` : quoteIdent(n))).join(', ');
}

/** The load sequence column of a load table: the chunk's number in the order chunks were read. */
export const LOAD_SEQ = '_sluice_seq';
/** Batch table columns: 'u' (upsert the image) or 'd' (delete the key); the unchanged-column mask. */
export const OP = '_sluice_op';
export const UNCHANGED_MASK = '_sluice_unchanged';
/** Set on an image born of a key change: `_sluice_from` is the old key (JSON array of text). */
export const FROM_KEY = '_sluice_from';

export function createSchemaSql(schema: string): string {
  return `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`;
}

function columnDef(c: DuckColumn, nullable = false): string {
  return `${quoteIdent(c.name)} ${c.type.sql}${c.notNull && !nullable ? ' NOT NULL' : ''}`;
}

/** The live or staging table: the columns, no key (see the file's note). */
export function createTableSql(target: TableName, columns: readonly DuckColumn[]): string {
  return `CREATE TABLE ${qualified(target)} (\n  ${columns.map((c) => columnDef(c)).join(',\n  ')}\n)`;
}

/** The comment a money column carries: its DECIMAL(19,2) takes money's text form (catalog.ts). */
export const MONEY_COMMENT = 'sluice:money';

/** Comments that say how a column takes its values where its DuckDB type does not (money). */
export function columnCommentsSql(target: TableName, columns: readonly DuckColumn[]): string[] {
  return columns
    .filter((c) => c.type.kind === 'money')
    .map((c) => `COMMENT ON COLUMN ${qualified(target)}.${quoteIdent(c.name)} IS ${quoteLiteral(MONEY_COMMENT)}`);
}

/** The load table of a backfill: the columns plus the load sequence, nothing else. */
export function createLoadTableSql(load: TableName, columns: readonly DuckColumn[]): string {
  return `CREATE TABLE ${qualified(load)} (\n  ${[...columns.map((c) => columnDef(c)), `${LOAD_SEQ} BIGINT NOT NULL`].join(',\n  ')}\n)`;
}

/**
 * One row per primary key of a load table: the copy with the highest load sequence.
 *
 * Why any surviving copy is right, and why the highest sequence is the one kept: a row can be read
 * twice only by overlapping reads (a ctid range re-read after a resume, a row moved to a later page
 * by an update while the load ran). Every copy was read after L0, and after this dedupe every change
 * at or after L0 is replayed over the table, last image per key. A row changed after L0 is therefore
 * rewritten (or deleted) by the replay whichever copy survives; a row not changed after L0 has the
 * same values in every copy. So correctness does not hang on which copy wins; keeping the copy with
 * the highest sequence (state.ts nextLoadSeq numbers a chunk one past the chunks committed before it:
 * after a resume, the re-read copy) keeps the most recently read one and makes the choice
 * deterministic. `rowid` breaks a tie inside one chunk, which cannot hold a key twice anyway.
 */
export function dedupedSelectSql(load: TableName, columns: readonly DuckColumn[], key: readonly string[]): string {
  return (
    `SELECT ${columnList(columns.map((c) => c.name))} FROM ${qualified(load)}` +
    ` QUALIFY row_number() OVER (PARTITION BY ${columnList(key)} ORDER BY ${LOAD_SEQ} DESC, rowid DESC) = 1`
  );
}

/** Fills an empty table (staging of an online load; the live table in truncate and drop modes) from the deduplicated load. */
export function insertDedupedSql(target: TableName, load: TableName, columns: readonly DuckColumn[], key: readonly string[]): string {
  return `INSERT INTO ${qualified(target)} (${columnList(columns.map((c) => c.name))}) ${dedupedSelectSql(load, columns, key)}`;
}

function keyMatch(key: readonly string[], a: string, b: string): string {
  return key.map((k) => `${a}.${quoteIdent(k)} = ${b}.${quoteIdent(k)}`).join(' AND ');
}

/** upsert mode: the deduplicated load over the live table, every column taking the loaded value. */
export function upsertDedupedSql(live: TableName, load: TableName, columns: readonly DuckColumn[], key: readonly string[]): string {
  const names = columns.map((c) => c.name);
  const nonKey = names.filter((n) => !key.includes(n));
  const update = nonKey.length ? ` WHEN MATCHED THEN UPDATE SET ${nonKey.map((n) => `${quoteIdent(n)} = s.${quoteIdent(n)}`).join(', ')}` : '';
  return (
    `MERGE INTO ${qualified(live)} AS t USING (${dedupedSelectSql(load, columns, key)}) AS s ON (${keyMatch(key, 't', 's')})` +
    `${update} WHEN NOT MATCHED THEN INSERT (${columnList(names)}) VALUES (${columnList(names, 's')})`
  );
}

export function dropTableSql(t: TableName): string {
  return `DROP TABLE IF EXISTS ${qualified(t)}`;
}

export function truncateSql(t: TableName): string {
  return `TRUNCATE ${qualified(t)}`;
}

/** Renames within the table's schema (DuckDB takes the new name unqualified). */
export function renameSql(from: TableName, to: string): string {
  return `ALTER TABLE ${qualified(from)} RENAME TO ${quoteIdent(to)}`;
}

/**
 * The online swap, for one transaction: live → archive, staging → live. DuckDB binds a view to its
 * tables by name when the view is queried, so views over the live table read the new table at once.
 * Without an archive name the old table is dropped.
 */
export function swapSql(live: TableName, staging: TableName, archive: string | null): string[] {
  return [
    archive === null ? dropTableSql(live) : renameSql(live, archive),
    renameSql(staging, live.name),
  ];
}

/** A column the source gained; existing rows get its value by a separate UPDATE (no DuckDB DEFAULT: values come from the source). */
export function addColumnSql(t: TableName, c: DuckColumn): string {
  return `ALTER TABLE ${qualified(t)} ADD COLUMN ${quoteIdent(c.name)} ${c.type.sql}`;
}

export function setColumnSql(t: TableName, column: string): string {
  return `UPDATE ${qualified(t)} SET ${quoteIdent(column)} = $1`;
}

/** The temp table a batch is appended to: the target's columns (nullable: a delete marker has only the key), the op, the mask, the old key. */
export function createBatchTableSql(batch: string, columns: readonly DuckColumn[]): string {
  const defs = [...columns.map((c) => columnDef(c, true)), `${OP} VARCHAR NOT NULL`, `${UNCHANGED_MASK} VARCHAR`, `${FROM_KEY} VARCHAR`];
  return `CREATE OR REPLACE TEMP TABLE ${quoteIdent(batch)} (${defs.join(', ')})`;
}

export function batchRef(batch: string): string {
  return `temp.main.${quoteIdent(batch)}`;
}

/**
 * The one statement that applies a batch to a table. Each key appears once in the batch (the
 * pipeline compacts it: last image per key; a key change is a delete of the old key and an image at
 * the new one). `_sluice_unchanged` has one character per column, '1' for an unchanged TOASTed value
 * the image left out: the destination keeps its value. An image with such columns whose key the
 * destination lacks has been filled from the source before this runs (`unknownValuesSql`).
 */
export function mergeBatchSql(target: TableName, batch: string, columns: readonly DuckColumn[], key: readonly string[]): string {
  const names = columns.map((c) => c.name);
  const sets = names
    .map((n, i) => ({ n, i }))
    .filter(({ n }) => !key.includes(n))
    .map(
      ({ n, i }) =>
        `${quoteIdent(n)} = CASE WHEN substr(coalesce(s.${UNCHANGED_MASK}, ''), ${i + 1}, 1) = '1' THEN t.${quoteIdent(n)} ELSE s.${quoteIdent(n)} END`,
    );
  const update = sets.length ? ` WHEN MATCHED THEN UPDATE SET ${sets.join(', ')}` : '';
  return (
    `MERGE INTO ${qualified(target)} AS t USING ${batchRef(batch)} AS s ON (${keyMatch(key, 't', 's')})` +
    ` WHEN MATCHED AND s.${OP} = 'd' THEN DELETE${update}` +
    ` WHEN NOT MATCHED AND s.${OP} = 'u' THEN INSERT (${columnList(names)}) VALUES (${columnList(names, 's')})`
  );
}

/**
 * Images whose left-out columns the destination cannot supply: born of a key change (the row the
 * destination holds at either key may be another row's history during a replay), or at a key the
 * destination lacks. Their keys (as text) and masks; the pipeline reads those columns from the source.
 */
export function unknownValuesSql(target: TableName, batch: string, key: readonly string[]): string {
  return (
    `SELECT ${key.map((k) => `CAST(s.${quoteIdent(k)} AS VARCHAR) AS ${quoteIdent(k)}`).join(', ')}, s.${UNCHANGED_MASK} AS mask FROM ${batchRef(batch)} AS s` +
    ` WHERE ${unknownCondition(target, key)}`
  );
}

/** An image (alias `s`) with left-out values the destination cannot supply. */
function unknownCondition(target: TableName, key: readonly string[]): string {
  return (
    `s.${OP} = 'u' AND s.${UNCHANGED_MASK} IS NOT NULL` +
    ` AND (s.${FROM_KEY} IS NOT NULL OR NOT EXISTS (SELECT 1 FROM ${qualified(target)} AS t WHERE ${keyMatch(key, 't', 's')}))`
  );
}

/** Copies values read from the source (appended to `fill`, same column types) into the batch's images, clearing their masks. */
export function applyFillSql(batch: string, fill: string, columns: readonly DuckColumn[], key: readonly string[]): string {
  const sets = columns.filter((c) => !key.includes(c.name)).map((c) => `${quoteIdent(c.name)} = f.${quoteIdent(c.name)}`);
  return (
    `UPDATE ${batchRef(batch)} AS s SET ${[...sets, `${UNCHANGED_MASK} = NULL`].join(', ')} FROM ${batchRef(fill)} AS f` +
    ` WHERE ${keyMatch(key, 's', 'f')}`
  );
}

/**
 * Images still unresolved after the fill: their key is gone from the source, moved or deleted by a
 * later change that the log replays. They are dropped, and a stale row at a key born of a key change
 * is deleted, rather than written with values nobody knows.
 */
export function dropUnresolvedSql(target: TableName, batch: string, key: readonly string[]): string[] {
  return [
    `DELETE FROM ${qualified(target)} AS t USING ${batchRef(batch)} AS s WHERE ${keyMatch(key, 't', 's')} AND s.${OP} = 'u' AND s.${UNCHANGED_MASK} IS NOT NULL AND s.${FROM_KEY} IS NOT NULL`,
    `DELETE FROM ${batchRef(batch)} AS s WHERE ${unknownCondition(target, key)}`,
  ];
}
