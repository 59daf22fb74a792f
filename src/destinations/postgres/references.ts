/**
 * Foreign keys in the destination that point at a table sluice reloads. PostgreSQL refuses to
 * TRUNCATE a table that other tables reference (unless they are truncated in the same statement),
 * so an unscoped `--mode truncate` of such a table is refused before it is accepted, with the
 * constraints named and the ways through that work.
 */
import type pg from 'pg';
import { TableName } from '../../core/types.js';
import { qualified, quoteIdent } from './dialect.js';

export interface ReferencingKey {
  /** The constraint's name. */
  readonly constraint: string;
  /** The referencing table. */
  readonly table: TableName;
}

/** Foreign keys of other tables that reference `table` (none when it does not exist). A self-reference does not stop a TRUNCATE. */
export async function referencingKeys(client: pg.ClientBase, table: TableName): Promise<ReferencingKey[]> {
  const r = await client.query(
    `SELECT c.conname AS constraint, n.nspname AS schema, t.relname AS name
       FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE c.contype = 'f' AND c.confrelid = to_regclass($1) AND c.conrelid <> c.confrelid
      ORDER BY n.nspname, t.relname, c.conname`,
    [qualified(table)],
  );
  return r.rows.map((x) => ({ constraint: x.constraint as string, table: { schema: x.schema as string, name: x.name as string } }));
}

/**
 * The foreign keys that stop a TRUNCATE of `table`: none when it is empty, since then there is
 * nothing to empty (the load skips the TRUNCATE), as on a first load into a schema created first.
 */
export async function truncateBlockers(client: pg.ClientBase, table: TableName): Promise<ReferencingKey[]> {
  const refs = await referencingKeys(client, table);
  if (refs.length === 0) return refs;
  const any = await client.query(`SELECT EXISTS (SELECT 1 FROM ${qualified(table)}) AS any`);
  return any.rows[0].any ? refs : [];
}

/** Why `--mode truncate` cannot reload `table`, and what works instead. */
export function truncateRefusal(table: TableName, refs: readonly ReferencingKey[]): string {
  const t = TableName.format(table);
  const named = refs.map((r) => `${r.constraint} on ${TableName.format(r.table)}`).join(', ');
  const drops = refs.map((r) => `ALTER TABLE ${qualified(r.table)} DROP CONSTRAINT ${quoteIdent(r.constraint)}`).join('; ');
  return (
    `--mode truncate cannot reload destination ${t}: foreign key${refs.length > 1 ? 's' : ''} ${named} reference${refs.length > 1 ? '' : 's'} it, ` +
    `and PostgreSQL cannot TRUNCATE a referenced table. Use --mode online (the default: the swap re-points the foreign keys to the new table), ` +
    `--mode upsert (loads over the existing rows and keeps the foreign keys; rows deleted at the source before the run stay), or drop the constraint${refs.length > 1 ? 's' : ''} first (${drops}), ` +
    `reload, and add ${refs.length > 1 ? 'them' : 'it'} back`
  );
}

/**
 * The way through to name when an online backfill is refused (the swap carries foreign keys, not
 * what `uncarriable` lists): truncate works unless other tables reference the table (then upsert,
 * which keeps the foreign keys).
 */
export function onlineAlternative(referenced: boolean): string {
  return referenced
    ? 'remove them, or use --mode upsert (it keeps the foreign keys; --mode truncate cannot empty a referenced table)'
    : 'remove them, or use --mode truncate';
}
