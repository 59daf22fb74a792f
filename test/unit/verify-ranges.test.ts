/**
 * The verifier's own range SQL (src/verify/ranges.ts): golden strings, then the predicates run on a
 * real cluster. Cut at known positions of a table's key order (found by plain SQL), consecutive
 * ranges — the open first and last ones included — must hold every row exactly once, each in the
 * range its position says, for integer, composite (text, int) in two collations, and mixed-type keys.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startCluster, type Cluster } from '../support/clusters.js';
import { SESSION_OPTIONS } from '../../src/pipeline/context.js';
import {
  boundariesQuery,
  boundaryQuery,
  rangeCondition,
  rangeHashQuery,
  rangeWhere,
  rowHashesQuery,
  scopeCheckSql,
  verifyShape,
  type KeyColumn,
  type KeyRange,
} from '../../src/verify/ranges.js';

const orders = { schema: 'public', name: 'orders' };
const lines = { schema: 'app', name: 'Line "Items"' };
const single = verifyShape(
  [
    { name: 'id', typeSql: 'bigint' },
    { name: 'note', typeSql: 'text' },
  ],
  ['id'],
  '',
);
const composite = verifyShape(
  [
    { name: 'order_id', typeSql: 'uuid' },
    { name: 'code', typeSql: 'character varying(20)' },
    { name: 'qty', typeSql: 'numeric(12,3)' },
  ],
  ['order_id', 'code'],
  '  qty > 0 ',
);

test('single key: open first range, middle range, open last range, whole table', () => {
  const v: string[] = [];
  assert.equal(rangeCondition(single.key, { after: null, upTo: ['10'] }, v), '"id" <= $1::bigint');
  assert.equal(rangeCondition(single.key, { after: ['10'], upTo: ['20'] }, v), '"id" > $2::bigint AND "id" <= $3::bigint');
  assert.equal(rangeCondition(single.key, { after: ['20'], upTo: null }, v), '"id" > $4::bigint');
  assert.equal(rangeCondition(single.key, { after: null, upTo: null }, v), '');
  assert.deepEqual(v, ['10', '10', '20', '20']);
});

test('composite key: row-value comparison, every value a parameter cast to its column type', () => {
  const v: string[] = [];
  const after = ['7f1c7ad0-0000-4000-8000-000000000001', "O'Brien"];
  const upTo = ['7f1c7ad0-0000-4000-8000-000000000002', '$1 \\ "x"'];
  assert.equal(
    rangeCondition(composite.key, { after, upTo }, v),
    '("order_id", "code" COLLATE "C") > ($1::uuid, $2::character varying(20)) AND ("order_id", "code" COLLATE "C") <= ($3::uuid, $4::character varying(20))',
  );
  assert.deepEqual(v, [...after, ...upTo]);
});

test('parameters continue after the values already taken', () => {
  const v = ['a', 'b'];
  assert.equal(rangeCondition(single.key, { after: ['1'], upTo: null }, v), '"id" > $3::bigint');
  assert.deepEqual(v, ['a', 'b', '1']);
});

test('mixed types and odd identifiers are quoted and cast as format_type prints them', () => {
  const key: KeyColumn[] = [
    { name: 'at', typeSql: 'timestamp with time zone', collate: false },
    { name: 'we"ird', typeSql: '"my schema"."mood"', collate: false },
    { name: 'amount', typeSql: 'numeric(12,3)', collate: false },
  ];
  const v: string[] = [];
  assert.equal(
    rangeCondition(key, { after: ['2024-01-01 00:00:00+00', 'ok', '1.500'], upTo: null }, v),
    '("at", "we""ird", "amount") > ($1::timestamp with time zone, $2::"my schema"."mood", $3::numeric(12,3))',
  );
});

test('a bound of the wrong width or an empty key is refused', () => {
  assert.throws(() => rangeCondition(composite.key, { after: ['x'], upTo: null }, []), /a bound of 1 values for a key of 2 columns/);
  assert.throws(() => rangeCondition([], { after: null, upTo: null }, []), /at least one key column/);
  assert.throws(() => verifyShape([{ name: 'a', typeSql: 'int' }], [], ''), /has none/);
});

test('shape: key order with text columns in "C" collation, row md5 over every column, scope trimmed', () => {
  assert.equal(single.order, '"id"');
  assert.equal(composite.order, '"order_id", "code" COLLATE "C"');
  assert.equal(composite.rowExpr, 'md5(ROW("order_id", "code", "qty")::text)');
  assert.equal(composite.scope, 'qty > 0');
});

test('WHERE joins range and scope; neither gives none', () => {
  const v: string[] = [];
  assert.equal(rangeWhere(single, { after: null, upTo: null }, v), '');
  assert.equal(rangeWhere({ ...single, scope: 'id % 2 = 0' }, { after: null, upTo: null }, v), ' WHERE (id % 2 = 0)');
  assert.equal(rangeWhere(composite, { after: null, upTo: ['u', 'c'] }, v), ' WHERE ("order_id", "code" COLLATE "C") <= ($1::uuid, $2::character varying(20)) AND (qty > 0)');
});

test('queries: boundary walk, range hash, per-row hashes', () => {
  assert.deepEqual(boundaryQuery(orders, single, { after: ['5'], upTo: null }, 1000), {
    text: 'SELECT "id"::text FROM "public"."orders" WHERE "id" > $1::bigint ORDER BY "public"."orders"."id" OFFSET 999 LIMIT 1',
    values: ['5'],
  });
  assert.deepEqual(boundaryQuery(lines, composite, { after: null, upTo: null }, 2), {
    text:
      'SELECT "order_id"::text, "code"::text FROM "app"."Line ""Items""" WHERE (qty > 0)' +
      ' ORDER BY "app"."Line ""Items"""."order_id", "app"."Line ""Items"""."code" COLLATE "C" OFFSET 1 LIMIT 1',
    values: [],
  });
  assert.deepEqual(rangeHashQuery(orders, single, { after: ['5'], upTo: ['9'] }), {
    text:
      `SELECT count(*)::bigint AS n, coalesce(md5(string_agg(md5(ROW("id", "note")::text), '' ORDER BY "id")), md5('')) AS h` +
      ' FROM "public"."orders" WHERE "id" > $1::bigint AND "id" <= $2::bigint',
    values: ['5', '9'],
  });
  assert.deepEqual(rowHashesQuery(lines, composite, { after: ['u', 'c'], upTo: null }, 200), {
    text:
      'SELECT ROW("order_id", "code")::text AS k, md5(ROW("order_id", "code", "qty")::text) AS h FROM "app"."Line ""Items"""' +
      ' WHERE ("order_id", "code" COLLATE "C") > ($1::uuid, $2::character varying(20)) AND (qty > 0) ORDER BY "order_id", "code" COLLATE "C" LIMIT 200',
    values: ['u', 'c'],
  });
  assert.equal(scopeCheckSql(orders, 'id > 0'), 'SELECT 1 FROM "public"."orders" WHERE (id > 0) LIMIT 0');
});

// ---------------------------------------------------------------------------------------------
// On a real cluster.

let cluster: Cluster | undefined;
let client: pg.Client;

/** Text values that are hard to quote: quotes, backslashes, placeholders, blanks, accents. */
const NASTY = [``, ` `, `a`, `A`, `O'Brien`, `it''s`, `back\\slash`, `$1`, `"dq"`, `Ä`, `ä`, `é`, `zz`, `tab\there`, `-- not a comment`, `trailing `];

interface Case {
  table: string;
  /** Key columns in key order (the primary key). */
  key: KeyColumn[];
  rows: number;
}

const CASES: Case[] = [
  { table: 'public.r_int', key: [{ name: 'id', typeSql: 'bigint', collate: false }], rows: 0 },
  {
    table: 'public.r_comp',
    key: [
      { name: 'code', typeSql: 'text', collate: false },
      { name: 'n', typeSql: 'integer', collate: false },
    ],
    rows: 0,
  },
  {
    table: 'public.r_icu',
    key: [
      { name: 'code', typeSql: 'text', collate: true },
      { name: 'n', typeSql: 'integer', collate: false },
    ],
    rows: 0,
  },
  {
    table: 'public.r_mixed',
    key: [
      { name: 'at', typeSql: 'timestamp with time zone', collate: false },
      { name: 'amount', typeSql: 'numeric(12,3)', collate: false },
      { name: 'u', typeSql: 'uuid', collate: false },
      { name: 'day', typeSql: 'date', collate: false },
    ],
    rows: 0,
  },
];

before(async () => {
  cluster = await startCluster({ name: 'verify-ranges', logical: false });
  client = new pg.Client({ connectionString: cluster.url(), options: SESSION_OPTIONS });
  await client.connect();
  const nasty = `ARRAY[${NASTY.map((s) => `'${s.replace(/'/g, "''")}'`).join(', ')}]`;
  await client.query(`
    CREATE TABLE public.r_int (id bigint PRIMARY KEY, v text);
    INSERT INTO public.r_int SELECT g * 7919 % 100003 - 50000, 'v' || g FROM generate_series(1, 997) g;
    INSERT INTO public.r_int VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max'), (0, 'zero')
      ON CONFLICT DO NOTHING;

    CREATE TABLE public.r_comp (code text, n integer, v text, PRIMARY KEY (code, n));
    INSERT INTO public.r_comp SELECT c, g - 30, c || g FROM unnest(${nasty}) c, generate_series(1, 61) g;

    CREATE TABLE public.r_icu (code text COLLATE "und-x-icu", n integer, v text, PRIMARY KEY (code, n));
    INSERT INTO public.r_icu SELECT code, n, v FROM public.r_comp;

    CREATE TABLE public.r_mixed (at timestamptz, amount numeric(12,3), u uuid, day date, v text, PRIMARY KEY (at, amount, u, day));
    INSERT INTO public.r_mixed
      SELECT timestamptz '2024-02-29 23:59:59.999999+00' + (g % 5) * interval '1 hour 0.000001 s', (g % 3) * 1.125,
             md5((g % 11)::text)::uuid, date '2000-01-01' + g, 'v' || g
      FROM generate_series(1, 800) g;
  `);
  for (const c of CASES) c.rows = Number((await client.query(`SELECT count(*) AS n FROM ${c.table}`)).rows[0].n);
});

after(async () => {
  await client?.end().catch(() => {});
  await cluster?.destroy();
});

const ident = (name: string) => `"${name}"`;
/** How a key column is ordered: byte-wise when it is compared `COLLATE "C"`. */
const cOrder = (k: KeyColumn) => (k.collate ? ' COLLATE "C"' : '');
const tableName = (t: string) => ({ schema: t.split('.')[0], name: t.split('.')[1] });

/** Every key of the table as text, in key order: plain SQL, independent of ranges.ts. */
async function keysInOrder(c: Case): Promise<string[][]> {
  const r = await client.query({
    text: `SELECT ${c.key.map((k) => `${ident(k.name)}::text`).join(', ')} FROM ${c.table} ORDER BY ${c.key.map((k) => `${c.table}.${ident(k.name)}${cOrder(k)}`).join(', ')}`,
    rowMode: 'array',
  });
  return r.rows as string[][];
}

/**
 * Cuts the table after the rows at 1-based positions `cuts` (ascending) and checks that the ranges
 * (open, k1], (k1, k2], …, (kn, open) partition it exactly: each range's count is the gap between its
 * cuts, and every row matches exactly one range, the one its position says.
 */
async function checkPartition(c: Case, keys: string[][], cuts: number[]): Promise<void> {
  const bounds = cuts.map((p) => keys[p - 1]);
  const ranges: KeyRange[] = [...bounds, null].map((upTo, i) => ({ after: i === 0 ? null : bounds[i - 1], upTo }));
  const shape = { key: c.key, order: c.key.map((k) => `${ident(k.name)}${cOrder(k)}`).join(', '), rowExpr: 'md5(v)', scope: '' };
  const expected = [...cuts, c.rows].map((p, i) => p - (i === 0 ? 0 : cuts[i - 1]));

  for (const [i, range] of ranges.entries()) {
    const values: string[] = [];
    const cond = rangeCondition(c.key, range, values);
    const n = Number((await client.query(`SELECT count(*) AS n FROM ${c.table} WHERE ${cond}`, values)).rows[0].n);
    assert.equal(n, expected[i], `${c.table} range ${i} of ${ranges.length} ${JSON.stringify(range)}`);
    const h = await client.query(rangeHashQuery(tableName(c.table), shape, range));
    assert.equal(Number(h.rows[0].n), expected[i]);
  }

  // One statement over every row: how many ranges it matches, and which one first.
  const values: string[] = [];
  const conds = ranges.map((r) => rangeCondition(c.key, r, values));
  const order = c.key.map((k) => `${ident(k.name)}${cOrder(k)}`).join(', ');
  const cutsParam = `$${values.push(`{${cuts.join(',')}}`)}::int[]`;
  const r = await client.query(
    `SELECT count(*) AS rows, count(*) FILTER (WHERE hits <> 1) AS not_once, count(*) FILTER (WHERE first IS DISTINCT FROM due) AS misplaced
     FROM (SELECT hits, first, (SELECT count(*) FROM unnest(${cutsParam}) p WHERE p < rn)::int AS due
           FROM (SELECT row_number() OVER (ORDER BY ${order}) AS rn,
                        ${conds.map((x) => `(${x})::int`).join(' + ')} AS hits,
                        CASE ${conds.map((x, i) => `WHEN ${x} THEN ${i}`).join(' ')} END AS first
                 FROM ${c.table}) s) t`,
    values,
  );
  assert.deepEqual(
    { rows: Number(r.rows[0].rows), notOnce: Number(r.rows[0].not_once), misplaced: Number(r.rows[0].misplaced) },
    { rows: c.rows, notOnce: 0, misplaced: 0 },
    `${c.table} cut at ${cuts.join(',')}`,
  );
}

for (const c of CASES) {
  test(`${c.table}: consecutive ranges hold every row exactly once, open first and last ranges included`, async () => {
    const keys = await keysInOrder(c);
    assert.equal(keys.length, c.rows);
    assert.ok(c.rows > 500);
    const step = 97;
    // Cuts at the very first and last rows: the open first range holds one row, the open last none.
    const edges = [1];
    for (let p = 1 + step; p < c.rows; p += step) edges.push(p);
    edges.push(c.rows);
    await checkPartition(c, keys, edges);
    // Cuts inside: both open ranges hold rows; and a single cut.
    const inner: number[] = [];
    for (let p = step; p < c.rows; p += step) inner.push(p);
    await checkPartition(c, keys, inner);
    await checkPartition(c, keys, [Math.floor(c.rows / 2)]);
  });
}

test('the boundary walk finds the keys at every rows-th position, and the scope limits it', async () => {
  for (const c of CASES) {
    const keys = await keysInOrder(c);
    const shape = verifyShape([...c.key, { name: 'v', typeSql: 'text' }], c.key.map((k) => k.name), '', (col) => c.key.find((k) => k.name === col.name)!.collate);
    const step = 250;
    const found: string[][] = [];
    let after: readonly string[] | null = null;
    for (;;) {
      const r = await client.query({ ...boundaryQuery(tableName(c.table), shape, { after, upTo: null }, step), rowMode: 'array' });
      if (r.rows.length === 0) break;
      found.push(r.rows[0] as string[]);
      after = r.rows[0] as string[];
    }
    const expected = keys.filter((_, i) => (i + 1) % step === 0);
    assert.deepEqual(found, expected, c.table);
    // The same cuts in one pass, and within a range (its upper bound included when it falls on a cut).
    const all = await client.query({ ...boundariesQuery(tableName(c.table), shape, { after: null, upTo: null }, step), rowMode: 'array' });
    assert.deepEqual(all.rows, expected, `${c.table}, one pass`);
    const inner = await client.query({ ...boundariesQuery(tableName(c.table), shape, { after: keys[99], upTo: keys[599] }, step), rowMode: 'array' });
    assert.deepEqual(inner.rows, [keys[349], keys[599]], `${c.table}, one pass within (key 100, key 600]`);
  }

  const c = CASES[1];
  const scoped = verifyShape([...c.key, { name: 'v', typeSql: 'text' }], ['code', 'n'], 'n % 2 = 0');
  const even = Number((await client.query(`SELECT count(*) AS n FROM ${c.table} WHERE n % 2 = 0`)).rows[0].n);
  const h = await client.query(rangeHashQuery(tableName(c.table), scoped, { after: null, upTo: null }));
  assert.equal(Number(h.rows[0].n), even);
});
