/**
 * The online swap (contract 6): what a live destination table carries that its staging
 * replacement must carry too, what cannot be carried (refused before a backfill starts), and the
 * statements of the swap itself.
 *
 * The swap is one destination transaction: lock the live table (short lock_timeout, so it never
 * queues long behind a reader), capture its grants, owner, comments, policies, triggers and
 * dependent views, rename live → archive and staging → live (indexes too, so their names stay),
 * then re-apply what was captured to the new live table by NAME: views are re-created with their
 * own definition text, which now resolves to the new table; last, the archive moves into the archive
 * schema (destinations/postgres/archives.ts). Readers see the old table or the new one, never neither.
 */
import type pg from 'pg';
import { TableName } from '../../core/types.js';
import { qualified, quoteIdent, quoteLiteral } from './dialect.js';
import { addForeignKeySql, dropForeignKeySql, type ForeignKey } from './foreign-keys.js';

export const STAGING_SUFFIX = '__sluice_staging';

/** `<table>__sluice_staging`, shortened to PostgreSQL's 63-byte identifier limit. */
export function stagingName(live: TableName): TableName {
  return { schema: live.schema, name: withSuffix(live.name, STAGING_SUFFIX) };
}

/**
 * Where the swap puts the replaced table: `<archiveSchema>.<schema>_<table>__<run>`, cut to 63 bytes
 * (the run id is unique in the destination, so the name is too). Archives written by an older sluice
 * stand at `<schema>.<table>__sluice_archive_<run>`; everything that handles archives goes by the
 * name recorded in `_sluice.archives`, so both kinds work.
 */
export function archiveName(live: TableName, runId: number, archiveSchema: string): TableName {
  return { schema: archiveSchema, name: withSuffix(`${live.schema}_${live.name}`, `__${runId}`) };
}

/** Appends a suffix, cutting the base so the whole stays within 63 bytes. */
export function withSuffix(base: string, suffix: string): string {
  let b = base;
  while (Buffer.byteLength(b + suffix) > 63) b = b.slice(0, -1);
  return b + suffix;
}

export interface CarriedView {
  readonly name: TableName;
  readonly definition: string;
  readonly options: readonly string[];
}

export interface CarriedIndex {
  readonly name: string;
  readonly definition: string;
  readonly isPrimary: boolean;
}

/** What the live table carries that the swap re-applies to the new live table. */
export interface Carried {
  readonly owner: string;
  /** GRANT statements (table and column level) for the table by its live name. */
  readonly grants: readonly string[];
  readonly comments: readonly string[];
  readonly rowSecurity: { readonly enabled: boolean; readonly forced: boolean };
  readonly policies: readonly string[];
  readonly triggers: readonly string[];
  readonly views: readonly CarriedView[];
  readonly ownedSequences: readonly string[];
  readonly indexes: readonly CarriedIndex[];
  /**
   * Foreign keys from and to the live table (self-references too): dropped from the old table and
   * from the tables that reference it, added again NOT VALID against the new one, by name.
   */
  readonly foreignKeys: readonly ForeignKey[];
}

/**
 * Objects that depend on the live table by identity and cannot follow it to a new table. An online
 * backfill refuses to start while any exists; the message lists them.
 */
export async function uncarriable(client: pg.ClientBase, live: TableName): Promise<string[]> {
  const oid = (await client.query(`SELECT $1::regclass::oid AS oid, (SELECT relkind FROM pg_class WHERE oid = $1::regclass) AS kind`, [qualified(live)])).rows[0];
  const out: string[] = [];
  if (oid.kind === 'p') out.push('it is a partitioned table');
  const q = await client.query(
    `SELECT 'materialized view ' || v.oid::regclass::text AS what FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
       JOIN pg_class v ON v.oid = r.ev_class WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1 AND v.relkind = 'm'
     UNION ALL
     SELECT 'rule ' || r.rulename FROM pg_rewrite r WHERE r.ev_class = $1
     UNION ALL
     SELECT 'function ' || p.oid::regprocedure::text FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
       WHERE d.classid = 'pg_proc'::regclass AND d.refobjid = $1
     UNION ALL
     SELECT 'inheritance (' || i.inhrelid::regclass::text || ' inherits ' || i.inhparent::regclass::text || ')' FROM pg_inherits i
       WHERE i.inhrelid = $1 OR i.inhparent = $1
     UNION ALL
     SELECT 'publication ' || p.pubname FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE pr.prrelid = $1
     UNION ALL
     SELECT 'column ' || a.attrelid::regclass::text || '.' || a.attname || ' of the table''s row type'
       FROM pg_attribute a WHERE a.atttypid = (SELECT reltype FROM pg_class WHERE oid = $1) AND NOT a.attisdropped`,
    [oid.oid],
  );
  for (const r of q.rows) out.push(r.what as string);
  return out;
}

/**
 * Captures what the live table carries (called inside the swap transaction, under its lock).
 *
 * One round trip: the catalog queries go as one multi-statement simple query (the table by its
 * regclass literal, so no parameters), since every round trip under the lock adds to how long
 * readers of the table wait, and most of that time is latency, not work.
 */
export async function captureCarried(client: pg.ClientBase, live: TableName): Promise<Carried> {
  const t = qualified(live);
  const oid = `${quoteLiteral(t)}::regclass`;
  const results = (await client.query(
    [
      `SELECT pg_get_userbyid(c.relowner) AS owner, c.relrowsecurity AS rls, c.relforcerowsecurity AS force,
              obj_description(c.oid, 'pg_class') AS comment, c.relacl IS NOT NULL AS has_acl
         FROM pg_class c WHERE c.oid = ${oid}`,
      `SELECT a.privilege_type AS priv, a.is_grantable AS grantable,
              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee
         FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = ${oid} AND c.relacl IS NOT NULL`,
      `SELECT at.attname AS col, a.privilege_type AS priv, a.is_grantable AS grantable,
              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee
         FROM pg_attribute at, aclexplode(at.attacl) a WHERE at.attrelid = ${oid} AND at.attacl IS NOT NULL AND NOT at.attisdropped`,
      `SELECT attname, col_description(attrelid, attnum) AS c FROM pg_attribute WHERE attrelid = ${oid} AND attnum > 0 AND NOT attisdropped`,
      `SELECT polname, polpermissive, polcmd, pg_get_expr(polqual, polrelid) AS qual, pg_get_expr(polwithcheck, polrelid) AS chk,
              ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END FROM unnest(polroles) r) AS roles
         FROM pg_policy WHERE polrelid = ${oid} ORDER BY polname`,
      `SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = ${oid} AND NOT tgisinternal ORDER BY tgname`,
      `SELECT DISTINCT n.nspname AS schema, v.relname AS name, pg_get_viewdef(v.oid) AS def, coalesce(v.reloptions, '{}') AS options
         FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
         JOIN pg_namespace n ON n.oid = v.relnamespace
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = ${oid}
          AND v.oid <> ${oid} AND v.relkind = 'v'
        ORDER BY 1, 2`,
      `SELECT d.objid::regclass::text AS seq, a.attname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.refobjid = ${oid} AND d.deptype = 'a'`,
      indexesSql(oid),
      `SELECT c.conname, n.nspname AS schema, t.relname AS name, rn.nspname AS rschema, rt.relname AS rname,
              pg_get_constraintdef(c.oid) AS def, c.convalidated
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
         JOIN pg_class rt ON rt.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = rt.relnamespace
        WHERE c.contype = 'f' AND (c.conrelid = ${oid} OR c.confrelid = ${oid})
        ORDER BY n.nspname, t.relname, c.conname`,
    ].join(';\n'),
  )) as unknown as pg.QueryResult[];
  const [relQ, acl, colAcl, colComments, pol, trg, views, seqs, idx, fks] = results;
  const rel = relQ.rows[0];

  const grants: string[] = [];
  if (rel.has_acl) {
    // Reproduce the ACL exactly: start from nothing, then grant what the live table had.
    grants.push(`REVOKE ALL ON ${t} FROM PUBLIC`, `REVOKE ALL ON ${t} FROM ${quoteIdent(rel.owner)}`);
    for (const a of acl.rows) grants.push(`GRANT ${a.priv} ON ${t} TO ${a.grantee}${a.grantable ? ' WITH GRANT OPTION' : ''}`);
  }
  for (const a of colAcl.rows) grants.push(`GRANT ${a.priv} (${quoteIdent(a.col)}) ON ${t} TO ${a.grantee}${a.grantable ? ' WITH GRANT OPTION' : ''}`);

  const comments: string[] = [`COMMENT ON TABLE ${t} IS ${rel.comment === null ? 'NULL' : quoteLiteral(rel.comment)}`];
  for (const c of colComments.rows) {
    comments.push(`COMMENT ON COLUMN ${t}.${quoteIdent(c.attname)} IS ${c.c === null ? 'NULL' : quoteLiteral(c.c)}`);
  }

  const CMD: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' };
  const policies = pol.rows.map(
    (p) =>
      `CREATE POLICY ${quoteIdent(p.polname)} ON ${t} AS ${p.polpermissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${CMD[p.polcmd]}` +
      ` TO ${(p.roles as string[]).join(', ')}${p.qual ? ` USING (${p.qual})` : ''}${p.chk ? ` WITH CHECK (${p.chk})` : ''}`,
  );

  return {
    owner: rel.owner,
    grants,
    comments,
    rowSecurity: { enabled: rel.rls, forced: rel.force },
    policies,
    triggers: trg.rows.map((r) => r.def as string),
    views: views.rows.map((v) => ({ name: { schema: v.schema, name: v.name }, definition: v.def, options: v.options })),
    ownedSequences: seqs.rows.map((s) => `ALTER SEQUENCE ${s.seq} OWNED BY ${t}.${quoteIdent(s.attname)}`),
    indexes: toIndexes(idx),
    foreignKeys: fks.rows.map((x) => ({
      name: x.conname as string,
      table: { schema: x.schema as string, name: x.name as string },
      references: { schema: x.rschema as string, name: x.rname as string },
      definition: (x.def as string).replace(/\s+NOT VALID\s*$/, ''),
      validated: x.convalidated as boolean,
    })),
  };
}

/** The indexes of the table `rel` (an SQL expression of type regclass), by name. */
function indexesSql(rel: string): string {
  return `SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def, i.indisprimary AS pk
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = ${rel} ORDER BY c.relname`;
}

function toIndexes(r: pg.QueryResult): CarriedIndex[] {
  return r.rows.map((x) => ({ name: x.name, definition: x.def, isPrimary: x.pk }));
}

export async function tableIndexes(client: pg.ClientBase, table: TableName): Promise<CarriedIndex[]> {
  return toIndexes(await client.query(indexesSql('$1::regclass'), [qualified(table)]));
}

/**
 * The staging index for a live index: same definition, on the staging table, under a name of its
 * own (`<index>__sluice_s`); the swap gives it the live index's name.
 */
export function stagingIndexSql(index: CarriedIndex, live: TableName, staging: TableName): string {
  const stagingIdx = withSuffix(index.name, '__sluice_s');
  const on = new RegExp(` ON (ONLY )?${escapeRegExp(qualifiedForIndexdef(live))} `);
  if (!on.test(index.definition)) throw new Error(`cannot place index ${index.name} on the staging table: ${index.definition}`);
  return index.definition
    .replace(/^CREATE (UNIQUE )?INDEX \S+ ON /, (_m, u: string | undefined) => `CREATE ${u ?? ''}INDEX ${quoteIdent(stagingIdx)} ON `)
    .replace(on, ` ON ${qualified(staging)} `);
}

/** pg_get_indexdef prints names quoted only where needed; match that form. */
function qualifiedForIndexdef(t: TableName): string {
  const q = (s: string) => (/^[a-z_][a-z0-9_$]*$/.test(s) ? s : quoteIdent(s));
  return `${q(t.schema)}.${q(t.name)}`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The swap's statements after the lock, in order: renames, then everything carried, re-applied by
 * the live name (which now means the new table).
 */
export function swapSql(live: TableName, staging: TableName, archive: TableName, carried: Carried, runId: number): string[] {
  const out: string[] = [];
  // Foreign keys go first, while the live name still means the old table: the archive keeps none,
  // and none points at it, so dropping it later never cascades.
  for (const fk of carried.foreignKeys) out.push(dropForeignKeySql(fk.table, fk));
  // Renamed in place first (its name and its indexes' names leave the live schema free for the new
  // table), moved to the archive schema last.
  out.push(`ALTER TABLE ${qualified(live)} RENAME TO ${quoteIdent(archive.name)}`);
  for (const idx of carried.indexes) {
    out.push(`ALTER INDEX ${quoteIdent(live.schema)}.${quoteIdent(idx.name)} RENAME TO ${quoteIdent(withSuffix(idx.name, `__sluice_a${runId}`))}`);
  }
  out.push(`ALTER TABLE ${qualified(staging)} RENAME TO ${quoteIdent(live.name)}`);
  for (const idx of carried.indexes) {
    out.push(`ALTER INDEX ${quoteIdent(live.schema)}.${quoteIdent(withSuffix(idx.name, '__sluice_s'))} RENAME TO ${quoteIdent(idx.name)}`);
  }
  out.push(`ALTER TABLE ${qualified(live)} OWNER TO ${quoteIdent(carried.owner)}`);
  out.push(...carried.grants, ...carried.comments);
  if (carried.rowSecurity.enabled) out.push(`ALTER TABLE ${qualified(live)} ENABLE ROW LEVEL SECURITY`);
  if (carried.rowSecurity.forced) out.push(`ALTER TABLE ${qualified(live)} FORCE ROW LEVEL SECURITY`);
  out.push(...carried.policies, ...carried.triggers, ...carried.ownedSequences);
  for (const v of carried.views) {
    const opts = v.options.length ? ` WITH (${v.options.join(', ')})` : '';
    out.push(`CREATE OR REPLACE VIEW ${qualified(v.name)}${opts} AS ${v.definition.replace(/;\s*$/, '')}`);
  }
  // Added back by name against the new live table, NOT VALID (no scan under the lock); the swapper
  // validates those that were valid once the swap has committed.
  for (const fk of carried.foreignKeys) out.push(addForeignKeySql(fk));
  // Last: by now the sequences the old table owned (serial columns) are owned by the new live table,
  // so they stay in the live schema (SET SCHEMA moves a table's owned sequences with it) and the
  // archive's drop never drops them; its indexes, constraints, triggers and policies go with it,
  // and so does an identity column's sequence, which only the archive uses.
  if (archive.schema !== live.schema) {
    out.push(`ALTER TABLE ${quoteIdent(live.schema)}.${quoteIdent(archive.name)} SET SCHEMA ${quoteIdent(archive.schema)}`);
  }
  return out;
}

/**
 * An online backfill of a table that exists in the destination but is empty and was never
 * replicated (no cursor of `name` in `pipeline`: a schema created first, by `pg_dump -s` or
 * migrations) needs no swap, since readers have nothing to lose: it loads in place, like a first load.
 */
export async function firstLoadInPlace(client: pg.ClientBase, pipeline: string, name: string, live: TableName): Promise<boolean> {
  const t = qualified(live);
  const r = await client.query(`SELECT to_regclass($1) IS NOT NULL AS ok, to_regclass('_sluice.cursors') IS NOT NULL AS state`, [t]);
  if (!r.rows[0].ok) return false;
  if (r.rows[0].state) {
    const c = await client.query(`SELECT 1 FROM _sluice.cursors WHERE pipeline = $1 AND name = $2 AND target = $3`, [pipeline, name, TableName.format(live)]);
    if (c.rowCount) return false;
  }
  return !(await client.query(`SELECT EXISTS (SELECT 1 FROM ${t}) AS any`)).rows[0].any;
}
