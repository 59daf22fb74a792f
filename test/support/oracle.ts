/**
 * Independent correctness oracle for tests: compares table contents on two
 * PostgreSQL databases with plain SQL. Deliberately shares no code with src/.
 *
 * Checksum = count(*) and md5(string_agg(md5(ROW(<cols>)::text), ',' ORDER BY <pk>)),
 * computed in a session with fixed output settings so both servers render values
 * identically. Text-like primary key columns are ordered with COLLATE "C" so the
 * result does not depend on the databases' collations. Tables without a primary
 * key are ordered by the per-row md5 (an order-independent multiset checksum).
 */
import { AssertionError } from 'node:assert';
import pg from 'pg';

export interface TableChecksum {
  rows: number;
  md5: string;
}

const SESSION_SETUP = [
  'SET extra_float_digits = 3',
  "SET DateStyle = 'ISO, YMD'",
  "SET IntervalStyle = 'postgres'",
  "SET TimeZone = 'UTC'",
  "SET bytea_output = 'hex'",
].join('; ');

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query(SESSION_SETUP);
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

interface TableShape {
  /** schema-qualified, quoted */
  qualified: string;
  /** quoted column list for ROW(...) */
  rowExpr: string;
  /** primary key column names (unquoted), empty if none */
  pkNames: string[];
  /** ROW(...) expression of the pk columns, or null */
  pkRowExpr: string | null;
  /** ORDER BY list */
  orderBy: string;
}

async function describeTable(client: pg.Client, table: string, columns?: string[]): Promise<TableShape> {
  const rel = await client.query<{ oid: number; qualified: string }>(
    `SELECT c.oid::int8 AS oid, format('%I.%I', n.nspname, c.relname) AS qualified
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = to_regclass($1)`,
    [table],
  );
  if (rel.rowCount === 0) throw new Error(`oracle: table ${table} not found`);
  const { oid, qualified } = rel.rows[0];

  const attrs = await client.query<{ attname: string; collatable: boolean }>(
    `SELECT attname, attcollation <> 0 AS collatable
       FROM pg_attribute
      WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
      ORDER BY attnum`,
    [oid],
  );
  const allCols = attrs.rows.map((r) => r.attname);
  let cols = allCols;
  if (columns) {
    const missing = columns.filter((c) => !allCols.includes(c));
    if (missing.length) throw new Error(`oracle: table ${table} has no column(s) ${missing.join(', ')}`);
    cols = columns;
  }
  const rowExpr = `ROW(${cols.map(quoteIdent).join(', ')})`;

  const pk = await client.query<{ attname: string; collatable: boolean }>(
    `SELECT a.attname, a.attcollation <> 0 AS collatable
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1 AND i.indisprimary
      ORDER BY k.ord`,
    [oid],
  );
  const pkNames = pk.rows.map((r) => r.attname);
  const orderBy = pk.rows.length
    ? pk.rows.map((r) => (r.collatable ? `${quoteIdent(r.attname)} COLLATE "C"` : quoteIdent(r.attname))).join(', ')
    : `md5(${rowExpr}::text)`;
  const pkRowExpr = pkNames.length ? `ROW(${pkNames.map(quoteIdent).join(', ')})` : null;
  return { qualified, rowExpr, pkNames, pkRowExpr, orderBy };
}

async function checksumWith(client: pg.Client, table: string, columns?: string[]): Promise<TableChecksum> {
  const shape = await describeTable(client, table, columns);
  const res = await client.query<{ rows: string; md5: string }>(
    `SELECT count(*)::text AS rows,
            md5(coalesce(string_agg(md5(${shape.rowExpr}::text), ',' ORDER BY ${shape.orderBy}), '')) AS md5
       FROM ${shape.qualified}`,
  );
  return { rows: Number(res.rows[0].rows), md5: res.rows[0].md5 };
}

/** Row count and content checksum of `table` ("schema.name") on the database at `url`. */
export async function tableChecksum(url: string, table: string, columns?: string[]): Promise<TableChecksum> {
  return withClient(url, (client) => checksumWith(client, table, columns));
}

interface RowHashes {
  shape: TableShape;
  /** [key, md5] in pk order; key is ROW(pk)::text, or the whole row text if no pk */
  rows: Array<[string, string]>;
}

async function rowHashes(url: string, table: string, columns?: string[]): Promise<RowHashes> {
  return withClient(url, async (client) => {
    const shape = await describeTable(client, table, columns);
    const keyExpr = shape.pkRowExpr ?? shape.rowExpr;
    const res = await client.query<{ k: string; h: string }>({
      text: `SELECT ${keyExpr}::text AS k, md5(${shape.rowExpr}::text) AS h
               FROM ${shape.qualified} ORDER BY ${shape.orderBy}`,
      rowMode: 'array',
    } as pg.QueryConfig);
    return { shape, rows: (res.rows as unknown as Array<[string, string]>).map(([k, h]) => [k, h]) };
  });
}

function describeDifferences(src: RowHashes, dst: RowHashes, limit: number): { total: number; first: string[] } {
  const first: string[] = [];
  let total = 0;
  const note = (s: string) => {
    total++;
    if (first.length < limit) first.push(s);
  };
  const pkNames = src.shape.pkNames;
  if (pkNames.length) {
    const label = (k: string) => `(${pkNames.join(', ')})=${k}`;
    const dstMap = new Map(dst.rows);
    const srcKeys = new Set<string>();
    for (const [k, h] of src.rows) {
      srcKeys.add(k);
      const other = dstMap.get(k);
      if (other === undefined) note(`${label(k)} missing in destination`);
      else if (other !== h) note(`${label(k)} differs`);
    }
    for (const [k] of dst.rows) if (!srcKeys.has(k)) note(`${label(k)} only in destination`);
  } else {
    const counts = new Map<string, number>();
    for (const [k] of src.rows) counts.set(k, (counts.get(k) ?? 0) + 1);
    for (const [k] of dst.rows) counts.set(k, (counts.get(k) ?? 0) - 1);
    for (const [k, n] of counts) {
      if (n > 0) note(`row ${k} missing in destination${n > 1 ? ` (x${n})` : ''}`);
      else if (n < 0) note(`row ${k} only in destination${n < -1 ? ` (x${-n})` : ''}`);
    }
  }
  return { total, first };
}

/**
 * Throws an AssertionError (with both checksums and the first 5 differing keys)
 * unless `table` has the same contents on both databases.
 */
export async function assertTablesEqual(
  sourceUrl: string,
  destUrl: string,
  table: string,
  columns?: string[],
): Promise<void> {
  const [src, dst] = await Promise.all([tableChecksum(sourceUrl, table, columns), tableChecksum(destUrl, table, columns)]);
  if (src.rows === dst.rows && src.md5 === dst.md5) return;

  const [srcRows, dstRows] = await Promise.all([rowHashes(sourceUrl, table, columns), rowHashes(destUrl, table, columns)]);
  const diff = describeDifferences(srcRows, dstRows, 5);
  const lines = [
    `table ${table} differs between source and destination`,
    `  source:      rows=${src.rows} md5=${src.md5}`,
    `  destination: rows=${dst.rows} md5=${dst.md5}`,
    diff.total
      ? `  ${diff.total} differing row(s); first ${diff.first.length}:`
      : '  no per-row difference found (row order or key rendering differs between the two sides?)',
    ...diff.first.map((d) => `    ${d}`),
  ];
  throw new AssertionError({
    message: lines.join('\n'),
    actual: src,
    expected: dst,
    operator: 'assertTablesEqual',
  });
}
