/**
 * The collation each text column gets in the destination, so that it sorts and compares as it does
 * in the source. The source's collation is resolved to what it does (provider and locale; the
 * database default included), then looked up among the destination's collations: none is needed
 * when the destination's default already behaves the same; byte order ("C", "POSIX", builtin "C")
 * is "C" everywhere; otherwise the collation of the same name when it behaves the same, else any of
 * the same provider and locale (pg_catalog's first). A column with no equivalent keeps the
 * destination's default, and the caller logs why.
 */
import type pg from 'pg';
import { byteOrdered, type CollationInfo, type ColumnInfo } from '../../core/columns.js';
import { collationFromRow, databaseCollation } from '../../postgres/collations.js';
import { quoteIdent } from './dialect.js';

export interface CollationPlan {
  /** `COLLATE` operand by column name, only where the destination's default would sort otherwise. */
  readonly clauses: Map<string, string>;
  /** One line per column without an equivalent in the destination. */
  readonly warnings: string[];
}

/** Whether two collations order and compare text the same way. */
export function sameOrdering(a: CollationInfo, b: CollationInfo): boolean {
  if (byteOrdered(a) || byteOrdered(b)) return byteOrdered(a) && byteOrdered(b);
  return a.provider === b.provider && normalLocale(a.locale) === normalLocale(b.locale) && a.deterministic === b.deterministic;
}

/** `en_US.UTF-8`, `en_US.utf8` and `en-US` alike: case and separators do not name another locale. */
function normalLocale(locale: string): string {
  return locale.toLowerCase().replace(/[-_.]/g, '');
}

function describe(c: CollationInfo): string {
  const provider = { c: 'libc', i: 'ICU', b: 'builtin' }[c.provider] ?? c.provider;
  return `${c.isDefault ? 'the database default' : `${c.schema}.${c.name}`} (${provider} ${c.locale}${c.deterministic ? '' : ', nondeterministic'})`;
}

/** The plan for `columns` given the destination's default and collations. Pure. */
export function planCollations(columns: readonly ColumnInfo[], destinationDefault: CollationInfo, available: readonly CollationInfo[]): CollationPlan {
  const clauses = new Map<string, string>();
  const warnings: string[] = [];
  for (const c of columns) {
    const s = c.collation;
    if (!s || sameOrdering(s, destinationDefault)) continue;
    if (byteOrdered(s)) {
      clauses.set(c.name, '"C"');
      continue;
    }
    const fits = available.filter((x) => sameOrdering(s, x));
    const pick =
      fits.find((x) => x.schema === s.schema && x.name === s.name) ?? fits.find((x) => x.schema === 'pg_catalog') ?? fits[0];
    if (pick) clauses.set(c.name, `${quoteIdent(pick.schema)}.${quoteIdent(pick.name)}`);
    else {
      warnings.push(
        `column ${c.name}: the source sorts it by ${describe(s)} and the destination has no collation that sorts the same; ` +
          `it gets ${describe(destinationDefault)}, so its order and comparisons (a text key's too) can differ from the source's. ` +
          `Create an equivalent collation in the destination (CREATE COLLATION) and reload the table with --mode drop`,
      );
    }
  }
  return { clauses, warnings };
}

/** Reads the destination's default and collations (only when a column has a collation) and plans. */
export async function destinationCollations(dst: pg.ClientBase, columns: readonly ColumnInfo[]): Promise<CollationPlan> {
  if (!columns.some((c) => c.collation !== null)) return { clauses: new Map(), warnings: [] };
  const def = await databaseCollation(dst);
  const r = await dst.query(
    `SELECT n.nspname AS schema, c.collname AS name, to_jsonb(c) AS j
       FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
      WHERE c.collprovider <> 'd'
        AND c.collencoding IN (-1, (SELECT encoding FROM pg_database WHERE datname = current_database()))
      ORDER BY n.nspname, c.collname`,
  );
  const available = r.rows.map((x) => collationFromRow(x.schema, x.name, x.j));
  return planCollations(columns, def, available);
}
