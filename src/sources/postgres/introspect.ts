/**
 * Catalog introspection of a PostgreSQL source table: columns and their types, primary key,
 * replica identity, size estimates, and the user-defined types (enums, domains) the destination
 * must create to carry the columns. Pure SQL against the catalog; no writes.
 */
import type pg from 'pg';
import { SluiceError } from '../../core/errors.js';
import { TableName } from '../../core/types.js';
import { quoteIdent } from '../../core/quote.js';
import type { ColumnInfo, TableInfo, TypeSupport, UserTypeDef } from '../../core/columns.js';
import { readCollations } from '../../postgres/collations.js';

// The descriptions live in core (shared with every destination); named here too, where they are read.
export type { CollationInfo, ColumnInfo, TableInfo, TypeSupport, UserTypeDef } from '../../core/columns.js';

interface TypeRow {
  oid: number;
  typtype: string;
  nspname: string;
  typname: string;
  typelem: number;
  typcategory: string;
  typbasetype: number;
  typtypmod: number;
  typnotnull: boolean;
  typdefault: string | null;
  sql: string;
}

export async function tableExists(client: pg.ClientBase, table: TableName): Promise<boolean> {
  const r = await client.query(
    `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [table.schema, table.name],
  );
  return r.rowCount! > 0;
}

export async function introspectTable(client: pg.ClientBase, table: TableName): Promise<TableInfo> {
  const rel = await client.query(
    `SELECT c.oid::int AS oid, c.relkind::text AS relkind, c.relreplident::text AS ident,
            c.reltuples::float8 AS reltuples, pg_total_relation_size(c.oid)::float8 AS bytes,
            coalesce(s.n_live_tup, 0)::float8 AS live
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
      WHERE n.nspname = $1 AND c.relname = $2`,
    [table.schema, table.name],
  );
  if (rel.rowCount === 0) {
    throw new SluiceError(
      'TABLE_NOT_FOUND',
      `source table ${TableName.format(table)} does not exist; check tables[].name (schema.table) and the database in source.url`,
      { context: { table: TableName.format(table) } },
    );
  }
  const { oid, relkind, ident, reltuples, bytes, live } = rel.rows[0];
  if (relkind !== 'r' && relkind !== 'p') {
    throw new SluiceError(
      'TABLE_NOT_FOUND',
      `source ${TableName.format(table)} is not a table (relkind ${relkind}); sluice replicates ordinary tables`,
    );
  }
  const cols = await client.query(
    `SELECT a.attnum::int AS attnum, a.attname AS name, a.atttypid::int AS typeoid,
            format_type(a.atttypid, a.atttypmod) AS typesql, a.attnotnull AS notnull,
            pg_get_expr(d.adbin, d.adrelid) AS defexpr, a.attgenerated::text AS generated
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [oid],
  );
  const pk = await client.query(
    `SELECT a.attname AS name
       FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord`,
    [oid],
  );

  const collations = await readCollations(client, oid);
  const resolver = new TypeResolver(client);
  const columns: ColumnInfo[] = [];
  for (const c of cols.rows) {
    const t = await resolver.resolve(c.typeoid, TableName.format(table), c.name);
    const generated = c.generated === 's';
    columns.push({
      name: c.name,
      attnum: c.attnum,
      typeOid: c.typeoid,
      // Built-in types keep their type modifiers (char(5), numeric(12,3), bit(8)); only user types need qualifying.
      typeSql: t.support === 'builtin' || t.sql === c.typesql ? c.typesql : qualifyTypeSql(c.typesql, t),
      notNull: c.notnull,
      defaultSql: generated ? null : c.defexpr,
      generatedSql: generated ? c.defexpr : null,
      support: t.support,
      binarySafe: t.binarySafe,
      collation: collations.get(c.name) ?? null,
    });
  }
  const copyColumns = columns.filter((c) => c.generatedSql === null);
  return {
    table,
    oid,
    relkind,
    columns,
    primaryKey: pk.rows.map((r) => r.name as string),
    replicaIdentity: ident as TableInfo['replicaIdentity'],
    rowsEstimated: Math.max(0, Math.round(reltuples >= 0 ? reltuples : live)),
    bytes,
    userTypes: resolver.userTypes(),
    copyColumns,
    binarySafe: copyColumns.every((c) => c.binarySafe),
  };
}

/** format_type() prints user types unqualified when their schema is on the search_path. */
function qualifyTypeSql(formatted: string, t: { sql: string }): string {
  return formatted.endsWith('[]') && !t.sql.endsWith('[]') ? `${t.sql}[]` : t.sql;
}

interface Resolved {
  support: TypeSupport;
  binarySafe: boolean;
  /** Qualified SQL name of the type (arrays as elem[]). */
  sql: string;
}

class TypeResolver {
  private readonly cache = new Map<number, Resolved>();
  private readonly defs: UserTypeDef[] = [];

  constructor(private readonly client: pg.ClientBase) {}

  userTypes(): UserTypeDef[] {
    return this.defs;
  }

  async resolve(oid: number, table: string, column: string): Promise<Resolved> {
    const hit = this.cache.get(oid);
    if (hit) return hit;
    const r = await this.client.query(
      `SELECT t.oid::int AS oid, t.typtype::text AS typtype, n.nspname, t.typname, t.typelem::int AS typelem,
              t.typcategory::text AS typcategory, t.typbasetype::int AS typbasetype, t.typtypmod,
              t.typnotnull, t.typdefault, format_type(t.oid, NULL) AS sql
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = $1`,
      [oid],
    );
    const t = r.rows[0] as TypeRow;
    const unsupported = (why: string) =>
      new SluiceError(
        'UNSUPPORTED_TYPE',
        `source ${table}.${column}: type ${t.sql} is not supported (${why}); exclude the table, or change the column to a supported type`,
        { context: { table, column, type: t.sql } },
      );
    const qualified = `${quoteIdent(t.nspname)}.${quoteIdent(t.typname)}`;
    let out: Resolved;
    if (t.typcategory === 'A' && t.typelem !== 0) {
      const elem = await this.resolve(t.typelem, table, column);
      out = { support: elem.support, binarySafe: elem.support === 'builtin' && elem.binarySafe, sql: `${elem.sql}[]` };
    } else if (t.typtype === 'e') {
      const labels = await this.client.query(`SELECT enumlabel FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder`, [oid]);
      this.defs.push({ kind: 'enum', schema: t.nspname, name: t.typname, labels: labels.rows.map((x) => x.enumlabel) });
      out = { support: 'user', binarySafe: true, sql: qualified };
    } else if (t.typtype === 'd') {
      const baseFormatted = await this.client.query(`SELECT format_type($1::oid, $2::int) AS sql`, [t.typbasetype, t.typtypmod]);
      const base = await this.resolve(t.typbasetype, table, column);
      const checks = await this.client.query(
        `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE contypid = $1 AND contype = 'c' ORDER BY conname`,
        [oid],
      );
      const baseSql = base.support === 'builtin' ? baseFormatted.rows[0].sql : base.sql;
      this.defs.push({
        kind: 'domain',
        schema: t.nspname,
        name: t.typname,
        baseSql,
        notNull: t.typnotnull,
        defaultSql: t.typdefault,
        checks: checks.rows.map((x) => x.def),
      });
      out = { support: 'user', binarySafe: base.binarySafe, sql: qualified };
    } else if (t.typtype === 'p') {
      throw unsupported('a pseudo-type');
    } else if (t.typtype === 'c') {
      throw unsupported('a composite type');
    } else if (t.nspname === 'pg_catalog') {
      out = { support: 'builtin', binarySafe: true, sql: t.sql };
    } else if (t.typtype === 'b' || t.typtype === 'r' || t.typtype === 'm') {
      out = { support: 'external', binarySafe: false, sql: qualified };
    } else {
      throw unsupported(`typtype ${t.typtype}`);
    }
    this.cache.set(oid, out);
    return out;
  }
}

