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

/** Day/hour chunks: each chunk also lies within a time window [from, to) of this column. */
export interface WindowSpec {
  column: string;
  /** timestamptz windows are local times in timeZone; timestamp and date windows are the values themselves. */
  type: 'timestamptz' | 'timestamp' | 'date';
  timeZone: string;
}

export interface JobTable {
  schema: string;
  name: string;
  key: KeyColumn[];
  window?: WindowSpec;
}

/** A time window: local timestamps as text ('2024-03-01 00:00:00'), from inclusive, to exclusive. */
export interface TimeWindow {
  from: string;
  to: string;
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

/** How many parameters a range takes: lo's values, hi's, and a window's two bounds. */
export function rangeParamCount(t: JobTable, hasLo: boolean, hasHi: boolean): number {
  return (hasLo ? t.key.length : 0) + (hasHi ? t.key.length : 0) + (t.window ? 2 : 0);
}

/** `col >= from AND col < to`, with the bounds as constants so the column's index is used. */
function windowClause(w: WindowSpec, first: number): string {
  const bound = (n: number) => (w.type === 'timestamptz' ? `($${n}::timestamp AT TIME ZONE ${pg.escapeLiteral(w.timeZone)})` : `$${n}::timestamp`);
  return `${q(w.column)} >= ${bound(first)} AND ${q(w.column)} < ${bound(first + 1)}`;
}

/**
 * The next chunk's inclusive upper bound: the key `rows` rows past `lo` (an index walk, no table
 * scan; within a window, a walk of the window's rows). No row comes back when fewer rows are left:
 * the chunk is then the last, open one. Parameters: lo's values, the window's bounds, the offset.
 */
export function boundarySql(t: JobTable, hasLo: boolean): string {
  // Aliased: an output column named like a key column would make ORDER BY sort by its text.
  const cols = t.key.map((c, i) => `${q(c.name)}::text AS k${i}`).join(', ');
  const where = rangeWhere(t, hasLo, false, '');
  const offset = `$${rangeParamCount(t, hasLo, false) + 1}`;
  return `SELECT ${cols} FROM ${qualifiedName(t)}${where === 'true' ? '' : ` WHERE ${where}`} ORDER BY ${t.key.map((c) => q(c.name)).join(', ')} OFFSET ${offset} LIMIT 1`;
}

/** The chunk's WHERE: its key range, its window, the job's condition. Parameters: lo's values, hi's, the window's bounds. */
export function rangeWhere(t: JobTable, hasLo: boolean, hasHi: boolean, where: string): string {
  const parts: string[] = [];
  if (hasLo) parts.push(`${rowOf(t)} > ${params(t, 1)}`);
  if (hasHi) parts.push(`${rowOf(t)} <= ${params(t, hasLo ? t.key.length + 1 : 1)}`);
  if (t.window) parts.push(windowClause(t.window, (hasLo ? t.key.length : 0) + (hasHi ? t.key.length : 0) + 1));
  if (where.trim()) parts.push(`(${where})`);
  return parts.length ? parts.join(' AND ') : 'true';
}

/** What a chunk statement needs beyond the job and its table. */
export interface ChunkTargets {
  /** One row by its key (retry-failed): the range is `key = $1…` instead of (lo, hi]. */
  exactKey?: boolean;
  /** undo: the columns the job sets, whose before- and after-images are kept. */
  imageColumns?: KeyColumn[];
  /** archive-delete, insert-select: the table rows go into. */
  into?: { schema: string; name: string };
}

export interface ChunkStatement {
  text: string;
  /** The statement returns its count in a column `n` (else: the command's row count). */
  counted: boolean;
}

/**
 * The chunk's DML. Parameters: lo's values, then hi's; with undo, then the run id and the chunk's seq.
 * - update with undo: the rows are locked in key order and read (before-images), updated, and both
 *   images kept with their key in _sluice.inplace_images — one statement, one snapshot;
 * - archive-delete: the deleted rows are inserted into the archive table by the same statement.
 */
export function chunkSql(
  job: Pick<InplaceJob, 'kind' | 'set' | 'where' | 'select' | 'columns' | 'onConflict'>,
  t: JobTable,
  hasLo: boolean,
  hasHi: boolean,
  x: ChunkTargets = {},
): ChunkStatement {
  const w = x.exactKey ? [`${rowOf(t)} = ${params(t, 1)}`, ...(job.where.trim() ? [`(${job.where})`] : [])].join(' AND ') : rangeWhere(t, hasLo, hasHi, job.where);
  const table = qualifiedName(t);
  switch (job.kind) {
    case 'update': {
      if (!x.imageColumns) return { text: `UPDATE ${table} SET ${job.set} WHERE ${w}`, counted: false };
      const n = x.exactKey ? t.key.length : rangeParamCount(t, hasLo, hasHi);
      const keys = t.key.map((c, i) => `${q(c.name)} AS sluice_k${i}`).join(', ');
      const before = x.imageColumns.map((c, i) => `${q(c.name)}::text AS sluice_v${i}`).join(', ');
      const after = x.imageColumns.map((c, i) => `${q(t.name)}.${q(c.name)}::text AS sluice_a${i}`).join(', ');
      const list = (prefix: string, k: number) => Array.from({ length: k }, (_, i) => `${prefix}${i}`).join(', ');
      return {
        text:
          `WITH sluice_before AS (SELECT ${keys}, ${before} FROM ${table} WHERE ${w} ORDER BY ${t.key.map((c) => q(c.name)).join(', ')} FOR UPDATE), ` +
          `sluice_changed AS (UPDATE ${table} SET ${job.set} FROM sluice_before b WHERE ${rowOf(t)} = (${t.key.map((_, i) => `b.sluice_k${i}`).join(', ')}) ` +
          `RETURNING ${t.key.map((_, i) => `b.sluice_k${i}`).join(', ')}, ${x.imageColumns.map((_, i) => `b.sluice_v${i}`).join(', ')}, ${after}), ` +
          `sluice_kept AS (INSERT INTO _sluice.inplace_images (run_id, seq, key, before, after) SELECT $${n + 1}::int8, $${n + 2}::int, ` +
          `jsonb_build_array(${t.key.map((_, i) => `sluice_k${i}::text`).join(', ')}), jsonb_build_array(${list('sluice_v', x.imageColumns.length)}), ` +
          `jsonb_build_array(${list('sluice_a', x.imageColumns.length)}) FROM sluice_changed RETURNING 1) ` +
          `SELECT count(*)::int8 AS n FROM sluice_kept`,
        counted: true,
      };
    }
    case 'delete':
      return { text: `DELETE FROM ${table} WHERE ${w}`, counted: false };
    case 'archive-delete':
      return { text: `WITH sluice_moved AS (DELETE FROM ${table} WHERE ${w} RETURNING *) INSERT INTO ${qualifiedName(x.into!)} SELECT * FROM sluice_moved`, counted: false };
    case 'insert-select': {
      const cols = job.columns?.length ? ` (${job.columns.map(q).join(', ')})` : '';
      const conflict = job.onConflict?.trim() ? ` ON CONFLICT ${job.onConflict}` : '';
      return { text: `INSERT INTO ${qualifiedName(x.into!)}${cols} SELECT ${job.select} FROM ${table} WHERE ${w}${conflict}`, counted: false };
    }
  }
}

/** The chunk statement as it is recorded in the ledger (both bounds present), and hashed. */
export function statementText(job: Parameters<typeof chunkSql>[0], t: JobTable, x: ChunkTargets = {}): string {
  return chunkSql(job, t, true, true, x).text;
}

/** The rows of a range that still match the job's condition (verify; 0 when the job did its work). */
export function remainingSql(job: Pick<InplaceJob, 'where'>, t: JobTable, hasLo: boolean, hasHi: boolean): string {
  return `SELECT count(*)::int8 AS n FROM ${qualifiedName(t)} WHERE ${rangeWhere(t, hasLo, hasHi, job.where)}`;
}

/** The parameters of a chunk statement: lo's values, hi's, then the window's bounds. */
export function rangeParams(lo: Key | null, hi: Key | null, window?: TimeWindow): string[] {
  return [...(lo ?? []), ...(hi ?? []), ...(window ? [window.from, window.to] : [])];
}

/** The columns an UPDATE's SET list assigns (`a = …, b = …`, `(a, b) = …`), split at top-level commas. */
export function setTargets(set: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let cur = '';
  for (const ch of set) {
    if (quote) {
      if (ch === quote) quote = null;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
      continue;
    }
    cur += ch;
  }
  parts.push(cur);
  const names: string[] = [];
  for (const p of parts) {
    const lhs = p.split('=')[0].trim().replace(/^\(|\)$/g, '');
    for (const n of lhs.split(',')) {
      const t = n.trim();
      if (t) names.push(t.startsWith('"') ? t.slice(1, -1).replace(/""/g, '"') : t.toLowerCase());
    }
  }
  return names;
}
