/** What an in-place job reads from the catalog before it changes anything. */
import type pg from 'pg';
import { SluiceError } from '../core/errors.js';
import { TableName } from '../core/types.js';
import { qualifiedName, type JobTable } from './statements.js';

export interface TableFacts extends JobTable {
  oid: number;
  /** pg_class.reltuples (−1 or 0 when never analyzed: then a count is made). */
  rowsEstimated: number;
}

export async function readTable(c: pg.ClientBase, name: string): Promise<TableFacts> {
  const t = TableName.parse(name);
  const r = await c.query(
    `SELECT c.oid::int AS oid, c.reltuples::float8 AS reltuples, c.relkind::text AS relkind,
            (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod)) ORDER BY k.ord)
               FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a
              WHERE i.indrelid = c.oid AND i.indisprimary AND a.attrelid = c.oid AND a.attnum = k.attnum) AS key
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [t.schema, t.name],
  );
  const row = r.rows[0];
  if (!row) throw new SluiceError('TABLE_NOT_FOUND', `table ${TableName.format(t)} not found in the job's database (check table: and database:)`);
  if (row.relkind !== 'r' && row.relkind !== 'p') {
    throw new SluiceError('BAD_USAGE', `${TableName.format(t)} is not a table (relkind ${row.relkind}): in-place jobs change tables`);
  }
  if (!row.key) {
    throw new SluiceError(
      'NO_PRIMARY_KEY',
      `${TableName.format(t)} has no primary key: in-place jobs chunk by key ranges so that each row is changed exactly once; add a primary key`,
    );
  }
  let rowsEstimated = Number(row.reltuples);
  if (!(rowsEstimated > 0)) rowsEstimated = Number((await c.query(`SELECT count(*)::int8 AS n FROM ${qualifiedName(t)}`)).rows[0].n);
  return { schema: t.schema, name: t.name, key: row.key as JobTable['key'], oid: row.oid as number, rowsEstimated };
}

/** The database's identity, recorded with every run (pg_control_system's system_identifier). */
export async function systemIdentifier(c: pg.ClientBase): Promise<string> {
  const r = await c.query(`SELECT system_identifier::text AS id FROM pg_control_system()`);
  return r.rows[0].id as string;
}

