/**
 * Foreign keys in the destination between the tables sluice replicates (docs/architecture.md,
 * "Foreign keys in the destination").
 *
 * - Order across tables: sluice applies each table in its own transactions, so a child row may
 *   arrive before its parent. Its sessions run with `session_replication_role = replica`, as
 *   PostgreSQL's own logical replication workers do: foreign-key triggers do not fire for its writes
 *   (the source already checked them), and the keys hold again once every table has caught up.
 * - A table replaced by a swap or a `--mode drop` reload takes its foreign keys along: each is
 *   dropped and added again by the same name and definition, `NOT VALID` (no scan under the lock),
 *   then validated after the commit (SHARE UPDATE EXCLUSIVE only) when it was valid before.
 */
import type pg from 'pg';
import type { ForeignKey } from '../../core/columns.js';
import { SluiceError } from '../../core/errors.js';
import { TableName } from '../../core/types.js';
import { qualified, quoteIdent } from './dialect.js';

export type { ForeignKey };

/**
 * Sets `session_replication_role = replica` on a sluice session. False when the role may not (it
 * needs superuser, or on PostgreSQL 15+ `GRANT SET ON PARAMETER session_replication_role`).
 */
export async function setReplicaRole(client: pg.ClientBase): Promise<boolean> {
  try {
    await client.query(`SET session_replication_role = replica`);
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === '42501') return false;
    throw err;
  }
}

/** What to run so that sluice's role can apply in any order across tables. */
export function replicaRoleGrant(user: string): string {
  const who = user.startsWith('<') ? user : quoteIdent(user);
  return `GRANT SET ON PARAMETER session_replication_role TO ${who} (PostgreSQL 15+; older versions: make the role a superuser)`;
}

/** A foreign-key violation on a session that could not take the replica role: name the grant. */
export function withGrantHint(err: SluiceError, replicaRole: boolean): SluiceError {
  if (replicaRole || (err.context.sqlstate as string | undefined) !== '23503') return err;
  return new SluiceError(
    err.code,
    `${err.message}; sluice writes each table in its own transactions, so a row may arrive before the row it references: ` +
      `let sluice's destination role skip foreign-key checks with ${replicaRoleGrant('<role>')}`,
    { cause: err, retryable: err.retryable, context: err.context },
  );
}

/** Whether foreign keys of other tables reference `table` (then it cannot be TRUNCATEd alone). */
export async function isReferenced(client: pg.ClientBase, table: TableName): Promise<boolean> {
  const r = await client.query(
    `SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' AND confrelid = $1::regclass AND conrelid <> confrelid) AS r`,
    [qualified(table)],
  );
  return r.rows[0].r as boolean;
}

/** Every foreign key from or to `table` (a self-reference once), by the table that has it, then name. */
export async function foreignKeysOf(client: pg.ClientBase, table: TableName): Promise<ForeignKey[]> {
  const r = await client.query(
    `SELECT c.conname, n.nspname AS schema, t.relname AS name, rn.nspname AS rschema, rt.relname AS rname,
            pg_get_constraintdef(c.oid) AS def, c.convalidated
       FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
       JOIN pg_class rt ON rt.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = rt.relnamespace
      WHERE c.contype = 'f' AND (c.conrelid = to_regclass($1) OR c.confrelid = to_regclass($1))
      ORDER BY n.nspname, t.relname, c.conname`,
    [qualified(table)],
  );
  return r.rows.map((x) => ({
    name: x.conname as string,
    table: { schema: x.schema as string, name: x.name as string },
    references: { schema: x.rschema as string, name: x.rname as string },
    definition: (x.def as string).replace(/\s+NOT VALID\s*$/, ''),
    validated: x.convalidated as boolean,
  }));
}

export function dropForeignKeySql(table: TableName, fk: ForeignKey): string {
  return `ALTER TABLE ${qualified(table)} DROP CONSTRAINT ${quoteIdent(fk.name)}`;
}

export function addForeignKeySql(fk: ForeignKey): string {
  return `ALTER TABLE ${qualified(fk.table)} ADD CONSTRAINT ${quoteIdent(fk.name)} ${fk.definition} NOT VALID`;
}

export function validateForeignKeySql(fk: ForeignKey): string {
  return `ALTER TABLE ${qualified(fk.table)} VALIDATE CONSTRAINT ${quoteIdent(fk.name)}`;
}

/** The keys of other tables that reference `table` (a drop of `table` takes them with it). */
export function inbound(table: TableName, fks: readonly ForeignKey[]): ForeignKey[] {
  const t = TableName.format(table);
  return fks.filter((f) => TableName.format(f.table) !== t);
}

/**
 * What `DROP TABLE … CASCADE` of `table` would take from other objects: foreign keys of other
 * tables, views and materialized views. Empty when it does not exist.
 */
export async function dropDependents(client: pg.ClientBase, table: TableName): Promise<string[]> {
  const r = await client.query(
    `SELECT 'foreign key ' || c.conname || ' on ' || c.conrelid::regclass::text AS what
       FROM pg_constraint c WHERE c.contype = 'f' AND c.confrelid = to_regclass($1) AND c.conrelid <> c.confrelid
     UNION ALL
     SELECT * FROM (SELECT DISTINCT CASE v.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END || v.oid::regclass::text
       FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
      WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = to_regclass($1)
        AND v.oid <> d.refobjid) x`,
    [qualified(table)],
  );
  return r.rows.map((x) => x.what as string);
}

/** Why `--mode drop` is refused without `--cascade`. */
export function dropRefusal(table: TableName, dependents: readonly string[]): string {
  return (
    `--mode drop of destination ${TableName.format(table)} would also drop ${dependents.join('; ')}. ` +
    `Add --cascade to drop and recreate the table anyway (foreign keys are added back NOT VALID and validated after the load; ` +
    `views are created again from their definitions, materialized views are not), or use --mode online, --mode upsert or --mode truncate, which keep them`
  );
}
