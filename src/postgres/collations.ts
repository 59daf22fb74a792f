/**
 * Reading collations from a PostgreSQL catalog: what the PostgreSQL source (column collations),
 * the PostgreSQL destination (collations it offers) and the verifier (both sides) share.
 */
import type pg from 'pg';
import type { CollationInfo } from '../core/columns.js';

/** The provider and locale of a pg_collation or pg_database row read as JSON (columns differ by version). */
function effective(j: Record<string, unknown>, prefix: 'coll' | 'dat'): { provider: string; locale: string } {
  const provider = String(j[prefix === 'coll' ? 'collprovider' : 'datlocprovider'] ?? 'c');
  const libc = String(j[`${prefix}collate`] ?? '');
  const other = (j[`${prefix}locale`] ?? j[prefix === 'coll' ? 'colliculocale' : 'daticulocale'] ?? j[`${prefix}collate`]) as string | null;
  return { provider, locale: provider === 'c' ? libc : String(other ?? '') };
}

/** A pg_collation row (as `to_jsonb(c)`), not the database default. */
export function collationFromRow(schema: string, name: string, j: Record<string, unknown>): CollationInfo {
  return { schema, name, ...effective(j, 'coll'), deterministic: j.collisdeterministic !== false, isDefault: false };
}

/** The database default collation of the connected database. */
export async function databaseCollation(client: pg.ClientBase): Promise<CollationInfo> {
  const r = await client.query(`SELECT to_jsonb(d) AS j FROM pg_database d WHERE d.datname = current_database()`);
  return { schema: 'pg_catalog', name: 'default', ...effective(r.rows[0].j, 'dat'), deterministic: true, isDefault: true };
}

/** The collation of each collatable column of a relation, by column name. */
export async function readCollations(client: pg.ClientBase, relation: number | string): Promise<Map<string, CollationInfo>> {
  const r = await client.query(
    `SELECT a.attname AS name, n.nspname AS schema, c.collname, to_jsonb(c) AS j
       FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation JOIN pg_namespace n ON n.oid = c.collnamespace
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
    [typeof relation === 'number' ? String(relation) : relation],
  );
  const out = new Map<string, CollationInfo>();
  let db: CollationInfo | undefined;
  for (const row of r.rows) {
    const j = row.j as Record<string, unknown>;
    if (j.collprovider === 'd') {
      db ??= await databaseCollation(client);
      out.set(row.name, db);
    } else {
      out.set(row.name, collationFromRow(row.schema, row.collname, j));
    }
  }
  return out;
}
