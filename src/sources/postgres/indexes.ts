/**
 * The secondary indexes of a source table (every index but the primary key's), as the source
 * defines them: `pg_get_indexdef` text and what kind of index it is. Pure catalog reads.
 */
import type pg from 'pg';
import type { TableName } from '../../core/types.js';
import { qualified } from '../../core/quote.js';
import type { SourceIndex } from '../../core/columns.js';

export type { SourceIndex } from '../../core/columns.js';

export async function sourceIndexes(src: pg.ClientBase, table: TableName): Promise<SourceIndex[]> {
  const r = await src.query(
    `SELECT ci.relname AS name, pg_get_indexdef(i.indexrelid) AS def, i.indisunique AS unique,
            i.indpred IS NOT NULL AS partial, i.indexprs IS NOT NULL AS expression, am.amname AS method,
            i.indisvalid AND i.indisready AS valid, con.conname AS constraint,
            'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || quote_ident(ci.relname) ||
              ' ON ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' ' AS prefix
       FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = ci.relam
       LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
      WHERE i.indrelid = $1::regclass AND NOT i.indisprimary
      ORDER BY ci.relname`,
    [qualified(table)],
  );
  return r.rows.map((x) => {
    const def = x.def as string;
    const prefix = x.prefix as string;
    // pg_get_indexdef qualifies the table and quotes as quote_ident does; anything else leaves the body empty.
    const body = def.startsWith(prefix) ? def.slice(prefix.length) : '';
    return {
      name: x.name,
      definition: def,
      body,
      unique: x.unique,
      partial: x.partial,
      expression: x.expression,
      method: x.method,
      constraint: x.constraint ?? null,
      valid: x.valid,
    };
  });
}
