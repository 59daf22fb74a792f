/**
 * MariaDB column types mapped to PostgreSQL (docs/configuration.md, "MariaDB types"), and decoded
 * binlog values (row-values.ts) turned into the PostgreSQL text form of the mapped type, which is how
 * the change log carries values. Lossless except where a rule is documented: zero dates (and dates
 * with a zero month or day) become NULL, since PostgreSQL has no such date. No I/O.
 */
import type { RowValue } from './row-values.js';

/** The PostgreSQL type for a MariaDB COLUMN_TYPE (information_schema spelling, e.g. `int(10) unsigned`). */
export function postgresType(columnType: string): string {
  const t = columnType.toLowerCase().trim();
  const unsigned = /\bunsigned\b/.test(t);
  const base = /^[a-z0-9]+/.exec(t)?.[0] ?? t;
  const args = /\(([^)]*)\)/.exec(t)?.[1];
  switch (base) {
    case 'tinyint':
      return 'smallint';
    case 'smallint':
      return unsigned ? 'integer' : 'smallint';
    case 'mediumint':
      return 'integer';
    case 'int':
    case 'integer':
      return unsigned ? 'bigint' : 'integer';
    case 'bigint':
      return unsigned ? 'numeric(20,0)' : 'bigint';
    case 'decimal':
    case 'numeric':
      return args ? `numeric(${args.replace(/\s/g, '')})` : 'numeric(10,0)';
    case 'float':
      return 'real';
    case 'double':
    case 'real':
      return 'double precision';
    case 'char':
    case 'varchar':
      return args ? `varchar(${args})` : 'text';
    case 'tinytext':
    case 'text':
    case 'mediumtext':
    case 'longtext':
    case 'enum':
    case 'set':
      return 'text';
    case 'json':
      return 'json';
    case 'binary':
    case 'varbinary':
    case 'tinyblob':
    case 'blob':
    case 'mediumblob':
    case 'longblob':
    case 'geometry':
    case 'point':
    case 'linestring':
    case 'polygon':
    case 'multipoint':
    case 'multilinestring':
    case 'multipolygon':
    case 'geometrycollection':
      return 'bytea';
    case 'date':
      return 'date';
    case 'datetime':
      return args ? `timestamp(${args})` : 'timestamp(0)';
    case 'timestamp':
      return args ? `timestamptz(${args})` : 'timestamptz(0)';
    case 'time':
      return 'interval';
    case 'year':
      return 'smallint';
    case 'bit':
      return `bit(${args ?? '1'})`;
    case 'uuid':
      return 'uuid';
    case 'inet4':
    case 'inet6':
      return 'inet';
    default:
      throw new Error(`no PostgreSQL type for the MariaDB type ${columnType}`);
  }
}

function hex(b: Buffer): string {
  return `\\x${b.toString('hex')}`;
}

function uuidText(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function inet6Text(b: Buffer): string {
  // PostgreSQL reads any valid IPv6 text; the full form is enough
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

const ZERO_DATE = /^0000-00-00|^\d{4}-00-|^\d{4}-\d{2}-00/;

/**
 * The PostgreSQL text of a decoded binlog value of a column of MariaDB type `columnType`; null for
 * NULL and for zero dates.
 */
export function postgresText(value: RowValue, columnType: string): string | null {
  if (value === null) return null;
  const base = /^[a-z0-9]+/.exec(columnType.toLowerCase())?.[0] ?? '';
  if (Buffer.isBuffer(value)) {
    if (base === 'uuid') return uuidText(value);
    if (base === 'inet6') return inet6Text(value);
    if (base === 'inet4') return [...value].join('.');
    if (base === 'json' || /text$|char$/.test(base)) return value.toString('utf8');
    return hex(value);
  }
  if (typeof value === 'bigint' || typeof value === 'number') {
    if (typeof value === 'number' && !Number.isFinite(value)) return Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity';
    return String(value);
  }
  switch (base) {
    case 'date':
    case 'datetime':
    case 'timestamp':
      if (ZERO_DATE.test(value)) return null;
      return base === 'timestamp' ? `${value}+00` : value;
    case 'time':
      // [-]HHH:MM:SS[.ffffff] is a valid interval literal
      return value;
    default:
      return value;
  }
}
