/**
 * The SQL of `sluice verify`: key ranges, the walk that cuts them, and the hashes compared over them.
 *
 * Written apart from the copier's chunk predicates (src/pipeline/chunking.ts and the chunk builders of
 * src/destinations/postgres/dialect.ts) on purpose, and sharing no code with them: a boundary mistake
 * there would otherwise be repeated here, and the check meant to find it would agree with it.
 * test/unit/verify-ranges.test.ts fails if src/verify imports any of them.
 *
 * A range is `(after, upTo]` in key order: the lower bound is exclusive, the upper one inclusive, and
 * a null bound is open. Ranges cut at the same keys therefore hold every row exactly once, the rows
 * before the first cut and after the last one included. A composite key is compared as a row value,
 * `("a", "b" COLLATE "C") > ($1::integer, $2::text)`: lexicographic, and byte-wise on every collatable
 * key column, in the walk that cuts the ranges, in their predicates and in the order of the hashed
 * rows alike. The two servers may sort text differently (another default collation, an ICU locale,
 * another libc): a range cut in the source's collation would hold other rows in the destination's.
 * "C" means the same everywhere. When a key column is already byte-ordered on both sides
 * (`collate: false`) the clause is left out, so the walk stays an index-only scan of the primary key;
 * otherwise each cut reads the rest of its range (an index in another collation cannot serve it).
 *
 * Key values are the text forms the server printed for the key columns (session settings make them
 * exact: DateStyle ISO, extra_float_digits 3, TimeZone UTC). They travel as bind parameters, each cast
 * to its column's type (`format_type` output); no key value is ever written into the SQL text.
 */
import type { TableName } from '../core/types.js';

/** A primary key column and its type as `format_type()` prints it (usable in a cast). */
export interface KeyColumn {
  readonly name: string;
  readonly typeSql: string;
  /** Compare it `COLLATE "C"` (a collatable column not byte-ordered on both sides). */
  readonly collate: boolean;
}

/** `(after, upTo]` in key order (text values of the key columns); a null bound is open. */
export interface KeyRange {
  readonly after: readonly string[] | null;
  readonly upTo: readonly string[] | null;
}

/** What the queries of one verified table need. */
export interface VerifyShape {
  readonly key: readonly KeyColumn[];
  /** ORDER BY of the hashed rows: the key, collatable columns in "C" order so both servers agree whatever their collation. */
  readonly order: string;
  /** md5 of a row's text form. */
  readonly rowExpr: string;
  /** A condition every query adds (empty: the whole table). */
  readonly scope: string;
}

/** SQL text and its bind parameters, for `client.query`. */
export interface Query {
  readonly text: string;
  readonly values: string[];
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function qualified(table: TableName): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
}

const TEXTUAL = /\b(text|character|char|varchar|citext|name)\b/;

/**
 * `collate(name)` says whether a key column needs `COLLATE "C"` (the verifier asks both catalogs);
 * without it every text-like type does.
 */
export function verifyShape(
  columns: readonly { readonly name: string; readonly typeSql: string }[],
  primaryKey: readonly string[],
  scope: string,
  collate: (column: { readonly name: string; readonly typeSql: string }) => boolean = (c) => TEXTUAL.test(c.typeSql),
): VerifyShape {
  if (primaryKey.length === 0) throw new Error('verify compares by primary key: the table has none');
  const key = primaryKey.map((name) => {
    const c = columns.find((x) => x.name === name);
    if (!c) throw new Error(`primary key column ${name} is not among the table's columns`);
    return { name, typeSql: c.typeSql, collate: collate(c) };
  });
  return {
    key,
    order: key.map((k) => keyExpr(k)).join(', '),
    rowExpr: `md5(ROW(${columns.map((c) => quoteIdent(c.name)).join(', ')})::text)`,
    scope: scope.trim(),
  };
}

/** A key column as compared: `"code" COLLATE "C"`, qualified with `prefix` (`"s"."t".`) when given. */
export function keyExpr(k: KeyColumn, prefix = ''): string {
  return `${prefix}${quoteIdent(k.name)}${k.collate ? ' COLLATE "C"' : ''}`;
}

/**
 * The condition of a range: `key > after AND key <= upTo`, either side left out when open, '' when
 * both are. The bound values are appended to `values`; their placeholders follow what it held.
 */
export function rangeCondition(key: readonly KeyColumn[], range: KeyRange, values: string[]): string {
  if (key.length === 0) throw new Error('a key range needs at least one key column');
  const columns = key.length === 1 ? keyExpr(key[0]) : `(${key.map((k) => keyExpr(k)).join(', ')})`;
  const bound = (v: readonly string[]): string => {
    if (v.length !== key.length) throw new Error(`a bound of ${v.length} values for a key of ${key.length} columns`);
    const ps = key.map((k, i) => `$${values.push(v[i])}::${k.typeSql}`);
    return ps.length === 1 ? ps[0] : `(${ps.join(', ')})`;
  };
  const conds: string[] = [];
  if (range.after !== null) conds.push(`${columns} > ${bound(range.after)}`);
  if (range.upTo !== null) conds.push(`${columns} <= ${bound(range.upTo)}`);
  return conds.join(' AND ');
}

/** ` WHERE …` of a range and the scope ('' when neither limits anything). */
export function rangeWhere(shape: VerifyShape, range: KeyRange, values: string[]): string {
  const conds: string[] = [];
  const r = rangeCondition(shape.key, range, values);
  if (r !== '') conds.push(r);
  if (shape.scope !== '') conds.push(`(${shape.scope})`);
  return conds.length ? ` WHERE ${conds.join(' AND ')}` : '';
}

/**
 * The `rows`-th key of `range` in key order (text values, one column each), or no row when the range
 * holds fewer: an index-only walk of the primary key. ORDER BY names the key columns qualified with
 * the table, since a bare name would sort by the `::text` output column of the same name.
 */
export function boundaryQuery(table: TableName, shape: VerifyShape, range: KeyRange, rows: number): Query {
  const values: string[] = [];
  const cols = shape.key.map((k) => `${quoteIdent(k.name)}::text`).join(', ');
  const order = shape.key.map((k) => keyExpr(k, `${qualified(table)}.`)).join(', ');
  const offset = Math.max(0, Math.floor(rows) - 1);
  return { text: `SELECT ${cols} FROM ${qualified(table)}${rangeWhere(shape, range, values)} ORDER BY ${order} OFFSET ${offset} LIMIT 1`, values };
}

/**
 * Every `rows`-th key of `range` at once (text values, in key order): one scan and one sort of the
 * range's keys. The walk for keys compared `COLLATE "C"` on a server whose index sorts them otherwise:
 * there a `boundaryQuery` per cut would read the rest of the range each time.
 */
export function boundariesQuery(table: TableName, shape: VerifyShape, range: KeyRange, rows: number): Query {
  const values: string[] = [];
  const names = shape.key.map((k) => quoteIdent(k.name)).join(', ');
  const order = shape.key.map((k) => keyExpr(k, `${qualified(table)}.`)).join(', ');
  const every = Math.max(1, Math.floor(rows));
  return {
    text:
      `SELECT ${shape.key.map((k) => `${quoteIdent(k.name)}::text`).join(', ')} FROM (` +
      `SELECT ${names}, row_number() OVER (ORDER BY ${order}) AS _sluice_rn FROM ${qualified(table)}${rangeWhere(shape, range, values)}` +
      `) s WHERE _sluice_rn % ${every} = 0 ORDER BY _sluice_rn`,
    values,
  };
}

/** Row count (`n`, bigint) and md5 over the rows' md5s in key order (`h`) of a range, computed by the server. */
export function rangeHashQuery(table: TableName, shape: VerifyShape, range: KeyRange): Query {
  const values: string[] = [];
  return {
    text:
      `SELECT count(*)::bigint AS n, coalesce(md5(string_agg(${shape.rowExpr}, '' ORDER BY ${shape.order})), md5('')) AS h` +
      ` FROM ${qualified(table)}${rangeWhere(shape, range, values)}`,
    values,
  };
}

/** Each row's key in text form (`k`) and md5 (`h`), in key order, at most `limit` rows. */
export function rowHashesQuery(table: TableName, shape: VerifyShape, range: KeyRange, limit: number): Query {
  const values: string[] = [];
  const keyText = `ROW(${shape.key.map((k) => quoteIdent(k.name)).join(', ')})::text`;
  return {
    text: `SELECT ${keyText} AS k, ${shape.rowExpr} AS h FROM ${qualified(table)}${rangeWhere(shape, range, values)} ORDER BY ${shape.order} LIMIT ${Math.max(0, Math.floor(limit))}`,
    values,
  };
}

/** Reads nothing: fails when `scope` is not a valid condition on the table. */
export function scopeCheckSql(table: TableName, scope: string): string {
  return `SELECT 1 FROM ${qualified(table)} WHERE (${scope}) LIMIT 0`;
}
