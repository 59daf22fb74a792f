/**
 * `sluice verify --by day:created_at [--time-zone Z]`: per day (or hour) of a timestamp column, in a
 * stated time zone, both servers count their rows and sum a 64-bit slice of each row's md5 (an
 * order-free checksum: no sort, no string held per group). Buckets that differ are checked again a few
 * times (the table moves), a differing day is cut into its hours, and each differing hour is handed to
 * the key-range verifier, scoped to that hour, to name the keys. The answer says which days differ —
 * what a per-day backfill or an audit asks — before it says which rows.
 */
import type pg from 'pg';
import { postgresDestinationUrl, type SluiceConfig } from '../config/schema.js';
import { SluiceError } from '../core/errors.js';
import { sleep } from '../core/retry.js';
import { TableName } from '../core/types.js';
import { connect } from '../pipeline/context.js';
import { qualified, quoteIdent } from './ranges.js';
import { verifyTables, type TableVerdict, type VerifyOptions } from './verifier.js';

export interface BucketSpec {
  unit: 'day' | 'hour';
  column: string;
  timeZone: string;
}

export interface BucketDifference {
  bucket: string;
  sourceRows: number;
  destinationRows: number;
}

export interface BucketVerdict extends TableVerdict {
  by: string;
  buckets: number;
  /** The buckets that still differ after the re-checks: days, and the hours of those days that differ. */
  differingBuckets: BucketDifference[];
}

/** Parses `day:created_at` / `hour:created_at`. */
export function parseBy(by: string, timeZone = 'UTC'): BucketSpec {
  const m = /^(day|hour):(.+)$/.exec(by);
  if (!m) throw new SluiceError('BAD_USAGE', `--by ${by}: expected day:COLUMN or hour:COLUMN (e.g. --by day:created_at)`);
  return { unit: m[1] as 'day' | 'hour', column: m[2], timeZone };
}

interface Bucket {
  n: number;
  h: string;
}

interface Side {
  client: pg.Client;
  table: TableName;
}

const MAX_HOURS_NAMED = 5;

export async function verifyTablesByBucket(cfg: SluiceConfig, names: string[], spec: BucketSpec, opts: VerifyOptions = {}): Promise<BucketVerdict[]> {
  const src = await connect('source', cfg.source.url, 'sluice-verify');
  const dst = await connect('destination', postgresDestinationUrl(cfg.destination, 'sluice verify'), 'sluice-verify');
  try {
    const out: BucketVerdict[] = [];
    for (const n of names) {
      const table = TableName.parse(n);
      out.push(await verifyTable(cfg, { client: src, table }, { client: dst, table: { schema: cfg.destination.schema, name: table.name } }, spec, opts));
    }
    return out;
  } finally {
    await src.end().catch(() => {});
    await dst.end().catch(() => {});
  }
}

async function verifyTable(cfg: SluiceConfig, src: Side, dst: Side, spec: BucketSpec, opts: VerifyOptions): Promise<BucketVerdict> {
  const name = TableName.format(src.table);
  const cols = await src.client.query(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [qualified(src.table)],
  );
  if (cols.rowCount === 0) throw new SluiceError('TABLE_NOT_FOUND', `source table ${name} not found`);
  const col = cols.rows.find((c) => c.name === spec.column);
  if (!col) throw new SluiceError('BAD_USAGE', `--by: ${spec.column} is not a column of ${name}`);
  const type = String(col.type);
  const local = type.startsWith('timestamp with time zone')
    ? `(${quoteIdent(spec.column)} AT TIME ZONE ${literal(spec.timeZone)})`
    : type.startsWith('timestamp') || type === 'date'
      ? `${quoteIdent(spec.column)}::timestamp`
      : null;
  if (!local) throw new SluiceError('BAD_USAGE', `--by: ${spec.column} is ${type}: verify by day or hour needs a timestamptz, timestamp or date column`);
  const rowExpr = `md5(ROW(${cols.rows.map((c) => quoteIdent(c.name)).join(', ')})::text)`;
  const scope = (opts.where ?? '').trim();
  const bucketsOf = async (side: Side, unit: 'day' | 'hour', within?: string): Promise<Map<string, Bucket>> => {
    const conds = [scope, within ?? ''].filter(Boolean).map((c) => `(${c})`);
    const r = await side.client.query(
      `SELECT to_char(date_trunc('${unit}', ${local}), 'YYYY-MM-DD HH24:MI') AS b, count(*)::int8 AS n,
              coalesce(sum(('x' || substr(${rowExpr}, 1, 16))::bit(64)::bigint::numeric), 0)::text AS h
         FROM ${qualified(side.table)}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} GROUP BY 1 ORDER BY 1`,
    );
    return new Map(r.rows.map((x) => [x.b === null ? '(null)' : (x.b as string), { n: Number(x.n), h: x.h as string }]));
  };
  const compare = async (unit: 'day' | 'hour', within?: string) => {
    const [s, d] = await Promise.all([bucketsOf(src, unit, within), bucketsOf(dst, unit, within)]);
    const keys = [...new Set([...s.keys(), ...d.keys()])].sort();
    return { keys, s, d, differing: keys.filter((k) => s.get(k)?.h !== d.get(k)?.h || s.get(k)?.n !== d.get(k)?.n) };
  };

  let first = await compare(spec.unit);
  const attempts = Math.max(1, opts.attempts ?? 4);
  for (let attempt = 2; attempt <= attempts && first.differing.length > 0; attempt++) {
    await sleep(1000 * 2 ** (attempt - 2));
    const again = await compare(spec.unit);
    // A bucket counts only if it differed every time.
    first = { ...again, differing: again.differing.filter((k) => first.differing.includes(k)) };
  }
  const differingBuckets: BucketDifference[] = first.differing.map((k) => ({ bucket: k, sourceRows: first.s.get(k)?.n ?? 0, destinationRows: first.d.get(k)?.n ?? 0 }));

  // The hours of each differing day, then the keys of the first differing hours.
  const hours: string[] = [];
  for (const day of spec.unit === 'day' ? first.differing : []) {
    if (day === '(null)') continue;
    const within = `${local} >= ${literal(day)}::timestamp AND ${local} < ${literal(day)}::timestamp + interval '1 day'`;
    const h = await compare('hour', within);
    for (const k of h.differing) {
      differingBuckets.push({ bucket: k, sourceRows: h.s.get(k)?.n ?? 0, destinationRows: h.d.get(k)?.n ?? 0 });
      hours.push(k);
    }
  }
  if (spec.unit === 'hour') hours.push(...first.differing.filter((k) => k !== '(null)'));
  const differences: TableVerdict['differences'] = [];
  for (const hour of hours.slice(0, MAX_HOURS_NAMED)) {
    const within = `${quoteIdent(spec.column)} >= ${bound(type, hour, spec.timeZone, '')} AND ${quoteIdent(spec.column)} < ${bound(type, hour, spec.timeZone, " + interval '1 hour'")}`;
    const [v] = await verifyTables(cfg, [name], { ...opts, attempts: 1, where: scope ? `(${scope}) AND ${within}` : within });
    differences.push(...v.differences);
  }
  const sum = (m: Map<string, Bucket>) => [...m.values()].reduce((a, b) => a + b.n, 0);
  return {
    table: name,
    ...(scope ? { where: scope } : {}),
    by: `${spec.unit}:${spec.column} (${spec.timeZone})`,
    equal: first.differing.length === 0,
    sourceRows: sum(first.s),
    destinationRows: sum(first.d),
    sourceMd5: '',
    destinationMd5: '',
    ranges: first.keys.length,
    rangesDiffering: first.differing.length,
    buckets: first.keys.length,
    differingBuckets,
    differences,
  };
}

/** An hour's bound on the column itself (so its index serves), for the key-range pass. */
function bound(type: string, local: string, timeZone: string, plus: string): string {
  const ts = `(${literal(local)}::timestamp${plus})`;
  return type.startsWith('timestamp with time zone') ? `(${ts} AT TIME ZONE ${literal(timeZone)})` : ts;
}

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
