/**
 * PostgreSQL column → DuckDB column, and how a value captured from PostgreSQL in text form becomes a
 * DuckDB value. The table is docs/configuration.md, "DuckDB destination: type mapping".
 *
 * The rule: a type DuckDB can hold exactly gets DuckDB's own type (integers, DECIMAL(p,s) up to 38
 * digits, floats, DATE/TIME/TIMESTAMP, INTERVAL, UUID, BLOB, BIT, JSON, an ENUM of the same labels);
 * everything else is VARCHAR holding PostgreSQL's own text form, byte for byte, so nothing is ever
 * rounded. A value that the chosen DuckDB type cannot hold (a timestamp past DuckDB's range, NaN in a
 * DECIMAL column) fails the load with an error naming the column, never a silent change.
 *
 * The text forms are those of sluice's sessions (pipeline/context.ts): DateStyle ISO, IntervalStyle
 * postgres, extra_float_digits 3, TimeZone UTC, bytea_output hex. Dates, timestamps, intervals and
 * bytea are converted here, not by DuckDB's text casts: DuckDB reads "0044-03-15 BC" as the year 44
 * AD, rejects BC timestamps, and reads "mons"; everything else goes to DuckDB as text and DuckDB's
 * cast is exact for it (integers, floats in shortest round-trip form, booleans, times, UUIDs, bits,
 * enum labels; decimals after the check below, since DuckDB rounds surplus fraction digits).
 */
import type { DuckDBValue } from '@duckdb/node-api';
import { duckdb } from './native.js';
import { SluiceError } from '../../core/errors.js';
import type { ColumnInfo, TableInfo, UserTypeDef } from '../../core/columns.js';
import { quoteLiteral } from './dialect.js';

/** How a captured text value is turned into what the appender takes. */
export type ValueKind =
  /** The text as is, cast by DuckDB (exact for the types that use it). */
  | 'cast'
  /** The text as is, stored as VARCHAR or JSON: PostgreSQL's text form. */
  | 'text'
  /** Checked against precision and scale first (DuckDB would round a surplus digit). */
  | 'decimal'
  /** money's text form ($1,234.56) → a DECIMAL(19,2) text. */
  | 'money'
  | 'bytea'
  | 'date'
  | 'timestamp'
  | 'timestamptz'
  | 'interval';

export interface DuckType {
  /** The DuckDB column type, for DDL. */
  readonly sql: string;
  readonly kind: ValueKind;
  /** For 'decimal': digits in all and after the point. */
  readonly precision?: number;
  readonly scale?: number;
}

/** A column as the DuckDB destination creates and fills it. */
export interface DuckColumn {
  readonly name: string;
  readonly type: DuckType;
  readonly notNull: boolean;
}

const BY_NAME: Readonly<Record<string, DuckType>> = {
  smallint: { sql: 'SMALLINT', kind: 'cast' },
  integer: { sql: 'INTEGER', kind: 'cast' },
  bigint: { sql: 'BIGINT', kind: 'cast' },
  real: { sql: 'FLOAT', kind: 'cast' },
  'double precision': { sql: 'DOUBLE', kind: 'cast' },
  boolean: { sql: 'BOOLEAN', kind: 'cast' },
  uuid: { sql: 'UUID', kind: 'cast' },
  text: { sql: 'VARCHAR', kind: 'text' },
  bytea: { sql: 'BLOB', kind: 'bytea' },
  date: { sql: 'DATE', kind: 'date' },
  json: { sql: 'JSON', kind: 'text' },
  jsonb: { sql: 'JSON', kind: 'text' },
  money: { sql: 'DECIMAL(19,2)', kind: 'money' },
  'bit varying': { sql: 'VARCHAR', kind: 'text' },
};

/** DuckDB's DECIMAL holds at most 38 digits. */
const MAX_DECIMAL_DIGITS = 38;

/**
 * The DuckDB type of a built-in PostgreSQL type, from its `format_type()` text (`numeric(12,3)`,
 * `character varying(20)`, `timestamp(3) with time zone`, `integer[]`).
 */
export function duckTypeOfBuiltin(typeSql: string): DuckType {
  if (typeSql.endsWith('[]')) return { sql: 'VARCHAR', kind: 'text' };
  const exact = BY_NAME[typeSql];
  if (exact) return exact;
  const numeric = /^numeric\((\d+),(-?\d+)\)$/.exec(typeSql);
  if (numeric) {
    const p = Number(numeric[1]);
    const s = Number(numeric[2]);
    if (p <= MAX_DECIMAL_DIGITS && s >= 0 && s <= p) return { sql: `DECIMAL(${p},${s})`, kind: 'decimal', precision: p, scale: s };
    return { sql: 'VARCHAR', kind: 'text' };
  }
  if (typeSql === 'numeric') return { sql: 'VARCHAR', kind: 'text' };
  if (/^(character varying|character|bpchar)\b/.test(typeSql)) return { sql: 'VARCHAR', kind: 'text' };
  if (/^bit\(\d+\)$/.test(typeSql)) return { sql: 'BIT', kind: 'cast' };
  if (/^timestamp(\(\d\))? without time zone$/.test(typeSql)) return { sql: 'TIMESTAMP', kind: 'timestamp' };
  if (/^timestamp(\(\d\))? with time zone$/.test(typeSql)) return { sql: 'TIMESTAMPTZ', kind: 'timestamptz' };
  if (/^time(\(\d\))? without time zone$/.test(typeSql)) return { sql: 'TIME', kind: 'cast' };
  if (/^time(\(\d\))? with time zone$/.test(typeSql)) return { sql: 'TIMETZ', kind: 'cast' };
  if (/^interval\b/.test(typeSql)) return { sql: 'INTERVAL', kind: 'interval' };
  // inet, cidr, macaddr, ranges, xml, tsvector, point and every other type: PostgreSQL's text form.
  return { sql: 'VARCHAR', kind: 'text' };
}

/** The DuckDB type of a source column; enums and domains are looked up in `userTypes`. */
export function duckTypeOf(column: Pick<ColumnInfo, 'typeSql' | 'support'>, userTypes: readonly UserTypeDef[]): DuckType {
  if (column.support !== 'user' || column.typeSql.endsWith('[]')) return duckTypeOfBuiltin(column.typeSql);
  const def = userTypes.find((t) => `"${t.schema.replace(/"/g, '""')}"."${t.name.replace(/"/g, '""')}"` === column.typeSql);
  if (!def) return { sql: 'VARCHAR', kind: 'text' };
  // An anonymous ENUM per column: no type object to keep in step; a new label is a new column type.
  if (def.kind === 'enum') return { sql: `ENUM(${def.labels.map(quoteLiteral).join(', ')})`, kind: 'cast' };
  // A domain is its base type (the source enforces its CHECKs).
  return duckTypeOf({ typeSql: def.baseSql, support: /^".*"\.".*"$/.test(def.baseSql) ? 'user' : 'builtin' }, userTypes);
}

/** Column names that sluice's own staging columns use. */
const RESERVED = /^_sluice_/i;

/**
 * The DuckDB columns of a source table, or a refusal (UNSUPPORTED_TYPE / NO_PRIMARY_KEY) before any
 * data moves: DuckDB matches identifiers case-insensitively, so `"Amount"` and `amount` would be one
 * column; the load and the per-batch MERGE match rows by primary key, so a table needs one.
 */
export function duckColumns(info: Pick<TableInfo, 'table' | 'copyColumns' | 'primaryKey' | 'userTypes'>): DuckColumn[] {
  const name = `${info.table.schema}.${info.table.name}`;
  if (info.primaryKey.length === 0) {
    throw new SluiceError(
      'NO_PRIMARY_KEY',
      `source ${name}: a DuckDB destination needs a primary key (the load deduplicates by it, and each batch of changes merges by it); add a primary key to the source table`,
      { context: { table: name } },
    );
  }
  const seen = new Map<string, string>();
  for (const c of info.copyColumns) {
    const folded = c.name.toLowerCase();
    const other = seen.get(folded);
    if (other !== undefined) {
      throw new SluiceError(
        'UNSUPPORTED_TYPE',
        `source ${name}: columns "${other}" and "${c.name}" differ only in case, and DuckDB matches column names case-insensitively; rename one of them on the source, or exclude the table`,
        { context: { table: name, columns: [other, c.name] } },
      );
    }
    seen.set(folded, c.name);
    if (RESERVED.test(c.name)) {
      throw new SluiceError(
        'UNSUPPORTED_TYPE',
        `source ${name}: column "${c.name}" starts with _sluice_, which sluice uses for its own columns in DuckDB; rename the column on the source, or exclude the table`,
        { context: { table: name, column: c.name } },
      );
    }
  }
  return info.copyColumns.map((c) => ({ name: c.name, type: duckTypeOf(c, info.userTypes), notNull: c.notNull }));
}

/** A value the DuckDB column cannot hold: names the column, the value and what to do. */
export class ValueRefused extends SluiceError {
  constructor(column: string, type: DuckType, value: string, why: string) {
    const shown = value.length > 60 ? `${value.slice(0, 60)}…` : value;
    super('UNSUPPORTED_TYPE', `column ${column}: value ${JSON.stringify(shown)} cannot be stored in DuckDB ${type.sql} (${why}); exclude such rows with tables[].where, or change the source column's type`, {
      context: { column, type: type.sql },
    });
  }
}

/**
 * What the appender takes for one captured text value of a column of `type` (null stays null). A
 * string is appended as VARCHAR and cast by DuckDB into the column's type.
 */
export function toDuckValue(column: string, type: DuckType, text: string | null): DuckDBValue {
  if (text === null) return null;
  const { DuckDBBlobValue, DuckDBDateValue, DuckDBTimestampValue, DuckDBTimestampTZValue, DuckDBIntervalValue } = duckdb();
  switch (type.kind) {
    case 'cast':
    case 'text':
      return text;
    case 'decimal':
      return checkedDecimal(column, type, text);
    case 'money':
      return moneyDecimal(column, type, text);
    case 'bytea':
      return new DuckDBBlobValue(byteaBytes(column, type, text));
    case 'date':
      return new DuckDBDateValue(dateDays(column, type, text));
    case 'timestamp':
      return new DuckDBTimestampValue(timestampMicros(column, type, text, false));
    case 'timestamptz':
      return new DuckDBTimestampTZValue(timestampMicros(column, type, text, true));
    case 'interval': {
      const i = intervalParts(column, type, text);
      return new DuckDBIntervalValue(i.months, i.days, i.micros);
    }
  }
}

function checkedDecimal(column: string, type: DuckType, text: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) throw new ValueRefused(column, type, text, 'not a finite number: DuckDB DECIMAL has no NaN or infinity');
  const whole = m[2].replace(/^0+/, '');
  const frac = (m[3] ?? '').replace(/0+$/, '');
  if (frac.length > type.scale! || whole.length > type.precision! - type.scale!) {
    throw new ValueRefused(column, type, text, `more digits than DECIMAL(${type.precision},${type.scale}) holds`);
  }
  return text;
}

function moneyDecimal(column: string, type: DuckType, text: string): string {
  // lc_monetary C (and en_US): -$92,233,720,368,547,758.08
  const m = /^(-)?\$?([\d,]+)\.(\d\d)$/.exec(text) ?? /^\(\$?([\d,]+)\.(\d\d)\)$/.exec(text);
  if (!m) throw new ValueRefused(column, type, text, "money in a form other than lc_monetary 'C' ($1,234.56); set lc_monetary = 'C' for the source database");
  return m.length === 4 ? `${m[1] ?? ''}${m[2].replace(/,/g, '')}.${m[3]}` : `-${m[1].replace(/,/g, '')}.${m[2]}`;
}

function byteaBytes(column: string, type: DuckType, text: string): Uint8Array {
  if (!text.startsWith('\\x') || text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text.slice(2))) {
    throw new ValueRefused(column, type, text, 'bytea not in hex form; set bytea_output = hex for the source');
  }
  return Buffer.from(text.slice(2), 'hex');
}

/** Days since 1970-01-01 of a proleptic Gregorian date (astronomical year: 1 BC is 0). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const mp = (month + 9) % 12;
  const doy = Math.floor((153 * mp + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

const DATE_RE = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/;
const TS_RE = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-]\d\d(?::?\d\d(?::?\d\d)?)?)?( BC)?$/;

function dateDays(column: string, type: DuckType, text: string): number {
  const { DuckDBDateValue } = duckdb();
  if (text === 'infinity') return DuckDBDateValue.PosInf.days;
  if (text === '-infinity') return DuckDBDateValue.NegInf.days;
  const m = DATE_RE.exec(text);
  if (!m) throw new ValueRefused(column, type, text, 'not an ISO date; set DateStyle = ISO for the source');
  const year = m[4] ? 1 - Number(m[1]) : Number(m[1]);
  const days = daysFromCivil(year, Number(m[2]), Number(m[3]));
  if (days > DuckDBDateValue.Max.days || days < DuckDBDateValue.Min.days) throw new ValueRefused(column, type, text, 'outside DuckDB DATE range');
  return days;
}

function timestampMicros(column: string, type: DuckType, text: string, zoned: boolean): bigint {
  const { DuckDBTimestampTZValue, DuckDBTimestampValue } = duckdb();
  const Kind = zoned ? DuckDBTimestampTZValue : DuckDBTimestampValue;
  if (text === 'infinity') return Kind.PosInf.micros;
  if (text === '-infinity') return Kind.NegInf.micros;
  const m = TS_RE.exec(text);
  if (!m || (m[8] !== undefined) !== zoned) throw new ValueRefused(column, type, text, 'not an ISO timestamp; set DateStyle = ISO for the source');
  const year = m[9] ? 1 - Number(m[1]) : Number(m[1]);
  const days = BigInt(daysFromCivil(year, Number(m[2]), Number(m[3])));
  const secs = BigInt(Number(m[4]) * 3600 + Number(m[5]) * 60 + Number(m[6]));
  let micros = (days * 86400n + secs) * 1_000_000n + BigInt((m[7] ?? '').padEnd(6, '0'));
  if (m[8]) {
    const sign = m[8][0] === '-' ? -1n : 1n;
    const digits = m[8].slice(1).replace(/:/g, '');
    const offset = BigInt(Number(digits.slice(0, 2)) * 3600 + Number(digits.slice(2, 4) || '0') * 60 + Number(digits.slice(4, 6) || '0'));
    micros -= sign * offset * 1_000_000n;
  }
  if (micros > Kind.Max.micros || micros < Kind.Min.micros) {
    throw new ValueRefused(column, type, text, 'outside DuckDB TIMESTAMP range, 290309-12-22 BC to 294247-01-10');
  }
  return micros;
}

const INT32_MAX = 2147483647;

/** PostgreSQL's interval (IntervalStyle postgres) as DuckDB's three fields, which are PostgreSQL's own. */
export function intervalParts(column: string, type: DuckType, text: string): { months: number; days: number; micros: bigint } {
  let months = 0;
  let days = 0;
  let micros = 0n;
  let rest = text.trim();
  const unit = /^([+-]?\d+) (years?|mons?|days?)\s*/;
  for (let m = unit.exec(rest); m; m = unit.exec(rest)) {
    const n = Number(m[1]);
    if (m[2].startsWith('year')) months += n * 12;
    else if (m[2].startsWith('mon')) months += n;
    else days += n;
    rest = rest.slice(m[0].length);
  }
  if (rest !== '') {
    const t = /^([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/.exec(rest);
    if (!t) throw new ValueRefused(column, type, text, 'not an interval in IntervalStyle postgres; set IntervalStyle = postgres for the source');
    const abs = (BigInt(t[2]) * 3600n + BigInt(Number(t[3]) * 60 + Number(t[4]))) * 1_000_000n + BigInt((t[5] ?? '').padEnd(6, '0'));
    micros = t[1] === '-' ? -abs : abs;
  }
  if (Math.abs(months) > INT32_MAX || Math.abs(days) > INT32_MAX) throw new ValueRefused(column, type, text, 'months or days outside 32 bits');
  return { months, days, micros };
}
