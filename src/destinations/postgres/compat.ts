/**
 * Whether a destination table that exists before sluice loads it (a schema created first) can take
 * the source's rows (docs/architecture.md, "A schema created first"). Every problem is listed with
 * the statement that fixes it; compatible differences (wider types, extra columns that are nullable
 * or have a default, another column order) are not problems: sluice writes by column name.
 */
import type pg from 'pg';
import { SluiceError } from '../../core/errors.js';
import { TableName } from '../../core/types.js';
import type { TableInfo } from '../../core/columns.js';
import { columnList, qualified, quoteIdent } from './dialect.js';
import { typeChange } from './type-change.js';

export interface TargetProblem {
  readonly column: string | null;
  readonly problem: string;
  /** The statement that fixes it. */
  readonly fix: string;
}

export interface CompatOptions {
  /** Online loads into a staging table that takes the source's built-in column types: skip those. */
  readonly typesFromSource?: boolean;
}

export async function targetProblems(dst: pg.ClientBase, info: TableInfo, target: TableName, opts: CompatOptions = {}): Promise<TargetProblem[]> {
  const t = qualified(target);
  const r = await dst.query(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
            a.atthasdef AS has_default, a.attidentity <> '' AS identity, a.attgenerated <> '' AS generated
       FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [t],
  );
  const dest = new Map(r.rows.map((x) => [x.name as string, x]));
  const out: TargetProblem[] = [];
  const source = new Set(info.columns.map((c) => c.name));
  for (const c of info.columns) {
    const d = dest.get(c.name);
    if (!d) continue; // added by sluice before the load
    const col = quoteIdent(c.name);
    if (c.generatedSql === null && d.generated) {
      out.push({ column: c.name, problem: `column ${c.name} is generated in the destination, and sluice writes the source's values into it`, fix: `ALTER TABLE ${t} ALTER COLUMN ${col} DROP EXPRESSION` });
    }
    if (c.support === 'builtin' && !opts.typesFromSource) {
      const v = typeChange(c.typeSql, d.type);
      if (v.kind === 'narrow' || v.kind === 'incompatible') {
        out.push({
          column: c.name,
          problem: `column ${c.name} is ${d.type} in the destination and cannot hold every value of the source's ${c.typeSql} (${v.why})`,
          fix: `ALTER TABLE ${t} ALTER COLUMN ${col} TYPE ${c.typeSql}`,
        });
      }
    }
    if (d.not_null && !c.notNull && c.generatedSql === null) {
      out.push({ column: c.name, problem: `column ${c.name} is NOT NULL in the destination and NULL is allowed in the source`, fix: `ALTER TABLE ${t} ALTER COLUMN ${col} DROP NOT NULL` });
    }
  }
  for (const d of r.rows) {
    if (source.has(d.name) || !d.not_null || d.has_default || d.identity || d.generated) continue;
    out.push({
      column: d.name,
      problem: `column ${d.name} exists only in the destination, is NOT NULL and has no default, so every insert would fail`,
      fix: `ALTER TABLE ${t} ALTER COLUMN ${quoteIdent(d.name)} DROP NOT NULL`,
    });
  }
  const pk = await dst.query(
    `SELECT con.conname AS name, array_agg(a.attname::text ORDER BY k.ord) AS cols
       FROM pg_constraint con CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
      WHERE con.conrelid = $1::regclass AND con.contype = 'p' GROUP BY con.conname`,
    [t],
  );
  const destKey: string[] = pk.rows[0]?.cols ?? [];
  if (destKey.join(',') !== info.primaryKey.join(',')) {
    const add = `ALTER TABLE ${t} ADD PRIMARY KEY (${columnList(info.primaryKey)})`;
    out.push({
      column: null,
      problem: `the primary key is (${destKey.join(', ') || 'none'}) in the destination and (${info.primaryKey.join(', ')}) in the source`,
      fix: pk.rows[0] ? `ALTER TABLE ${t} DROP CONSTRAINT ${quoteIdent(pk.rows[0].name)}, ADD PRIMARY KEY (${columnList(info.primaryKey)})` : add,
    });
  }
  return out;
}

/** One error listing every problem of a table and the statements that fix them. */
export function incompatibleTarget(target: TableName, source: TableName, problems: readonly TargetProblem[], orElse: string): SluiceError {
  const lines = problems.map((p) => `  - ${p.problem}; fix: ${p.fix};`);
  return new SluiceError(
    'BAD_USAGE',
    `destination ${TableName.format(target)} exists and cannot take the rows of source ${TableName.format(source)}:\n${lines.join('\n')}\n` +
      `run the fixes above in the destination, ${orElse}`,
    { context: { table: TableName.format(source), columns: problems.map((p) => p.column).filter((c) => c !== null) } },
  );
}
