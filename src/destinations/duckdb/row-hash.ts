/**
 * A row hash that PostgreSQL and DuckDB compute alike, for `sluice verify` against a DuckDB destination.
 *
 * The PostgreSQL-to-PostgreSQL verify hashes `md5(ROW(cols)::text)`: PostgreSQL's record output,
 * which DuckDB cannot reproduce (its types print differently: floats as "100.0", BC dates as
 * "(BC)", intervals as "months", and TIMESTAMPTZ past about the year 200000 a millisecond off through
 * ICU). So both engines compute a canonical text of each value instead, with SQL each has:
 *
 * | column (DuckDB type)         | canonical text                                                      |
 * |------------------------------|---------------------------------------------------------------------|
 * | FLOAT, DOUBLE                | shortest round-trip digits as `[-]d[.ddd]e<exp>`; `nan`, `inf`, `-inf`, `0`, `-0` |
 * | TIMESTAMPTZ                  | microseconds since 1970-01-01 UTC; `infinity`, `-infinity`           |
 * | INTERVAL                     | `<months> <days> <microseconds>`                                     |
 * | BLOB (bytea)                 | lower-case hex                                                       |
 * | DATE, TIMESTAMP              | ISO text, BC as a ` BC` suffix (PostgreSQL's form)                  |
 * | BOOLEAN                      | `true`, `false`                                                      |
 * | DECIMAL(19,2) (money)        | the number (PostgreSQL: `money::numeric`)                            |
 * | everything else              | PostgreSQL's output text (DuckDB: the column cast to VARCHAR, which for these types is the same text, or the stored text itself) |
 *
 * A row's canonical text is its columns in order, each `n` for NULL or `v<bytes>:<text>` (bytes of
 * its UTF-8 text: no separator can be forged); the row hash is md5 of it, and a range's hash md5 of
 * the row hashes concatenated in key order, as verify does now. Both halves are here so that one
 * test pins them together (test/integration/duckdb-types.test.ts); the PostgreSQL half is what
 * src/verify's `verifyShape().rowExpr` becomes for a DuckDB destination (docs/architecture.md).
 */
import type { TableName } from '../../core/types.js';
import { qualified, quoteIdent } from './dialect.js';
import type { DuckColumn } from './types.js';

/**
 * `[-]d[.ddd]e<exp>` from a float's decimal text, in SQL both engines run alike (`split_part`,
 * `ltrim`/`rtrim` of characters, `substr`, `length`): '123.456' → '1.23456e2', '1e-05' → '1e-5',
 * '100.0' and '100' → '1e2'. `t` is the text, lower-cased.
 */
function floatCanonical(t: string): string {
  const body = `ltrim(${t}, '-')`;
  const mant = `split_part(${body}, 'e', 1)`;
  const exp = `CAST(coalesce(nullif(split_part(${body}, 'e', 2), ''), '0') AS INTEGER)`;
  const ip = `split_part(${mant}, '.', 1)`;
  const digits = `(${ip} || split_part(${mant}, '.', 2))`;
  const sig = `rtrim(ltrim(${digits}, '0'), '0')`;
  const leading = `(length(${digits}) - length(ltrim(${digits}, '0')))`;
  const sign = `CASE WHEN substr(${t}, 1, 1) = '-' THEN '-' ELSE '' END`;
  return (
    `CASE WHEN ${t} IN ('nan', 'inf', '-inf', 'infinity', '-infinity') THEN replace(${t}, 'infinity', 'inf')` +
    ` WHEN ${sig} = '' THEN ${sign} || '0'` +
    ` ELSE ${sign} || substr(${sig}, 1, 1) || CASE WHEN length(${sig}) > 1 THEN '.' || substr(${sig}, 2) ELSE '' END` +
    ` || 'e' || CAST(${exp} + length(${ip}) - 1 - ${leading} AS VARCHAR) END`
  );
}

/** One field of the canonical row text: `n`, or `v<bytes>:<text>`. */
function field(text: string, bytes: (t: string) => string): string {
  return `CASE WHEN ${text} IS NULL THEN 'n' ELSE 'v' || CAST(${bytes(text)} AS VARCHAR) || ':' || ${text} END`;
}

/** DuckDB: the canonical text of a column's value. */
export function duckdbCanonical(c: DuckColumn): string {
  const x = quoteIdent(c.name);
  switch (c.type.sql) {
    case 'FLOAT':
    case 'DOUBLE':
      return floatCanonical(`lower(CAST(${x} AS VARCHAR))`);
    case 'TIMESTAMPTZ':
      return `CASE WHEN isfinite(${x}) THEN CAST(epoch_us(${x}) AS VARCHAR) ELSE CAST(${x} AS VARCHAR) END`;
    case 'INTERVAL':
      return (
        `CAST(datepart('year', ${x}) * 12 + datepart('month', ${x}) AS VARCHAR) || ' ' || CAST(datepart('day', ${x}) AS VARCHAR) || ' ' ||` +
        ` CAST(datepart('hour', ${x}) * 3600000000 + datepart('minute', ${x}) * 60000000 + datepart('microseconds', ${x}) AS VARCHAR)`
      );
    case 'BLOB':
      return `lower(hex(${x}))`;
    case 'DATE':
    case 'TIMESTAMP':
      return `regexp_replace(CAST(${x} AS VARCHAR), '^(.*) \\(BC\\)(.*)$', '\\1\\2 BC')`;
    default:
      return `CAST(${x} AS VARCHAR)`;
  }
}

/** PostgreSQL: the canonical text of a column's value (a session with DateStyle ISO, as verify's). */
export function postgresCanonical(c: DuckColumn): string {
  const x = quoteIdent(c.name);
  switch (c.type.sql) {
    case 'FLOAT':
    case 'DOUBLE':
      return floatCanonical(`lower(${x}::text)`);
    case 'TIMESTAMPTZ':
      return `CASE WHEN isfinite(${x}) THEN (extract(epoch FROM ${x}) * 1000000)::bigint::text ELSE ${x}::text END`;
    case 'INTERVAL':
      return (
        `(extract(year FROM ${x}) * 12 + extract(month FROM ${x}))::bigint::text || ' ' || extract(day FROM ${x})::bigint::text || ' ' ||` +
        ` ((extract(hour FROM ${x}) * 3600 + extract(minute FROM ${x}) * 60) * 1000000 + extract(microseconds FROM ${x}))::bigint::text`
      );
    case 'BLOB':
      return `encode(${x}, 'hex')`;
    case 'BOOLEAN':
      return `${x}::text`;
    default:
      // money is the one source type behind DECIMAL(19,2) whose output is not a plain number.
      if (c.type.kind === 'money') return `${x}::numeric::text`;
      // concat() prints with the type's output function (char(n) keeps its padding, as COPY does).
      return `CASE WHEN ${x} IS NULL THEN NULL ELSE concat(${x}) END`;
  }
}

/** md5 of the canonical row text, in DuckDB. */
export function duckdbRowHashExpr(columns: readonly DuckColumn[]): string {
  return `md5(${columns.map((c) => field(duckdbCanonical(c), (t) => `strlen(${t})`)).join(' || ')})`;
}

/** md5 of the canonical row text, in PostgreSQL. */
export function postgresRowHashExpr(columns: readonly DuckColumn[]): string {
  return `md5(${columns.map((c) => field(postgresCanonical(c), (t) => `octet_length(${t})`)).join(' || ')})`;
}

/**
 * Row count and hash of a DuckDB table (or of the rows `where` keeps): md5 over the row hashes in key
 * order, md5('') for none, as src/verify's rangeHashQuery computes on PostgreSQL. Key columns order
 * the same in both engines when they are numbers, uuids, dates and times, or text compared byte-wise
 * (PostgreSQL `COLLATE "C"`; DuckDB's default); a key stored as VARCHAR for a type PostgreSQL orders
 * otherwise (numeric, inet) would need the order of its text on both sides.
 */
export function duckdbRangeHashSql(table: TableName, columns: readonly DuckColumn[], key: readonly string[], where = ''): string {
  return (
    `SELECT count(*) AS n, coalesce(md5(string_agg(${duckdbRowHashExpr(columns)}, '' ORDER BY ${key.map(quoteIdent).join(', ')})), md5('')) AS h` +
    ` FROM ${qualified(table)}${where ? ` WHERE ${where}` : ''}`
  );
}
