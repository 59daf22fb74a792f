/**
 * Standard SQL quoting of names and text literals: identifiers in double quotes, literals in single
 * quotes, each doubled inside. PostgreSQL and DuckDB both read them this way, so drivers share these
 * instead of importing one another's dialect. Pure text; no I/O.
 */
import type { TableName } from './types.js';

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A SQL string literal (for PostgreSQL: standard_conforming_strings = on, the default since 9.1). */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('a NUL byte cannot appear in a PostgreSQL text value');
  return `'${value.replace(/'/g, "''")}'`;
}

export function qualified(t: TableName): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

export function columnList(names: readonly string[]): string {
  return names.map(quoteIdent).join(', ');
}
