/**
 * `sluice verify`: compares a table in the source and the destination with plain SQL, range by
 * range. The key space is cut into ranges of about `rangeRows` rows by an index-only walk of the
 * source's primary key; for each range both servers compute a row count and an md5 over every
 * row's text form in key order. Memory stays bounded by one range whatever the table's size (a
 * single whole-table string_agg would also hit PostgreSQL's 1 GB value limit past ~30M rows).
 *
 * A streaming table moves: ranges that differ are re-checked a few times (with growing pauses)
 * before they count, so a change that is merely still in flight is not reported. A range that
 * still differs is bisected: cut again by the keys of whichever side holds more rows, down to
 * ranges small enough to merge per-row hashes and name the differing keys.
 *
 * `where` limits every query to the rows of a scope (after a scoped backfill, say).
 *
 * The SQL is in ranges.ts, which shares no code with the copier's chunk predicates: a boundary
 * mistake in one cannot hide in both.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { postgresDestinationUrl, type SluiceConfig } from '../config/schema.js';
import type { RangeHashes } from '../destinations/destination.js';
import { destinationFor } from '../engines.js';
import { sleep } from '../core/retry.js';
import { TableName } from '../core/types.js';
import { SluiceError } from '../core/errors.js';
import { byteOrdered } from '../core/columns.js';
import { readCollations } from '../postgres/collations.js';
import { introspectTable } from '../sources/postgres/introspect.js';
import { connect } from '../pipeline/context.js';
import { boundariesQuery, boundaryQuery, qualified, rangeHashQuery, rowHashesQuery, scopeCheckSql, verifyShape, type KeyRange, type VerifyShape } from './ranges.js';

export interface TableVerdict {
  table: string;
  /** The scope compared, when only part of the table was (`--where`). */
  where?: string;
  equal: boolean;
  sourceRows: number;
  destinationRows: number;
  /** md5 over the ranges' md5s (the ranges are the same on both sides). */
  sourceMd5: string;
  destinationMd5: string;
  /** Ranges compared, and how many of them still differed after the re-checks. */
  ranges: number;
  rangesDiffering: number;
  /** Up to `maxKeys` keys that differ, as `{key, problem}`. */
  differences: { key: string; problem: 'differs' | 'missing in destination' | 'only in destination' }[];
  error?: string;
}

export interface VerifyProgress {
  table: string;
  rowsChecked: number;
  rowsEstimated: number;
  ranges: number;
  rangesDiffering: number;
}

export interface VerifyOptions {
  /** Checks of a differing range before it counts (1 = no re-check). Default 4. */
  attempts?: number;
  /** Differing keys to name per table. Default 20. */
  maxKeys?: number;
  /** Rows per compared range, and the most rows per side held in memory to name keys. Default 50,000. */
  rangeRows?: number;
  /** Ceiling on rows read per second from the source (0: none). */
  maxRowsPerSecond?: number;
  /** Compare only the rows that match this condition (a backfill's `where` scope), on both sides. */
  where?: string;
  /** Called after each range. */
  onProgress?: (p: VerifyProgress) => void;
}

export async function verifyTables(cfg: SluiceConfig, names: string[], opts: VerifyOptions = {}): Promise<TableVerdict[]> {
  const destination = destinationFor(cfg);
  if (destination.openRangeHashes) return verifyThroughPort(cfg, names, await destination.openRangeHashes(), opts);
  const src = await connect('source', cfg.source.url, 'sluice-verify');
  const dst = await connect('destination', postgresDestinationUrl(cfg.destination, 'sluice verify'), 'sluice-verify');
  try {
    const out: TableVerdict[] = [];
    for (const n of names) {
      const source = TableName.parse(n);
      const target = { schema: cfg.destination.schema, name: source.name };
      out.push(await verifyTable({ client: src, table: source }, { client: dst, table: target }, opts));
    }
    return out;
  } finally {
    await src.end().catch(() => {});
    await dst.end().catch(() => {});
  }
}

/**
 * Verify against a destination reached through the port (DuckDB): the same ranges, cut on the
 * source, each hashed by both engines over a canonical row text (the destination's `RangeHashes`).
 * Differing ranges are re-checked like any; their keys are not named (per-row hashes are not
 * compared across engines yet): the verdict gives the ranges' count.
 */
async function verifyThroughPort(cfg: SluiceConfig, names: string[], hashes: RangeHashes, opts: VerifyOptions): Promise<TableVerdict[]> {
  const src = await connect('source', cfg.source.url, 'sluice-verify');
  try {
    const out: TableVerdict[] = [];
    for (const n of names) {
      const source = TableName.parse(n);
      const target = { schema: cfg.destination.schema, name: source.name };
      const info = await introspectTable(src, source);
      if (info.primaryKey.length === 0) throw noPrimaryKey(source);
      const side: Side = { client: src, table: source };
      const shape: VerifyShape = { ...verifyShape(info.columns, info.primaryKey, opts.where ?? ''), rowExpr: hashes.sourceRowHash(info) };
      await checkScope(side, shape.scope, 'source');
      const destinationHash = async (range: KeyRange): Promise<RangeHash> => {
        const d = await hashes.rangeHash(target, info, range, shape.scope);
        if (!d) throw missingDestination(target);
        return d;
      };
      const hashBoth = async (range: KeyRange) => ({ s: await hashRange(side, shape, range), d: await destinationHash(range) });
      const { entries, open } = await compareRanges(side, shape, info.rowsEstimated, hashBoth, opts);
      // Per-row hashes are not compared across engines yet: the verdict counts the differing ranges.
      out.push(verdictOf(TableName.format(source), shape, entries, open, []));
    }
    return out;
  } finally {
    await src.end().catch(() => {});
    await hashes.close();
  }
}

interface Side {
  readonly client: pg.Client;
  readonly table: TableName;
}

interface RangeHash {
  readonly n: number;
  readonly h: string;
}

const MAX_DEPTH = 12;

async function verifyTable(src: Side, dst: Side, opts: VerifyOptions): Promise<TableVerdict> {
  const info = await introspectTable(src.client, src.table);
  const there = await dst.client.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [qualified(dst.table)]);
  if (!there.rows[0].ok) throw missingDestination(dst.table);
  if (info.primaryKey.length === 0) throw noPrimaryKey(src.table);
  const shape = verifyShape(info.columns, info.primaryKey, opts.where ?? '', await keysNeedingC(src, dst));
  await checkScope(src, shape.scope, 'source');
  await checkScope(dst, shape.scope, 'destination');
  const maxKeys = opts.maxKeys ?? 20;
  const rangeRows = Math.max(2, opts.rangeRows ?? 50_000);
  const hashBoth = async (range: KeyRange) => {
    const [s, d] = await Promise.all([hashRange(src, shape, range), hashRange(dst, shape, range)]);
    return { s, d };
  };
  const { entries, open } = await compareRanges(src, shape, info.rowsEstimated, hashBoth, opts);
  const differences: TableVerdict['differences'] = [];
  for (const e of open) {
    if (differences.length >= maxKeys) break;
    differences.push(...(await diffRange(src, dst, shape, e.range, e.s, e.d, maxKeys - differences.length, rangeRows, 0)));
  }
  return verdictOf(TableName.format(src.table), shape, entries, open, differences);
}

function missingDestination(target: TableName): SluiceError {
  return new SluiceError(
    'TABLE_NOT_FOUND',
    `destination table ${TableName.format(target)} does not exist: it has not been loaded yet (sluice run creates it), or destination.schema names another schema`,
    { context: { table: TableName.format(target), side: 'destination' } },
  );
}

function noPrimaryKey(source: TableName): SluiceError {
  return new SluiceError('NO_PRIMARY_KEY', `source ${TableName.format(source)}: verify compares by primary key and the table has none`);
}

interface RangeEntry {
  readonly range: KeyRange;
  s: RangeHash;
  d: RangeHash;
}

/**
 * Hashes every range of the source's key space on both sides once, then re-checks the ranges that
 * differ, with growing pauses (changes in flight land meanwhile). `open`: the ranges that still differ.
 */
async function compareRanges(
  src: Side,
  shape: VerifyShape,
  rowsEstimated: number,
  hashBoth: (range: KeyRange) => Promise<{ s: RangeHash; d: RangeHash }>,
  opts: VerifyOptions,
): Promise<{ entries: RangeEntry[]; open: RangeEntry[] }> {
  const attempts = Math.max(1, opts.attempts ?? 4);
  const rangeRows = Math.max(2, opts.rangeRows ?? 50_000);
  const pace = pacer(opts.maxRowsPerSecond ?? 0);
  const table = TableName.format(src.table);
  const entries: RangeEntry[] = [];
  let rowsChecked = 0;
  let differing = 0;
  for await (const range of walkRanges(src, shape, { after: null, upTo: null }, rangeRows)) {
    const { s, d } = await hashBoth(range);
    entries.push({ range, s, d });
    rowsChecked += s.n;
    if (!same(s, d)) differing++;
    opts.onProgress?.({ table, rowsChecked, rowsEstimated, ranges: entries.length, rangesDiffering: differing });
    await pace(s.n);
  }
  let open = entries.filter((e) => !same(e.s, e.d));
  for (let attempt = 2; attempt <= attempts && open.length > 0; attempt++) {
    await sleep(1000 * 2 ** (attempt - 2));
    for (const e of open) {
      ({ s: e.s, d: e.d } = await hashBoth(e.range));
      await pace(e.s.n);
    }
    open = open.filter((e) => !same(e.s, e.d));
  }
  return { entries, open };
}

function verdictOf(table: string, shape: VerifyShape, entries: readonly RangeEntry[], open: readonly RangeEntry[], differences: TableVerdict['differences']): TableVerdict {
  const digest = (hs: RangeHash[]) => createHash('md5').update(hs.map((x) => x.h).join('')).digest('hex');
  return {
    table,
    ...(shape.scope !== '' ? { where: shape.scope } : {}),
    equal: open.length === 0,
    sourceRows: entries.reduce((a, e) => a + e.s.n, 0),
    destinationRows: entries.reduce((a, e) => a + e.d.n, 0),
    sourceMd5: digest(entries.map((e) => e.s)),
    destinationMd5: digest(entries.map((e) => e.d)),
    ranges: entries.length,
    rangesDiffering: open.length,
    differences,
  };
}

/**
 * Which key columns need `COLLATE "C"`: every collatable one, unless it already orders byte-wise on
 * both sides (then the primary key's index serves the walk). A table missing in the destination
 * reads as collatable everywhere; its first query names the problem.
 */
async function keysNeedingC(src: Side, dst: Side): Promise<(c: { name: string }) => boolean> {
  const [s, d] = await Promise.all([readCollations(src.client, qualified(src.table)), readCollations(dst.client, qualified(dst.table)).catch(() => null)]);
  return (c) => {
    const a = s.get(c.name);
    if (!a) return false;
    const b = d?.get(c.name);
    return !(b && byteOrdered(a) && byteOrdered(b));
  };
}

function same(a: RangeHash, b: RangeHash): boolean {
  return a.n === b.n && a.h === b.h;
}

/** Sleeps so that reading `rows` rows keeps the average under the ceiling. */
function pacer(maxRowsPerSecond: number): (rows: number) => Promise<void> {
  const started = Date.now();
  let total = 0;
  return async (rows) => {
    if (maxRowsPerSecond <= 0) return;
    total += rows;
    const due = started + (total / maxRowsPerSecond) * 1000;
    if (due > Date.now()) await sleep(due - Date.now());
  };
}

/** Fails (exit 2) when `scope` is not a valid condition on the side's table; reads nothing. */
async function checkScope(side: Side, scope: string, name: 'source' | 'destination'): Promise<void> {
  if (scope === '') return;
  try {
    await side.client.query({ text: scopeCheckSql(side.table, scope), values: [], queryMode: 'extended' } as pg.QueryConfig);
  } catch (err) {
    throw new SluiceError(
      'BAD_USAGE',
      `where ${JSON.stringify(scope)} is not a valid condition on ${name} ${TableName.format(side.table)}: ${(err as Error).message}; fix tables[].where or --where`,
      { cause: err },
    );
  }
}

/** Count and md5 of one range, computed by the server. */
async function hashRange(side: Side, shape: VerifyShape, range: KeyRange): Promise<RangeHash> {
  const r = await side.client.query<{ n: string; h: string }>(rangeHashQuery(side.table, shape, range));
  return { n: Number(r.rows[0].n), h: r.rows[0].h };
}

/**
 * Cuts `outer` into consecutive ranges of about `rows` rows of `side`, by an index-only walk of its
 * primary key (or, for keys compared byte-wise, one sorted pass). The ranges cover `outer` exactly,
 * whatever the other side holds.
 */
async function* walkRanges(side: Side, shape: VerifyShape, outer: KeyRange, rows: number): AsyncGenerator<KeyRange> {
  let after = outer.after;
  if (shape.key.some((k) => k.collate)) {
    // Byte-wise keys the index does not order: all the cuts from one sort of the range's keys.
    const r = await side.client.query({ ...boundariesQuery(side.table, shape, outer, rows), rowMode: 'array' });
    for (const boundary of r.rows as string[][]) {
      if (outer.upTo && sameKey(boundary, outer.upTo)) break;
      yield { after, upTo: boundary };
      after = boundary;
    }
    yield { after, upTo: outer.upTo };
    return;
  }
  for (;;) {
    const r = await side.client.query({ ...boundaryQuery(side.table, shape, { after, upTo: outer.upTo }, rows), rowMode: 'array' });
    const boundary = r.rows[0] as string[] | undefined;
    if (!boundary || (outer.upTo && sameKey(boundary, outer.upTo))) {
      yield { after, upTo: outer.upTo };
      return;
    }
    yield { after, upTo: boundary };
    after = boundary;
  }
}

function sameKey(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Names up to `max` differing keys of a range. Small ranges are merged row by row; a range with
 * more than `rangeRows` rows on either side is cut again by the keys of the larger side, and only
 * the parts whose hashes differ are looked into.
 */
async function diffRange(
  src: Side,
  dst: Side,
  shape: VerifyShape,
  range: KeyRange,
  s: RangeHash,
  d: RangeHash,
  max: number,
  rangeRows: number,
  depth: number,
): Promise<TableVerdict['differences']> {
  if (max <= 0) return [];
  if ((s.n <= rangeRows && d.n <= rangeRows) || depth >= MAX_DEPTH) return mergeRows(src, dst, shape, range, max, rangeRows * 4);
  const out: TableVerdict['differences'] = [];
  const larger = s.n >= d.n ? src : dst;
  const part = Math.max(2, Math.floor(rangeRows / 2));
  for await (const sub of walkRanges(larger, shape, range, part)) {
    const [hs, hd] = await Promise.all([hashRange(src, shape, sub), hashRange(dst, shape, sub)]);
    if (same(hs, hd)) continue;
    out.push(...(await diffRange(src, dst, shape, sub, hs, hd, max - out.length, rangeRows, depth + 1)));
    if (out.length >= max) break;
  }
  return out;
}

/** Per-row hashes of both sides of a small range, merged by key. */
async function mergeRows(src: Side, dst: Side, shape: VerifyShape, range: KeyRange, max: number, limit: number): Promise<TableVerdict['differences']> {
  const q = (t: TableName) => rowHashesQuery(t, shape, range, limit);
  const [a, b] = await Promise.all([src.client.query<{ k: string; h: string }>(q(src.table)), dst.client.query<{ k: string; h: string }>(q(dst.table))]);
  const mb = new Map(b.rows.map((r) => [r.k, r.h]));
  const ma = new Set(a.rows.map((r) => r.k));
  const out: TableVerdict['differences'] = [];
  for (const r of a.rows) {
    if (out.length >= max) return out;
    const h = mb.get(r.k);
    if (h === undefined) out.push({ key: r.k, problem: 'missing in destination' });
    else if (h !== r.h) out.push({ key: r.k, problem: 'differs' });
  }
  for (const r of b.rows) {
    if (out.length >= max) return out;
    if (!ma.has(r.k)) out.push({ key: r.k, problem: 'only in destination' });
  }
  return out;
}
