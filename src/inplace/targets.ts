/**
 * The tables and columns a job's chunk statement names beyond its own table: the columns whose images
 * an undo job keeps, the archive an archive-delete moves rows to (made like the table when missing),
 * the table an insert-select fills.
 */
import type pg from 'pg';
import { SluiceError } from '../core/errors.js';
import { TableName } from '../core/types.js';
import type { TableFacts } from './catalog.js';
import type { InplaceJob } from './job.js';
import { q, qualifiedName, setTargets, type ChunkTargets, type KeyColumn } from './statements.js';

/** sluice_archive.<table>_<job>: where an archive-delete's rows go unless `into:` says. */
export function defaultArchive(job: InplaceJob, facts: TableFacts): { schema: string; name: string } {
  return { schema: 'sluice_archive', name: `${facts.name}_${job.job.replace(/-/g, '_')}`.slice(0, 63) };
}

export async function resolveTargets(c: pg.ClientBase, job: InplaceJob, facts: TableFacts): Promise<ChunkTargets> {
  if (job.kind === 'update' && job.undo) return { imageColumns: await columnsOf(c, facts, setTargets(job.set ?? ''), job) };
  if (job.kind === 'archive-delete') {
    const into = job.into ? TableName.parse(job.into) : defaultArchive(job, facts);
    if (!(await exists(c, into))) {
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${q(into.schema)}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${qualifiedName(into)} (LIKE ${qualifiedName(facts)} INCLUDING DEFAULTS INCLUDING GENERATED)`);
    }
    return { into };
  }
  if (job.kind === 'insert-select') {
    const into = TableName.parse(job.into!);
    if (!(await exists(c, into))) throw new SluiceError('TABLE_NOT_FOUND', `job ${job.job}: into: table ${into.schema}.${into.name} not found (create it first)`);
    return { into };
  }
  return {};
}

async function exists(c: pg.ClientBase, t: { schema: string; name: string }): Promise<boolean> {
  return (await c.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [qualifiedName(t)])).rows[0].ok as boolean;
}

async function columnsOf(c: pg.ClientBase, facts: TableFacts, names: string[], job: InplaceJob): Promise<KeyColumn[]> {
  const r = await c.query(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attname = ANY ($2::text[])`,
    [facts.oid, names],
  );
  const byName = new Map(r.rows.map((x) => [x.name as string, x as KeyColumn]));
  const missing = names.filter((n) => !byName.has(n));
  if (missing.length || names.length === 0) {
    throw new SluiceError('BAD_USAGE', `job ${job.job}: undo keeps the columns set: assigns, and ${missing.length ? `${missing.join(', ')} ${missing.length === 1 ? 'is not a column' : 'are not columns'} of ${facts.schema}.${facts.name}` : 'none were found in it'} (check set:)`);
  }
  return names.map((n) => byName.get(n)!);
}
