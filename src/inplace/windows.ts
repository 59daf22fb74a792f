/**
 * Day and hour chunks (`chunk: { by: day|hour, column, timeZone }`): the job's scope is cut into
 * time windows of its column, in the stated time zone. The buckets are counted first (one pass over
 * the column's index); a day with more rows than chunk.maxRows is cut into its hours; runs of small
 * buckets are merged up to chunk.rows; a window that is still large is then walked by key ranges
 * inside it, like any chunk. Windows are contiguous from the scope's start to its end, so a row
 * written later into an empty day still lies in exactly one window.
 *
 * Exactly once holds per row as long as its timestamp does not change while the job runs (a row
 * whose timestamp moves into a window already done is not changed; one moving into a window not yet
 * done would be changed again): chunk by a column that does not change, such as created_at.
 */
import pg from 'pg';
import { SluiceError } from '../core/errors.js';
import type { TableFacts } from './catalog.js';
import type { InplaceJob } from './job.js';
import { q, qualifiedName, rangeWhere, type TimeWindow, type WindowSpec } from './statements.js';

export interface Window extends TimeWindow {
  /** Rows in the window when it was planned, and of those, rows matching the job's where. */
  rows: number;
  planned: number;
}

export interface Bucket {
  start: string;
  rows: number;
  planned: number;
}

const UNIT_MS = { day: 86_400_000, hour: 3_600_000 } as const;

/** Adds whole units to a local timestamp ('YYYY-MM-DD HH:MM:SS'), as wall-clock arithmetic. */
export function addUnits(local: string, unit: 'day' | 'hour', n = 1): string {
  const ms = Date.parse(local.replace(' ', 'T') + 'Z') + n * UNIT_MS[unit];
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

/** The column as a local timestamp (in the time zone for timestamptz). */
function localOf(w: WindowSpec): string {
  return w.type === 'timestamptz' ? `(${q(w.column)} AT TIME ZONE ${pg.escapeLiteral(w.timeZone)})` : `${q(w.column)}::timestamp`;
}

const FMT = `'YYYY-MM-DD HH24:MI:SS'`;

/** Reads the chunk column's type, checks the time zone, and returns the window spec. */
export async function windowSpec(c: pg.ClientBase, job: InplaceJob, facts: TableFacts): Promise<WindowSpec | undefined> {
  if (job.chunk.by === 'key') return undefined;
  const col = job.chunk.column!;
  const r = (await c.query(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped`, [facts.oid, col])).rows[0];
  if (!r) throw new SluiceError('BAD_USAGE', `job ${job.job}: chunk.column ${col} is not a column of ${facts.schema}.${facts.name}`);
  const type = String(r.type).startsWith('timestamp with time zone') ? 'timestamptz' : String(r.type).startsWith('timestamp') ? 'timestamp' : r.type === 'date' ? 'date' : null;
  if (!type) throw new SluiceError('BAD_USAGE', `job ${job.job}: chunk.column ${col} is ${r.type}: day and hour chunks need a timestamptz, timestamp or date column`);
  try {
    await c.query(`SELECT now() AT TIME ZONE $1`, [job.chunk.timeZone]);
  } catch {
    throw new SluiceError('BAD_USAGE', `job ${job.job}: chunk.timeZone ${job.chunk.timeZone} is not a time zone PostgreSQL knows (e.g. UTC, Europe/Paris; see pg_timezone_names)`);
  }
  if (type === 'date' && job.chunk.by === 'hour') throw new SluiceError('BAD_USAGE', `job ${job.job}: chunk.column ${col} is a date: chunk by day`);
  return { column: col, type, timeZone: job.chunk.timeZone };
}

/**
 * The run's scope [from, to) as local timestamps: chunk.from/to when given, else the column's first and
 * last bucket. Null when no row has a value. Rows whose column is NULL lie in no window: refused.
 */
export async function scopeOf(c: pg.ClientBase, job: InplaceJob, t: TableFacts & { window: WindowSpec }): Promise<TimeWindow | null> {
  const unit = job.chunk.by as 'day' | 'hour';
  const nulls = Number(
    (await c.query(`SELECT count(*)::int8 AS n FROM ${qualifiedName(t)} WHERE ${q(t.window.column)} IS NULL${job.where.trim() ? ` AND (${job.where})` : ''}`)).rows[0].n,
  );
  if (nulls > 0) {
    throw new SluiceError(
      'BAD_USAGE',
      `job ${job.job}: ${nulls} rows it is for have ${t.window.column} NULL and lie in no ${unit}: add "AND ${t.window.column} IS NOT NULL" to where: (and a second job by key for them), or chunk by key`,
    );
  }
  // min() and max() of the column itself (read from its index), then made local.
  const local = (agg: string) => (t.window.type === 'timestamptz' ? `(${agg}(${q(t.window.column)}) AT TIME ZONE ${pg.escapeLiteral(t.window.timeZone)})` : `${agg}(${q(t.window.column)})::timestamp`);
  const r = (await c.query(`SELECT to_char(date_trunc('${unit}', ${local('min')}), ${FMT}) AS lo, to_char(date_trunc('${unit}', ${local('max')}), ${FMT}) AS hi FROM ${qualifiedName(t)}`)).rows[0];
  const from = job.chunk.from ? await localText(c, job.chunk.from) : (r.lo as string | null);
  const to = job.chunk.to ? await localText(c, job.chunk.to) : r.hi ? addUnits(r.hi as string, unit) : null;
  if (!from || !to || from >= to) return null;
  return { from, to };
}

async function localText(c: pg.ClientBase, v: string): Promise<string> {
  return (await c.query(`SELECT to_char($1::timestamp, ${FMT}) AS t`, [v])).rows[0].t as string;
}

/** Rows a bucket (of `unit`) holds within [from, to), and of those the rows matching where. */
export async function countBuckets(c: pg.ClientBase, job: InplaceJob, t: TableFacts & { window: WindowSpec }, unit: 'day' | 'hour', span: TimeWindow): Promise<Bucket[]> {
  const where = job.where.trim() ? `count(*) FILTER (WHERE ${job.where})` : 'count(*)';
  const r = await c.query(
    `SELECT to_char(date_trunc('${unit}', ${localOf(t.window)}), ${FMT}) AS b, count(*)::int8 AS n, ${where}::int8 AS p
       FROM ${qualifiedName(t)} WHERE ${rangeWhere(t, false, false, '')} GROUP BY 1 ORDER BY 1`,
    [span.from, span.to],
  );
  return r.rows.map((x) => ({ start: x.b as string, rows: Number(x.n), planned: Number(x.p) }));
}

/**
 * The windows from `from` to the scope's end: day buckets (hours for a day over maxRows, when
 * chunking by day), runs of small ones merged up to `target` rows, contiguous.
 */
export async function planWindows(c: pg.ClientBase, job: InplaceJob, t: TableFacts & { window: WindowSpec }, span: TimeWindow, target: number): Promise<Window[]> {
  const unit = job.chunk.by as 'day' | 'hour';
  let buckets = await countBuckets(c, job, t, unit, span);
  if (unit === 'day' && buckets.some((b) => b.rows > job.chunk.maxRows)) {
    const fine: Bucket[] = [];
    for (const b of buckets) {
      if (b.rows <= job.chunk.maxRows) fine.push(b);
      else fine.push(...(await countBuckets(c, job, t, 'hour', { from: b.start < span.from ? span.from : b.start, to: minText(addUnits(b.start, 'day'), span.to) })));
    }
    buckets = fine;
  }
  const windows: Window[] = [];
  let cur: Window | null = null;
  for (const [i, b] of buckets.entries()) {
    // The first window starts where asked (a bucket may begin before: a resumed day, a scope's from).
    const start = i === 0 || b.start < span.from ? span.from : b.start;
    if (cur && (cur.rows + b.rows <= target || start <= cur.from)) {
      cur.rows += b.rows;
      cur.planned += b.planned;
      continue;
    }
    if (cur) {
      cur.to = start;
      windows.push(cur);
    }
    cur = { from: start, to: span.to, rows: b.rows, planned: b.planned };
  }
  if (cur) windows.push(cur);
  else windows.push({ from: span.from, to: span.to, rows: 0, planned: 0 });
  return windows;
}

function minText(a: string, b: string): string {
  return a < b ? a : b;
}
