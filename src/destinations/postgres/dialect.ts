/**
 * Pure SQL builders for a PostgreSQL destination (and the source-side chunk queries). No I/O:
 * every function returns text, and test/unit/dialect.test.ts pins the output.
 */
import type { ColumnInfo, UserTypeDef } from '../../core/columns.js';
import { columnList, qualified, quoteIdent, quoteLiteral } from '../../core/quote.js';
import type { TableName } from '../../core/types.js';

export { columnList, qualified, quoteIdent, quoteLiteral };

export function createUserTypeSql(def: UserTypeDef): string {
  const name = `${quoteIdent(def.schema)}.${quoteIdent(def.name)}`;
  if (def.kind === 'enum') return `CREATE TYPE ${name} AS ENUM (${def.labels.map(quoteLiteral).join(', ')})`;
  let sql = `CREATE DOMAIN ${name} AS ${def.baseSql}`;
  if (def.defaultSql !== null) sql += ` DEFAULT ${def.defaultSql}`;
  if (def.notNull) sql += ' NOT NULL';
  for (const c of def.checks) sql += ` ${c}`;
  return sql;
}

/**
 * A column definition for CREATE TABLE / ADD COLUMN. Sequence defaults stay behind: values come from
 * the source. `collate` is the destination collation that sorts as the source column does
 * (collations.ts), when the destination's default would not.
 */
export function columnDefSql(c: ColumnInfo, collate?: string): string {
  let sql = `${quoteIdent(c.name)} ${c.typeSql}`;
  if (collate) sql += ` COLLATE ${collate}`;
  if (c.generatedSql !== null) return `${sql} GENERATED ALWAYS AS (${c.generatedSql}) STORED`;
  if (c.defaultSql !== null && !/\bnextval\(/i.test(c.defaultSql)) sql += ` DEFAULT ${c.defaultSql}`;
  if (c.notNull) sql += ' NOT NULL';
  return sql;
}

export function createTableSql(
  target: TableName,
  columns: readonly ColumnInfo[],
  primaryKey: readonly string[],
  collations: ReadonlyMap<string, string> = new Map(),
): string {
  const defs = columns.map((c) => columnDefSql(c, collations.get(c.name)));
  if (primaryKey.length > 0) defs.push(`PRIMARY KEY (${columnList(primaryKey)})`);
  return `CREATE TABLE ${qualified(target)} (\n  ${defs.join(',\n  ')}\n)`;
}

/** `(a, b)` or `a`: row-value syntax that PostgreSQL matches to a composite btree index. */
function keyTuple(names: readonly string[], alias?: string): string {
  const cols = names.map((n) => (alias ? `${alias}.${quoteIdent(n)}` : quoteIdent(n)));
  return cols.length === 1 ? cols[0] : `(${cols.join(', ')})`;
}

function keyLiteral(values: readonly string[], types: readonly string[]): string {
  const lits = values.map((v, i) => `${quoteLiteral(v)}::${types[i]}`);
  return lits.length === 1 ? lits[0] : `(${lits.join(', ')})`;
}

export interface KeyRange {
  /** Exclusive lower bound (text values of the key columns), or null for the start of the table. */
  readonly after: readonly string[] | null;
  /** Inclusive upper bound, or null for the end of the table. */
  readonly upTo: readonly string[] | null;
}

export interface KeysetTable {
  readonly source: TableName;
  readonly key: readonly string[];
  readonly keyTypes: readonly string[];
  readonly columns: readonly string[];
}

function rangePredicate(t: KeysetTable, range: KeyRange): string {
  const conds: string[] = [];
  if (range.after) conds.push(`${keyTuple(t.key)} > ${keyLiteral(range.after, t.keyTypes)}`);
  if (range.upTo) conds.push(`${keyTuple(t.key)} <= ${keyLiteral(range.upTo, t.keyTypes)}`);
  return conds.length ? ` WHERE ${conds.join(' AND ')}` : '';
}

/**
 * The last key of the next chunk of `chunkRows` rows after `after`: an index-only walk of the
 * primary key. No row means fewer rows remain, so the next chunk is the last and open-ended.
 *
 * ORDER BY names the key columns qualified with the table: a bare `"id"` would mean the output
 * column `"id"::text` (output names win in ORDER BY), i.e. a sort of every remaining key as text,
 * a full scan per chunk and chunks of arbitrary size.
 */
export function chunkBoundarySql(t: KeysetTable, after: readonly string[] | null, chunkRows: number): string {
  const keyCols = t.key.map((k) => `${quoteIdent(k)}::text`).join(', ');
  const order = t.key.map((k) => `${qualified(t.source)}.${quoteIdent(k)}`).join(', ');
  return (
    `SELECT ${keyCols} FROM ${qualified(t.source)}${rangePredicate(t, { after, upTo: null })}` +
    ` ORDER BY ${order} OFFSET ${Math.max(0, chunkRows - 1)} LIMIT 1`
  );
}

/** COPY of one key range out of the source. */
export function copyOutSql(t: KeysetTable, range: KeyRange, binary: boolean): string {
  const select = `SELECT ${columnList(t.columns)} FROM ${qualified(t.source)}${rangePredicate(t, range)}`;
  return `COPY (${select}) TO STDOUT${binary ? ' (FORMAT binary)' : ''}`;
}

export function copyInSql(target: TableName | string, columns: readonly string[], binary: boolean): string {
  const name = typeof target === 'string' ? target : qualified(target);
  return `COPY ${name} (${columnList(columns)}) FROM STDIN${binary ? ' (FORMAT binary)' : ''}`;
}

/** Upsert of staged rows into the target by key, every non-key column taking the staged value. */
export function upsertFromSql(target: TableName, staged: string, columns: readonly string[], key: readonly string[]): string {
  const nonKey = columns.filter((c) => !key.includes(c));
  const action = nonKey.length
    ? `DO UPDATE SET ${nonKey.map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ')}`
    : 'DO NOTHING';
  return (
    `INSERT INTO ${qualified(target)} AS t (${columnList(columns)}) SELECT ${columnList(columns)} FROM ${staged}` +
    ` ON CONFLICT (${columnList(key)}) ${action}`
  );
}

/**
 * For staged update images that left some TOASTed columns out: `_sluice_unchanged` holds one
 * character per column ('1' = keep the destination's value).
 */
export function updateKeepingUnchangedSql(target: TableName, staged: string, columns: readonly string[], key: readonly string[]): string {
  const sets = columns
    .map((c, i) => ({ c, i }))
    .filter(({ c }) => !key.includes(c))
    .map(
      ({ c, i }) =>
        `${quoteIdent(c)} = CASE WHEN substr(s._sluice_unchanged, ${i + 1}, 1) = '1' THEN t.${quoteIdent(c)} ELSE s.${quoteIdent(c)} END`,
    );
  if (sets.length === 0) return `SELECT 1`;
  return `UPDATE ${qualified(target)} AS t SET ${sets.join(', ')} FROM ${staged} AS s WHERE ${keyTuple(key, 't')} = ${keyTuple(key, 's')}`;
}

export function insertMissingSql(target: TableName, staged: string, columns: readonly string[], key: readonly string[]): string {
  return (
    `INSERT INTO ${qualified(target)} (${columnList(columns)}) SELECT ${prefixed(columns, 's')} FROM ${staged} AS s` +
    ` WHERE NOT EXISTS (SELECT 1 FROM ${qualified(target)} AS t WHERE ${keyTuple(key, 't')} = ${keyTuple(key, 's')})`
  );
}

function prefixed(columns: readonly string[], alias: string): string {
  return columns.map((c) => `${alias}.${quoteIdent(c)}`).join(', ');
}

export function deleteByKeysSql(target: TableName, staged: string, key: readonly string[]): string {
  return `DELETE FROM ${qualified(target)} AS t USING ${staged} AS d WHERE ${keyTuple(key, 't')} = ${keyTuple(key, 'd')}`;
}

/** Encodes one value for COPY's text format. */
export function copyTextValue(v: string | null): string {
  if (v === null) return '\\N';
  if (!/[\\\t\n\r]/.test(v)) return v;
  return v.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}
