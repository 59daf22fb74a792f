/**
 * The source's secondary indexes on a destination table sluice created (docs/architecture.md,
 * "Secondary indexes"): built after the load, under their source names, one statement each; an
 * index the destination cannot build is reported and skipped, never fatal.
 *
 * A unique index is built without UNIQUE: the Applier compacts a batch per primary key and applies
 * it set-wise (upserts, then deletes), so two rows trading a value within a batch would meet a
 * uniqueness check the source never saw. The source enforces uniqueness; the destination keeps the
 * index for reads.
 */
import type pg from 'pg';
import { TableName } from '../../core/types.js';
import type { SourceIndex } from '../../core/columns.js';
import { qualified, quoteIdent } from './dialect.js';

export interface IndexReport {
  /** Indexes built (or already there under the same name on the table). */
  readonly created: string[];
  /** Unique in the source, built without UNIQUE. */
  readonly notUnique: string[];
  /** Not built, each with why and the statement tried (or that would have been). */
  readonly skipped: { name: string; reason: string; statement: string }[];
}

/** The statement that builds `index` on `target`, under the source's name; null when the definition cannot be placed. */
export function targetIndexSql(index: SourceIndex, target: TableName): string | null {
  if (index.body === '') return null;
  const body = index.unique ? index.body.replace(/ NULLS NOT DISTINCT\b/, '') : index.body;
  return `CREATE INDEX IF NOT EXISTS ${quoteIdent(index.name)} ON ${qualified(target)} ${body}`;
}

export async function createSourceIndexes(
  dst: pg.ClientBase,
  indexes: readonly SourceIndex[],
  target: TableName,
  warn: (message: string, fields: Record<string, unknown>) => void,
): Promise<IndexReport> {
  const report: IndexReport = { created: [], notUnique: [], skipped: [] };
  const skip = (name: string, reason: string, statement: string) => {
    report.skipped.push({ name, reason, statement });
    warn(`index ${name} of ${TableName.format(target)} not created: ${reason}`, { index: name, statement });
  };
  for (const idx of indexes) {
    const sql = targetIndexSql(idx, target);
    if (!idx.valid) {
      skip(idx.name, 'it is not valid in the source (a failed CREATE INDEX CONCURRENTLY?)', idx.definition);
      continue;
    }
    if (sql === null) {
      skip(idx.name, 'its definition could not be placed on the destination table', idx.definition);
      continue;
    }
    // IF NOT EXISTS would pass silently over another relation holding the name: say so instead.
    const taken = await dst.query(
      `SELECT c.relkind, coalesce(i.indrelid::regclass::text, '') AS on_table, i.indrelid = $3::regclass AS ours
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid
        WHERE n.nspname = $1 AND c.relname = $2`,
      [target.schema, idx.name, qualified(target)],
    );
    const t = taken.rows[0];
    if (t && !t.ours) {
      skip(idx.name, `the name is taken in schema ${target.schema} by ${t.on_table ? `an index on ${t.on_table}` : `a relation (relkind ${t.relkind})`}`, sql);
      continue;
    }
    try {
      await dst.query(sql);
    } catch (err) {
      const e = err as { message?: string; code?: string };
      skip(idx.name, `the destination refused it (${e.code ?? 'error'}: ${e.message ?? String(err)})`, sql);
      continue;
    }
    report.created.push(idx.name);
    if (idx.unique) report.notUnique.push(idx.name);
  }
  return report;
}

/**
 * UNIQUE indexes other than the primary key on destination tables (a schema created first keeps
 * its own): sluice applies a batch set-wise, compacted per key, so a source transaction that moves
 * a value between rows can meet a uniqueness check there that the source never made.
 */
export async function uniqueSecondaryIndexes(client: pg.ClientBase, tables: readonly TableName[]): Promise<{ table: string; index: string }[]> {
  if (tables.length === 0) return [];
  const r = await client.query(
    `SELECT n.nspname || '.' || t.relname AS table, c.relname AS index
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE i.indisunique AND NOT i.indisprimary
        AND i.indrelid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
      ORDER BY 1, 2`,
    [tables.map((t) => qualified(t))],
  );
  return r.rows as { table: string; index: string }[];
}
