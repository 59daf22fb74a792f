/**
 * Backfill strategies: how a table is cut into chunks (docs/architecture.md, "Backfill strategies").
 *
 * - keyset: `key > last ORDER BY key LIMIT n`, one reader; any primary key, composite and uuid too.
 * - interval: an integer primary key's range cut into intervals `[lo, hi)` read concurrently. Widths
 *   adapt to the density seen so far; before an interval is copied a bounded count probes it, and a
 *   dense one is cut again (a sparse one is cheap: it copies few rows fast).
 * - ctid: physical page ranges `ctid >= '(a,0)' AND ctid < '(b,0)'` (TID range scans, PostgreSQL 14+),
 *   read concurrently; sized from heap AND TOAST bytes per page, so a table with a small heap and a huge
 *   TOAST still splits. A row updated during the load can move to another page and be read twice:
 *   loads by ctid are deduplicated by primary key once at the end (contract 3).
 *
 * Every strategy's last chunk is open-ended, so rows added beyond the planned range are read too
 * (and anything added after L0 arrives through the replay anyway). Chunk sizes adapt to a target
 * statement duration (`chunkSeconds`, default 2 s) from a starting `chunkRows`.
 *
 * Planners hand out chunks one at a time (`next`, serialised by the caller) and learn from each
 * finished chunk (`done`). Progress is made durable by the Copier in each chunk's own transaction:
 * the keyset strategy as the last key, the others as rows of `_sluice.chunks`.
 */
import type pg from 'pg';
import type { BackfillStrategy } from '../core/types.js';
import { qualified, quoteIdent, quoteLiteral, type KeysetTable } from '../destinations/postgres/dialect.js';

export type ChunkRange =
  /** `(after, upTo]` in key order; null bounds are open. */
  | { readonly kind: 'key'; readonly after: readonly string[] | null; readonly upTo: readonly string[] | null }
  /** `[lo, hi)` of an integer key; null bounds are open. */
  | { readonly kind: 'int'; readonly lo: bigint | null; readonly hi: bigint | null }
  /** `[from, to)` heap pages; a null `to` is open. */
  | { readonly kind: 'ctid'; readonly from: number; readonly to: number | null }
  /**
   * `[lo, hi)` of a time column, in seconds since the epoch (UTC; a timestamp without time zone or a
   * date read as UTC); null bounds are open, and an open lower bound also takes the rows whose value is NULL.
   */
  | { readonly kind: 'time'; readonly column: string; readonly type: TimeColumnType; readonly lo: bigint | null; readonly hi: bigint | null };

export type TimeColumnType = 'timestamptz' | 'timestamp' | 'date';

export interface Chunk {
  readonly range: ChunkRange;
  /** Rows the planner expects in it (for sizing and progress). */
  readonly expectedRows: number;
}

/**
 * Adapts the chunk size so that a chunk's statements take about `targetSeconds`. `cap` bounds it
 * from outside, read at every chunk: with a rows/s ceiling set, a chunk holds at most a quarter
 * second of the ceiling's rows, so the source sees short bursts at a steady beat rather than whole
 * chunks at full speed followed by long waits.
 */
export class ChunkSizer {
  private adapted: number;

  constructor(
    initialRows: number,
    private readonly targetSeconds: number,
    private readonly minRows = 100,
    private readonly maxRows = 2_000_000,
    private readonly cap: () => number = () => Infinity,
  ) {
    this.adapted = initialRows;
  }

  /** Rows of the next chunk. */
  get rows(): number {
    return Math.max(Math.min(this.minRows, this.adapted), Math.min(this.adapted, Math.round(this.cap())));
  }

  /** After a chunk of `rows` rows took `seconds`: move towards the target, at most ×2 or ÷2 a step. */
  observe(rows: number, seconds: number): void {
    if (this.targetSeconds <= 0 || rows < 50 || seconds < 0.02) return;
    const ideal = (rows / seconds) * this.targetSeconds;
    const next = Math.min(this.adapted * 2, Math.max(this.adapted / 2, ideal));
    this.adapted = Math.round(Math.min(this.maxRows, Math.max(this.minRows, next)));
  }
}

/** The most rows a chunk may hold under a rows/s ceiling (0: none): a quarter second's worth. */
export function ceilingCap(maxRowsPerSecond: number): number {
  return maxRowsPerSecond > 0 ? maxRowsPerSecond / 4 : Infinity;
}

/** The WHERE of a chunk's SELECT: its range, and the run's scope when there is one. */
export function chunkPredicate(t: KeysetTable, range: ChunkRange, scope: string): string {
  const conds: string[] = [];
  if (range.kind === 'key') {
    const key = t.key.length === 1 ? quoteIdent(t.key[0]) : `(${t.key.map(quoteIdent).join(', ')})`;
    const lit = (values: readonly string[]) => {
      const l = values.map((v, i) => `${quoteLiteral(v)}::${t.keyTypes[i]}`);
      return l.length === 1 ? l[0] : `(${l.join(', ')})`;
    };
    if (range.after) conds.push(`${key} > ${lit(range.after)}`);
    if (range.upTo) conds.push(`${key} <= ${lit(range.upTo)}`);
  } else if (range.kind === 'int') {
    const k = quoteIdent(t.key[0]);
    if (range.lo !== null) conds.push(`${k} >= ${range.lo}`);
    if (range.hi !== null) conds.push(`${k} < ${range.hi}`);
  } else if (range.kind === 'time') {
    const c = quoteIdent(range.column);
    // A constant on the other side of the comparison, so the column's index serves.
    const bound = (sec: bigint) => (range.type === 'timestamptz' ? `to_timestamp(${sec})` : `(to_timestamp(${sec}) AT TIME ZONE 'UTC')`);
    if (range.lo !== null) conds.push(`${c} >= ${bound(range.lo)}`);
    if (range.hi !== null) conds.push(range.lo === null ? `(${c} < ${bound(range.hi)} OR ${c} IS NULL)` : `${c} < ${bound(range.hi)}`);
  } else {
    conds.push(`ctid >= '(${range.from},0)'::tid`);
    if (range.to !== null) conds.push(`ctid < '(${range.to},0)'::tid`);
  }
  if (scope.trim() !== '') conds.push(`(${scope})`);
  return conds.length ? ` WHERE ${conds.join(' AND ')}` : '';
}

export function chunkSelectSql(t: KeysetTable, range: ChunkRange, scope: string): string {
  return `SELECT ${t.columns.map(quoteIdent).join(', ')} FROM ${qualified(t.source)}${chunkPredicate(t, range, scope)}`;
}

/** Text form of a range for `_sluice.chunks` and logs. */
export function rangeKey(range: ChunkRange): { lo: string; hi: string | null } {
  if (range.kind === 'int') return { lo: range.lo === null ? '-inf' : range.lo.toString(), hi: range.hi === null ? null : range.hi.toString() };
  if (range.kind === 'ctid') return { lo: String(range.from), hi: range.to === null ? null : String(range.to) };
  if (range.kind === 'time') return { lo: range.lo === null ? '-inf' : range.lo.toString(), hi: range.hi === null ? null : range.hi.toString() };
  return { lo: JSON.stringify(range.after), hi: range.upTo ? JSON.stringify(range.upTo) : null };
}

export interface Planner {
  readonly strategy: BackfillStrategy;
  /** How many chunks of this table may be in flight at once. */
  readonly parallelism: number;
  next(src: pg.ClientBase): Promise<Chunk | null>;
  done(chunk: Chunk, rows: number, seconds: number): void;
  /** Range strategies: the space covered by finished chunks and the whole space, in the strategy's unit. */
  progress?(): { done: number; total: number };
}

export class KeysetPlanner implements Planner {
  readonly strategy = 'keyset' as const;
  private last: readonly string[] | null | 'done';

  /**
   * `parallelism`: chunks in flight at once. Above 1 the chunks must commit in key order
   * (ordered-commits.ts): progress is the last key.
   */
  constructor(
    private readonly t: KeysetTable,
    private readonly scope: string,
    lastKey: readonly string[] | null | 'done',
    private readonly sizer: ChunkSizer,
    readonly parallelism = 1,
  ) {
    this.last = lastKey;
  }

  async next(src: pg.ClientBase): Promise<Chunk | null> {
    if (this.last === 'done') return null;
    const after = this.last;
    const rows = this.sizer.rows;
    const order = this.t.key.map((k) => `${qualified(this.t.source)}.${quoteIdent(k)}`).join(', ');
    const sql =
      `SELECT ${this.t.key.map((k) => `${quoteIdent(k)}::text`).join(', ')} FROM ${qualified(this.t.source)}` +
      `${chunkPredicate(this.t, { kind: 'key', after, upTo: null }, this.scope)} ORDER BY ${order} OFFSET ${Math.max(0, rows - 1)} LIMIT 1`;
    const r = await src.query({ text: sql, rowMode: 'array' });
    const upTo = r.rowCount ? (r.rows[0] as string[]) : null;
    if (upTo && after && upTo.length === after.length && upTo.every((v, i) => v === after[i])) {
      throw new Error(`the chunk cursor did not advance past ${JSON.stringify(after)}`);
    }
    this.last = upTo ?? 'done';
    return { range: { kind: 'key', after, upTo }, expectedRows: rows };
  }

  done(_chunk: Chunk, rows: number, seconds: number): void {
    this.sizer.observe(rows, seconds);
  }
}

/** Rows of a range, counted up to `limit` (a bounded probe before a range is copied). */
async function countUpTo(src: pg.ClientBase, t: KeysetTable, range: ChunkRange, scope: string, limit: number): Promise<number> {
  const r = await src.query(`SELECT count(*)::int AS n FROM (SELECT 1 FROM ${qualified(t.source)}${chunkPredicate(t, range, scope)} LIMIT ${limit}) s`);
  return r.rows[0].n;
}

/** Shared by the interval, ctid and daterange planners: a frontier over an ordered space, widths adapting to density. */
abstract class RangePlanner implements Planner {
  abstract readonly strategy: BackfillStrategy;
  protected frontier: bigint;
  protected finished = false;
  protected readonly start: bigint;
  /** Rows per unit of the space (key values or pages), learned as chunks finish. */
  protected density: number;
  private readonly retry: Chunk[] = [];
  /** Units covered by finished chunks (progress in the strategy's unit). */
  private unitsDone: number;

  constructor(
    readonly parallelism: number,
    protected readonly sizer: ChunkSizer,
    start: bigint,
    protected readonly end: bigint,
    density: number,
    resume: { frontier: bigint | null; pending: Chunk[] },
  ) {
    this.start = start;
    this.frontier = resume.frontier ?? start;
    this.density = Math.max(density, 1e-9);
    this.retry.push(...resume.pending);
    this.unitsDone = Math.max(0, Number(this.frontier - start) - resume.pending.reduce((n, c) => n + this.spanOf(c.range), 0));
  }

  protected width(): bigint {
    const w = Math.max(1, Math.floor(this.sizer.rows / this.density));
    return BigInt(w);
  }

  protected abstract make(lo: bigint, hi: bigint | null, first: boolean): ChunkRange;
  protected abstract probe(src: pg.ClientBase, range: ChunkRange, limit: number): Promise<number>;

  async next(src: pg.ClientBase): Promise<Chunk | null> {
    const again = this.retry.shift();
    if (again) return again;
    if (this.finished) return null;
    for (;;) {
      const lo = this.frontier;
      let w = this.width();
      const open = lo + w > this.end;
      let range = this.make(lo, open ? null : lo + w, lo === this.start);
      if (!open && w > 1n) {
        // A dense interval is cut again before it is copied: count up to 1.5× the target, no further.
        const limit = Math.ceil(this.sizer.rows * 1.5);
        const n = await this.probe(src, range, limit + 1);
        if (n > limit) {
          this.density = Math.max(this.density, n / Number(w));
          w = BigInt(Math.max(1, Math.floor(Number(w) / 2)));
          range = this.make(lo, lo + w, lo === this.start);
        }
      }
      if (open) this.finished = true;
      this.frontier = open ? this.end + 1n : lo + w;
      return { range, expectedRows: Math.round(Number(w) * this.density) };
    }
  }

  /** Units of the space (key values, pages, seconds) covered by finished chunks, and the whole space. */
  progress(): { done: number; total: number } {
    return { done: this.unitsDone, total: Number(this.end - this.start + 1n) };
  }

  done(chunk: Chunk, rows: number, seconds: number): void {
    this.sizer.observe(rows, seconds);
    const units = this.unitsOf(chunk.range);
    this.unitsDone += this.spanOf(chunk.range);
    if (units > 0 && rows > 0) this.density = 0.7 * this.density + 0.3 * (rows / units);
  }

  protected abstract unitsOf(range: ChunkRange): number;

  /** Units a chunk covers, the open last one included (up to the end of the space). */
  private spanOf(range: ChunkRange): number {
    const units = this.unitsOf(range);
    if (units > 0) return units;
    const lo = range.kind === 'ctid' ? BigInt(range.from) : range.kind === 'key' ? this.end + 1n : (range.lo ?? this.start);
    return Math.max(0, Number(this.end + 1n - lo));
  }
}

export class IntervalPlanner extends RangePlanner {
  readonly strategy = 'interval' as const;

  constructor(
    private readonly t: KeysetTable,
    private readonly scope: string,
    parallelism: number,
    sizer: ChunkSizer,
    min: bigint,
    max: bigint,
    rowsEstimated: number,
    resume: { frontier: bigint | null; pending: Chunk[] },
  ) {
    super(parallelism, sizer, min, max, rowsEstimated / Math.max(1, Number(max - min + 1n)), resume);
  }

  protected make(lo: bigint, hi: bigint | null, first: boolean): ChunkRange {
    // The first interval is open below: nothing below the planned minimum is ever skipped.
    return { kind: 'int', lo: first ? null : lo, hi };
  }

  protected probe(src: pg.ClientBase, range: ChunkRange, limit: number): Promise<number> {
    return countUpTo(src, this.t, range, this.scope, limit);
  }

  protected unitsOf(range: ChunkRange): number {
    if (range.kind !== 'int' || range.hi === null) return 0;
    return Number(range.hi - (range.lo ?? this.start));
  }
}

export class CtidPlanner extends RangePlanner {
  readonly strategy = 'ctid' as const;
  /** Pages per chunk that stay within `maxChunkBytes`, whatever density is learned from finished chunks. */
  private readonly maxPages: bigint;

  /**
   * `rowsPerPage` from the heap; `bytesPerPage` counts heap AND TOAST bytes, so a page of rows with
   * large out-of-line values weighs as much as it costs to copy: chunks never exceed `maxChunkBytes`.
   */
  constructor(
    parallelism: number,
    sizer: ChunkSizer,
    pages: number,
    rowsPerPage: number,
    bytesPerPage: number,
    resume: { frontier: bigint | null; pending: Chunk[] },
    maxChunkBytes = 64 * 1024 * 1024,
  ) {
    const pagesByBytes = maxChunkBytes / Math.max(1, bytesPerPage);
    super(parallelism, sizer, 0n, BigInt(Math.max(0, pages - 1)), Math.max(rowsPerPage, sizer.rows / Math.max(1, pagesByBytes)), resume);
    this.maxPages = BigInt(Math.max(1, Math.floor(pagesByBytes)));
  }

  protected override width(): bigint {
    const w = super.width();
    return w < this.maxPages ? w : this.maxPages;
  }

  protected make(lo: bigint, hi: bigint | null): ChunkRange {
    return { kind: 'ctid', from: Number(lo), to: hi === null ? null : Number(hi) };
  }

  /** Page ranges are not probed: their size is known from the bytes per page. */
  protected async probe(): Promise<number> {
    return 0;
  }

  protected unitsOf(range: ChunkRange): number {
    if (range.kind !== 'ctid' || range.to === null) return 0;
    return range.to - range.from;
  }
}

/**
 * daterange: a time column's span cut into `[lo, hi)` ranges read concurrently, in seconds since the
 * epoch. Widths adapt to the density seen so far and are whole hours while an hour holds fewer rows
 * than a chunk (so that chunks line up with days and hours); a dense range is probed and cut again,
 * down to a second. The first range is open below and also takes the rows whose value is NULL, the
 * last open above. A row whose time changes during the load can move into a range not read yet and be
 * read twice: such a load is deduplicated by primary key once at the end, as a ctid load is.
 */
export class DaterangePlanner extends RangePlanner {
  readonly strategy = 'daterange' as const;

  constructor(
    private readonly t: KeysetTable,
    private readonly scope: string,
    private readonly column: string,
    private readonly type: TimeColumnType,
    parallelism: number,
    sizer: ChunkSizer,
    min: bigint,
    max: bigint,
    rowsEstimated: number,
    resume: { frontier: bigint | null; pending: Chunk[] },
  ) {
    super(parallelism, sizer, min, max, rowsEstimated / Math.max(1, Number(max - min + 1n)), resume);
  }

  protected override width(): bigint {
    const w = super.width();
    return w >= 3600n ? (w / 3600n) * 3600n : w;
  }

  protected make(lo: bigint, hi: bigint | null, first: boolean): ChunkRange {
    return { kind: 'time', column: this.column, type: this.type, lo: first ? null : lo, hi };
  }

  protected probe(src: pg.ClientBase, range: ChunkRange, limit: number): Promise<number> {
    return countUpTo(src, this.t, range, this.scope, limit);
  }

  protected unitsOf(range: ChunkRange): number {
    if (range.kind !== 'time' || range.hi === null) return 0;
    return Number(range.hi - (range.lo ?? this.start));
  }
}
