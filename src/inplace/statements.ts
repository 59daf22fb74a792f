/**
 * The SQL of an in-place job's chunks. A chunk is a key range (lo, hi]: lo exclusive (none for the
 * first), hi inclusive (none for the last, which then also takes rows inserted past the end meanwhile).
 * Keys travel as text and are cast back to the key columns' types, so the row-value comparisons use
 * the index (and the columns' collations) exactly as ORDER BY does.
 */
import pg from 'pg';
import type { InplaceJob } from './job.js';

export interface KeyColumn {
  name: string;
  /** format_type() of the column: the cast for a key value that travels as text. */
  type: string;
}

export interface JobTable {
  schema: string;
  name: string;
  key: KeyColumn[];
}

/** A key as text values, one per key column. */
export type Key = string[];

export const q = (ident: string) => pg.escapeIdentifier(ident);
export const qualifiedName = (t: Pick<JobTable, 'schema' | 'name'>) => `${q(t.schema)}.${q(t.name)}`;

function rowOf(t: JobTable): string {
  return `(${t.key.map((c) => q(c.name)).join(', ')})`;
}

/** `($n::type, …)` for a key bound, numbering parameters from `first`. */
function params(t: JobTable, first: number): string {
  return `(${t.key.map((c, i) => `$${first + i}::${c.type}`).join(', ')})`;
}

/**
 * The next chunk's inclusive upper bound: the key `rows` rows past `lo` (an index walk, no table
 * scan). No row comes back when fewer rows are left: the chunk is then the last, open one.
 */
export function boundarySql(t: JobTable, hasLo: boolean): string {
  // Aliased: an output column named like a key column would make ORDER BY sort by its text.
  const cols = t.key.map((c, i) => `${q(c.name)}::text AS k${i}`).join(', ');
  const after = hasLo ? ` WHERE ${rowOf(t)} > ${params(t, 1)}` : '';
  const offset = `$${hasLo ? t.key.length + 1 : 1}`;
  return `SELECT ${cols} FROM ${qualifiedName(t)}${after} ORDER BY ${t.key.map((c) => q(c.name)).join(', ')} OFFSET ${offset} LIMIT 1`;
}

/** The chunk's WHERE: its key range and the job's condition. Parameters: lo's values, then hi's. */
export function rangeWhere(t: JobTable, hasLo: boolean, hasHi: boolean, where: string): string {
  const parts: string[] = [];
  if (hasLo) parts.push(`${rowOf(t)} > ${params(t, 1)}`);
  if (hasHi) parts.push(`${rowOf(t)} <= ${params(t, hasLo ? t.key.length + 1 : 1)}`);
  if (where.trim()) parts.push(`(${where})`);
  return parts.length ? parts.join(' AND ') : 'true';
}

/** The chunk's DML. */
export function chunkSql(job: Pick<InplaceJob, 'kind' | 'set' | 'where'>, t: JobTable, hasLo: boolean, hasHi: boolean): string {
  const w = rangeWhere(t, hasLo, hasHi, job.where);
  if (job.kind === 'update') return `UPDATE ${qualifiedName(t)} SET ${job.set} WHERE ${w}`;
  return `DELETE FROM ${qualifiedName(t)} WHERE ${w}`;
}

/** The chunk statement as it is recorded in the ledger (both bounds present), and hashed. */
export function statementText(job: Pick<InplaceJob, 'kind' | 'set' | 'where'>, t: JobTable): string {
  return chunkSql(job, t, true, true);
}

/** The rows of a range that still match the job's condition (verify; 0 when the job did its work). */
export function remainingSql(job: Pick<InplaceJob, 'where'>, t: JobTable, hasLo: boolean, hasHi: boolean): string {
  return `SELECT count(*)::int8 AS n FROM ${qualifiedName(t)} WHERE ${rangeWhere(t, hasLo, hasHi, job.where)}`;
}

/** The parameters of a chunk statement: lo's values, then hi's. */
export function rangeParams(lo: Key | null, hi: Key | null): string[] {
  return [...(lo ?? []), ...(hi ?? [])];
}
