/**
 * `sluice verify`: compares a table in the source and the destination with plain SQL: a row count
 * and an md5 over every row's text form in primary-key order, computed by each server. When they
 * differ, per-row hashes in key order are merged to name the differing keys.
 *
 * A streaming table moves; a difference is re-checked a few times (with growing pauses) before it
 * is reported, so a change that is merely still in flight does not count as a difference.
 */
import type pg from 'pg';
import type { SluiceConfig } from '../config/schema.js';
import { sleep } from '../core/retry.js';
import { TableName } from '../core/types.js';
import { qualified, quoteIdent } from '../destinations/postgres/dialect.js';
import { introspectTable } from '../sources/postgres/introspect.js';
import { connect } from '../pipeline/context.js';

export interface TableVerdict {
  table: string;
  equal: boolean;
  sourceRows: number;
  destinationRows: number;
  sourceMd5: string;
  destinationMd5: string;
  /** Up to `maxKeys` keys that differ, as `{key, problem}`. */
  differences: { key: string; problem: 'differs' | 'missing in destination' | 'only in destination' }[];
  error?: string;
}

export interface VerifyOptions {
  attempts?: number;
  maxKeys?: number;
}

export async function verifyTables(cfg: SluiceConfig, names: string[], opts: VerifyOptions = {}): Promise<TableVerdict[]> {
  const src = await connect('source', cfg.source.url, 'sluice-verify');
  const dst = await connect('destination', cfg.destination.url, 'sluice-verify');
  try {
    const out: TableVerdict[] = [];
    for (const n of names) {
      const source = TableName.parse(n);
      const target = { schema: cfg.destination.schema, name: source.name };
      out.push(await verifyTable(src, dst, source, target, opts));
    }
    return out;
  } finally {
    await src.end().catch(() => {});
    await dst.end().catch(() => {});
  }
}

async function verifyTable(src: pg.Client, dst: pg.Client, source: TableName, target: TableName, opts: VerifyOptions): Promise<TableVerdict> {
  const info = await introspectTable(src, source);
  const cols = info.columns.map((c) => c.name);
  const textual = new Set(info.columns.filter((c) => /\b(text|character|char|varchar|citext|name)\b/.test(c.typeSql)).map((c) => c.name));
  const order = info.primaryKey.map((k) => `${quoteIdent(k)}${textual.has(k) ? ' COLLATE "C"' : ''}`).join(', ');
  const rowExpr = `md5(ROW(${cols.map(quoteIdent).join(', ')})::text)`;
  const sumSql = (t: TableName) =>
    `SELECT count(*)::bigint AS n, coalesce(md5(string_agg(${rowExpr}, '' ORDER BY ${order})), md5('')) AS h FROM ${qualified(t)}`;
  const attempts = opts.attempts ?? 4;
  let last: TableVerdict | null = null;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const [a, b] = await Promise.all([src.query(sumSql(source)), dst.query(sumSql(target))]);
    last = {
      table: TableName.format(source),
      equal: a.rows[0].h === b.rows[0].h && Number(a.rows[0].n) === Number(b.rows[0].n),
      sourceRows: Number(a.rows[0].n),
      destinationRows: Number(b.rows[0].n),
      sourceMd5: a.rows[0].h,
      destinationMd5: b.rows[0].h,
      differences: [],
    };
    if (last.equal) return last;
    if (attempt < attempts) await sleep(1000 * 2 ** (attempt - 1));
  }
  last!.differences = await diffKeys(src, dst, source, target, info.primaryKey, order, rowExpr, opts.maxKeys ?? 20);
  return last!;
}

/** Merges per-row hashes of both sides in key order; names the first keys that differ. */
async function diffKeys(
  src: pg.Client,
  dst: pg.Client,
  source: TableName,
  target: TableName,
  key: readonly string[],
  order: string,
  rowExpr: string,
  max: number,
): Promise<TableVerdict['differences']> {
  const keyText = `ROW(${key.map(quoteIdent).join(', ')})::text`;
  const q = (t: TableName) => `SELECT ${keyText} AS k, ${rowExpr} AS h FROM ${qualified(t)} ORDER BY ${order}`;
  const [a, b] = await Promise.all([src.query(q(source)), dst.query(q(target))]);
  const sa = a.rows as { k: string; h: string }[];
  const sb = b.rows as { k: string; h: string }[];
  const mb = new Map(sb.map((r) => [r.k, r.h]));
  const ma = new Set(sa.map((r) => r.k));
  const out: TableVerdict['differences'] = [];
  for (const r of sa) {
    if (out.length >= max) return out;
    const h = mb.get(r.k);
    if (h === undefined) out.push({ key: r.k, problem: 'missing in destination' });
    else if (h !== r.h) out.push({ key: r.k, problem: 'differs' });
  }
  for (const r of sb) {
    if (out.length >= max) return out;
    if (!ma.has(r.k)) out.push({ key: r.k, problem: 'only in destination' });
  }
  return out;
}
