/**
 * A DuckDB table's columns read back from the file's catalog as the writer's DuckColumns, so that a
 * chunk writer or an apply session needs nothing from the process that created the table: after a
 * crash and a resume, the file alone says how each column takes its values.
 *
 * The DuckDB type says it, except for money: its DECIMAL(19,2) takes `$1,234.56`, so a money column
 * carries the comment MONEY_COMMENT (dialect.ts, columnCommentsSql).
 */
import type { TableName } from '../../core/types.js';
import type { DuckDbFile } from './connection.js';
import { MONEY_COMMENT } from './dialect.js';
import type { DuckColumn, DuckType } from './types.js';

/** How values of a DuckDB column type (duckdb_columns().data_type) are appended. */
export function duckTypeOfColumn(dataType: string, comment: string | null): DuckType {
  const decimal = /^DECIMAL\((\d+),(\d+)\)$/.exec(dataType);
  if (decimal) {
    if (comment === MONEY_COMMENT) return { sql: dataType, kind: 'money' };
    return { sql: dataType, kind: 'decimal', precision: Number(decimal[1]), scale: Number(decimal[2]) };
  }
  switch (dataType) {
    case 'VARCHAR':
    case 'JSON':
      return { sql: dataType, kind: 'text' };
    case 'BLOB':
      return { sql: dataType, kind: 'bytea' };
    case 'DATE':
      return { sql: dataType, kind: 'date' };
    case 'TIMESTAMP':
      return { sql: dataType, kind: 'timestamp' };
    case 'TIMESTAMP WITH TIME ZONE':
      return { sql: 'TIMESTAMPTZ', kind: 'timestamptz' };
    case 'INTERVAL':
      return { sql: dataType, kind: 'interval' };
    default:
      // Integers, floats, BOOLEAN, UUID, BIT, TIME, TIMETZ, ENUM(...): DuckDB's cast of the text is exact.
      return { sql: dataType, kind: 'cast' };
  }
}

/** The columns of `table` in their order (sluice's own `_sluice_*` columns left out); null when there is no such table. */
export async function tableColumns(file: DuckDbFile, table: TableName): Promise<DuckColumn[] | null> {
  const r = await file.all(
    `SELECT column_name, data_type, comment, is_nullable FROM duckdb_columns() WHERE database_name = current_database() AND schema_name = $1 AND table_name = $2 ORDER BY column_index`,
    [table.schema, table.name],
  );
  if (r.length === 0) return null;
  return r
    .filter((c) => !String(c.column_name).startsWith('_sluice_'))
    .map((c) => ({ name: c.column_name as string, type: duckTypeOfColumn(c.data_type as string, (c.comment as string | null) ?? null), notNull: c.is_nullable === false }));
}
