/**
 * Every type of the PostgreSQL round-trip test (test/integration/types.test.ts: the same table, the
 * same edge rows and generated rows) copied from a real PostgreSQL into a real DuckDB file the way the
 * DuckDB destination loads: COPY out in text form, types.ts's conversion, the appender into a load
 * table, the one dedupe into the live table; then a batch of changes of every type through the MERGE.
 *
 * The oracle shares no code with sluice: it reads PostgreSQL and DuckDB with plain SQL (each value as
 * its engine prints it, floats and intervals as numbers) and compares in Node, per DuckDB column type.
 * A value DuckDB cannot hold (a timestamp past 294247-01-10) must be refused, naming the column.
 * Last, the cross-engine row hash (row-hash.ts) must agree on every row and column of it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { SESSION_OPTIONS } from '../../src/pipeline/context.js';
import { introspectTable } from '../../src/sources/postgres/introspect.js';
import { openDuckDb } from '../../src/destinations/duckdb/connection.js';
import { duckdbRangeHashSql, duckdbRowHashExpr, postgresRowHashExpr } from '../../src/destinations/duckdb/row-hash.js';
import { duckColumns } from '../../src/destinations/duckdb/types.js';
import { appendChunk, applyBatch, createLoadTable, createTarget, finishLoad, type TableShape } from '../../src/destinations/duckdb/writer.js';
import { startCluster, type Cluster } from '../support/clusters.js';

let source: Cluster;
let dir: string;
let client: pg.Client;

// The round-trip table of test/integration/types.test.ts, copied (a test file cannot be imported without running its tests).
const DDL = `
  CREATE SCHEMA extra;
  CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy', 'very "happy", really');
  CREATE DOMAIN extra.posint AS integer CHECK (VALUE > 0);
  CREATE TABLE public.types (
    id            int PRIMARY KEY,
    c_smallint    smallint,
    c_int         integer,
    c_bigint      bigint,
    c_numeric     numeric,
    c_numeric_p   numeric(12, 3),
    c_real        real,
    c_double      double precision,
    c_text        text,
    c_varchar     varchar(20),
    c_char        char(5),
    c_bytea       bytea,
    c_bool        boolean,
    c_date        date,
    c_time        time,
    c_timetz      timetz,
    c_timestamp   timestamp,
    c_timestamptz timestamptz,
    c_interval    interval,
    c_uuid        uuid,
    c_json        json,
    c_jsonb       jsonb,
    c_int_arr     int[],
    c_text_arr    text[],
    c_int_2d      int[][],
    c_enum        public.mood,
    c_domain      extra.posint,
    c_enum_arr    public.mood[],
    c_inet        inet,
    c_cidr        cidr,
    c_macaddr     macaddr,
    c_int4range   int4range,
    c_tstzrange   tstzrange,
    c_bit         bit(8),
    c_varbit      varbit,
    c_money       money,
    c_xml         xml,
    c_tsvector    tsvector,
    c_point       point,
    c_notnull     text NOT NULL DEFAULT 'x'
  );
`;

const COLUMNS = [
  'id', 'c_smallint', 'c_int', 'c_bigint', 'c_numeric', 'c_numeric_p', 'c_real', 'c_double', 'c_text', 'c_varchar', 'c_char',
  'c_bytea', 'c_bool', 'c_date', 'c_time', 'c_timetz', 'c_timestamp', 'c_timestamptz', 'c_interval', 'c_uuid', 'c_json', 'c_jsonb',
  'c_int_arr', 'c_text_arr', 'c_int_2d', 'c_enum', 'c_domain', 'c_enum_arr', 'c_inet', 'c_cidr', 'c_macaddr', 'c_int4range',
  'c_tstzrange', 'c_bit', 'c_varbit', 'c_money', 'c_xml', 'c_tsvector', 'c_point', 'c_notnull',
];
/** Hand-written edge rows, one SQL row expression each (in COLUMNS order). `$ID` is replaced by the id. */
const EDGE_ROWS = [
  // extremes and specials
  `($ID, 32767, 2147483647, 9223372036854775807, 'NaN', 123456789.123, 'Infinity', 'Infinity',
    E'tab\\there\\nnew line\\r\\nback\\\\slash é 中文 😀 \\\\N', 'varchar ✓', 'ab', '\\x00ff00', true,
    'infinity', '23:59:59.999999', '23:59:59.999999+14', '2024-02-29 12:34:56.123456', 'infinity',
    '1 year 2 mons 3 days 04:05:06.789012', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    E'{"a": 1,  "a" : 2,\\n "b":[1, 2 ,3] }', '{"k": [1, {"x": null}], "s": "q\\"uote"}',
    '{1,2,NULL,-3}', ARRAY['a,b', 'c"d', E'e\\\\f', NULL, '', 'NULL', ' sp ', '{}'], '{{1,2},{3,4}}',
    'very "happy", really', 1, ARRAY['sad', 'very "happy", really', NULL]::public.mood[],
    '192.168.1.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '[1,10)', 'empty',
    B'10101010', B'1', '92233720368547758.07', '<a b="1">x &amp; y</a>', 'a fat cat:1A sat:2,3', '(1.5,-2.25)', E'n\\tn')`,
  `($ID, -32768, -2147483648, -9223372036854775808, '-123456789012345678901234567890.000000000000000000000000000001',
    -999999999.999, '-Infinity', '-Infinity', '', '', '', '', false,
    '-infinity', '00:00:00', '00:00:00-15:59', '0044-03-15 12:00:00 BC', '-infinity',
    '-1 mons -2 days +03:00:00.000001', '00000000-0000-0000-0000-000000000000',
    '[]', '{}', '{}', '{}', '{}', 'sad', 2147483647, '{}', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', '(,5]', '[2024-01-01 00:00:00+00,infinity)',
    B'00000000', B'', '-92233720368547758.08', 'text <b/> more', '', '(0,0)', '')`,
  `($ID, 0, 0, 0, 0, 0, 'NaN', 'NaN', 'plain', 'x', 'abcde', '\\x', NULL, '2000-02-29', '12:00', '12:00+00', '1970-01-01 00:00:00',
    '1999-12-31 23:59:59.5+00', '0', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', 'null', '{0}', '{"\\\\"}', '{{NULL}}', 'ok', 3,
    '{ok}', '0.0.0.0', '0.0.0.0/0', '00:00:00:00:00:00', '[-5,-5]', '(2024-01-01 00:00:00+00,2024-01-02 00:00:00+00]', B'11111111',
    B'0101010101010101010101', '0', '<?xml version="1.0"?><r/>', 'x:1', '(1e-300,-1e300)', 'z')`,
  `($ID, 1, 1, 1, 'Infinity', 0.001, '-0', '-0', 'NULL', 'NULL', 'NULL', '\\x5c4e', true, '2024-01-01', '00:00:00.000001',
    '01:02:03.456789-07:30', '2000-01-01 00:00:00.000001', '2000-01-01 00:00:00.000001+00', '-178000000 years',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '"\\u00e9 \\\\ \\n"', '"\\u00e9 \\\\ \\n"', '[0:2]={7,8,9}', '{NULL}', '{}', 'happy', 4,
    '{NULL}', '2001:db8::1/64', '2001:db8::/32', '01:23:45:67:89:ab', '(,)', '(,)', B'00000001', B'10', '1.5', '', 'ab:1,2,3 ''x y'':4',
    '(-0,1e-5)', 'z')`,
  `($ID, 2, 2, 2, '-Infinity', -0.0005, 3.4028235e38, 1e-300, repeat('é', 3), repeat('x', 20), 'é', '\\x000000', false, '4713-01-01 BC',
    '24:00:00', '24:00:00-12', '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00', '-0.000001 seconds',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', ' { "a" : [ ] } ', '{"a": "\\u00e9", "b": 1e2}', '{}', '{"x y","\\"",","}',
    '{{-1,-2,-3},{4,5,6}}', 'sad', 5, '{happy,happy}', '255.255.255.255/32', '192.168.0.0/16', '0a:0b:0c:0d:0e:0f', '[3,4)',
    '[2024-06-01 10:00:00.123456+00,2024-06-01 10:00:00.123457+00)', B'01010101', B'1111111111111111111111111111111111111111111',
    '-0.01', '<a><![CDATA[<x>]]></a>', 'b:1B c:2C d:3D', '(1.401298464324817e-45,3.4028234663852886e+38)', 'z')`,
  // a huge numeric and 1.4e-45 as a real, a long (TOASTed) text, and its own key change partner
  `($ID, 3, 3, 3, ('1' || repeat('0', 990) || '.' || repeat('9', 300))::numeric, NULL, 1.4e-45, -1e-300,
    (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 6000) i), NULL, NULL,
    (SELECT decode(string_agg(md5(i::text), ''), 'hex') FROM generate_series(1, 3000) i),
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, 'toast')`,
  // NULL in every nullable column
  `($ID, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, DEFAULT)`,
];

/** ~1000 generated rows: every column varies with i, and each nullable column is NULL in some rows. */
function generatedRowsSql(from: number, to: number): string {
  const n = (mod: number, expr: string) => `CASE WHEN i % ${mod} = 0 THEN NULL ELSE ${expr} END`;
  return `
  INSERT INTO public.types (${COLUMNS.join(', ')})
  SELECT i,
    ${n(11, `(i % 65536 - 32768)::smallint`)},
    ${n(13, `(i * 2654435761 % 4294967296 - 2147483648)::int`)},
    ${n(17, `(i::bigint * 922337203685477 - 4611686018427387904)`)},
    ${n(19, `(i::numeric * 1.000000000001 - 500) ^ 3`)},
    ${n(23, `round((i * 3.14159)::numeric, 3)`)},
    ${n(29, `(i * 1.1 - 500)::real / 7`)},
    ${n(31, `(i - 500)::float8 / 3 * 1e10`)},
    ${n(37, `'row ' || i || E'\\t' || repeat(chr(1000 + i % 200), i % 7) || E'\\n\\\\'`)},
    ${n(41, `left('v' || md5(i::text), 20)`)},
    ${n(43, `left(md5(i::text), i % 6)`)},
    ${n(47, `decode(lpad(to_hex(i), 8, '0') || '00', 'hex')`)},
    ${n(53, `i % 2 = 0`)},
    ${n(59, `date '2000-01-01' + (i * 37 - 20000)`)},
    ${n(61, `time '00:00' + i * interval '83.123457 seconds'`)},
    ${n(67, `(time '00:00' + i * interval '83.5 seconds')::timetz`)},
    ${n(71, `timestamp '2000-01-01' + i * interval '1 day 1.000001 second'`)},
    ${n(73, `timestamptz '2000-01-01 00:00:00+00' + i * interval '7 hours 0.000123 seconds'`)},
    ${n(79, `make_interval(months => i % 30 - 15, days => i % 40 - 20, secs => (i % 1000) / 1000000.0 - 0.0003)`)},
    ${n(83, `md5(i::text)::uuid`)},
    ${n(89, `('{"i": ' || i || ', "i": ' || -i || ',   "s": "' || repeat('x', i % 5) || '"}')::json`)},
    ${n(97, `jsonb_build_object('i', i, 'arr', jsonb_build_array(i, i::text, i % 2 = 0, NULL), 'f', i / 7.0)`)},
    ${n(101, `ARRAY[i, -i, NULL, i * 1000]`)},
    ${n(103, `ARRAY['e' || i, NULL, 'q"' || i, 'c,' || i, E'b\\\\' || i, '']`)},
    ${n(107, `ARRAY[ARRAY[i, i + 1], ARRAY[NULL, i + 3]]`)},
    ${n(109, `(enum_range(NULL::public.mood))[1 + i % 4]`)},
    ${n(113, `(i + 1)::extra.posint`)},
    ${n(127, `ARRAY[(enum_range(NULL::public.mood))[1 + i % 4], NULL, 'ok']::public.mood[]`)},
    ${n(131, `('10.' || (i % 256) || '.' || (i / 256) || '.1/' || (8 + i % 25))::inet`)},
    ${n(137, `('10.' || (i % 256) || '.0.0/16')::cidr`)},
    ${n(139, `('08:00:2b:' || lpad(to_hex(i % 256), 2, '0') || ':' || lpad(to_hex(i / 256), 2, '0') || ':0a')::macaddr`)},
    ${n(149, `CASE WHEN i % 5 = 0 THEN 'empty'::int4range ELSE int4range(i, i + i % 10 + 1) END`)},
    ${n(151, `CASE WHEN i % 6 = 0 THEN 'empty'::tstzrange ELSE tstzrange(timestamptz '2020-01-01 00:00:00.000001+00' + i * interval '1 hour', NULL) END`)},
    ${n(157, `(i % 256)::bit(8)`)},
    ${n(163, `substring((i::bit(32))::text from 1 + i % 30)::varbit`)},
    ${n(167, `(i * 12.34 - 5000)::numeric::money`)},
    ${n(173, `('<r i="' || i || '">' || repeat('&lt;', i % 3) || '</r>')::xml`)},
    ${n(179, `to_tsvector('simple', 'word' || i || ' other ' || (i % 7))`)},
    ${n(181, `point(i / 3.0, -i * 1e-7)`)},
    'gen ' || i
  FROM generate_series(${from}, ${to}) i`;
}


before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-duckdb-types-'));
  source = await startCluster({ name: 'duckdb-types-source', logical: false });
  await source.query(DDL);
  for (const [i, row] of EDGE_ROWS.entries()) {
    await source.query(`INSERT INTO public.types (${COLUMNS.join(', ')}) VALUES ${row.replace('$ID', String(i + 1))}`);
  }
  await source.query(generatedRowsSql(100, 1099));
  client = new pg.Client({ connectionString: source.url(), options: SESSION_OPTIONS });
  await client.connect();
});

after(async () => {
  await client?.end();
  await source?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** COPY text format, one line → values (\N null; backslash escapes undone). */
function copyTextRow(line: string): (string | null)[] {
  return line.split('\t').map((f) =>
    f === '\\N'
      ? null
      : f.replace(/\\(.)/g, (_, c: string) => ({ t: '\t', n: '\n', r: '\r', b: '\b', f: '\f', v: '\v' })[c] ?? c),
  );
}

async function copyOut(sql: string): Promise<(string | null)[][]> {
  const chunks: Buffer[] = [];
  const stream = client.query(copyTo(`COPY (${sql}) TO STDOUT`));
  for await (const c of stream) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? [] : text.replace(/\n$/, '').split('\n').map(copyTextRow);
}

/** Each row's values as each engine prints them, compared per DuckDB column type. */
async function assertEqualToSource(dbPath: string): Promise<number> {
  const instance = await DuckDBInstance.create(dbPath);
  const duck = await instance.connect();
  try {
    await duck.run(`SET TimeZone = 'UTC'`);
    const types = (await duck.runAndReadAll(`SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'main' AND table_name = 'types' ORDER BY ordinal_position`)).getRows() as [string, string][];
    assert.deepEqual(types.map((t) => t[0]), COLUMNS);
    const type = new Map(types);
    const pgExpr = (c: string) => {
      const t = type.get(c)!;
      if (t === 'INTERVAL')
        return `CASE WHEN ${c} IS NULL THEN NULL ELSE json_build_array((extract(year from ${c}) * 12 + extract(month from ${c}))::int, extract(day from ${c})::int,
                  ((extract(hour from ${c}) * 3600 + extract(minute from ${c}) * 60) * 1000000 + extract(microseconds from ${c}))::bigint::text)::text END`;
      if (c === 'c_money') return `${c}::numeric::text`;
      if (t === 'BOOLEAN') return `${c}::text`;
      // Instants as epoch microseconds: DuckDB's ICU text output of far-future TIMESTAMPTZ is off by a millisecond.
      if (t === 'TIMESTAMP WITH TIME ZONE') return `CASE WHEN isfinite(${c}) THEN (extract(epoch from ${c}) * 1000000)::bigint::text ELSE ${c}::text END`;
      return `CASE WHEN ${c} IS NULL THEN NULL ELSE concat(${c}) END`;
    };
    const duckExpr = (c: string) => {
      const t = type.get(c)!;
      if (t === 'FLOAT' || t === 'DOUBLE') return c;
      if (t === 'BLOB') return `'\\x' || lower(hex(${c}))`;
      if (t === 'INTERVAL') return c;
      if (t === 'TIMESTAMP WITH TIME ZONE') return `CASE WHEN isfinite(${c}) THEN CAST(epoch_us(${c}) AS VARCHAR) ELSE CAST(${c} AS VARCHAR) END`;
      return `CAST(${c} AS VARCHAR)`;
    };
    const pgRows = (await client.query({ text: `SELECT ${COLUMNS.map(pgExpr).join(', ')} FROM public.types ORDER BY id`, rowMode: 'array' })).rows as (string | null)[][];
    const duckRows = (await duck.runAndReadAll(`SELECT ${COLUMNS.map(duckExpr).join(', ')} FROM main.types ORDER BY id`)).getRowsJS();
    assert.equal(duckRows.length, pgRows.length, 'row count');
    let compared = 0;
    for (let r = 0; r < pgRows.length; r++) {
      for (let i = 0; i < COLUMNS.length; i++) {
        const c = COLUMNS[i];
        const t = type.get(c)!;
        const p = pgRows[r][i];
        let d = duckRows[r][i] as unknown;
        const where = `row id=${pgRows[r][0]} column ${c} (${t})`;
        if (p === null || d === null) {
          assert.equal(d, p, where);
          continue;
        }
        if (t === 'FLOAT') assert.ok(Object.is(d, Math.fround(Number(p))), `${where}: ${String(d)} vs ${p}`);
        else if (t === 'DOUBLE') assert.ok(Object.is(d, Number(p)), `${where}: ${String(d)} vs ${p}`);
        else if (t === 'INTERVAL') {
          // The three fields DuckDB keeps, as PostgreSQL does: months, days, microseconds.
          const v = d as { months: number; days: number; micros: bigint };
          assert.deepEqual([v.months, v.days, String(v.micros)], JSON.parse(p), where);
        } else {
          // DuckDB prints BC dates as "0044-03-15 (BC)" where PostgreSQL prints "0044-03-15 BC".
          if (t === 'DATE' || t === 'TIMESTAMP') d = (d as string).replace(/^(\d+-\d\d-\d\d) \(BC\)(.*)$/, '$1$2 BC');
          assert.equal(d, p, where);
        }
        compared++;
      }
    }
    return compared;
  } finally {
    duck.closeSync();
    instance.closeSync();
  }
}

test('every round-trip type is copied exactly: COPY text out, conversion, appender, one dedupe', { timeout: 120_000 }, async () => {
  const info = await introspectTable(client, { schema: 'public', name: 'types' });
  const shape: TableShape = { columns: duckColumns(info), key: info.primaryKey };
  const path = join(dir, 'types.duckdb');
  const file = await openDuckDb(path);
  const live = { schema: 'main', name: 'types' };
  const load = { schema: 'main', name: 'types__sluice_load' };
  try {
    await createTarget(file, live, shape);
    await createLoadTable(file, load, shape);
    // Row 5 holds timestamps past DuckDB's range: refused, naming the column, and nothing of its chunk stays.
    const tooLate = await copyOut(`SELECT ${COLUMNS.join(', ')} FROM public.types WHERE id = 5`);
    await assert.rejects(appendChunk(file, load, shape, tooLate, 1, async () => {}), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'UNSUPPORTED_TYPE');
      assert.match(err.message, /^column c_timestamp: value "294276-12-31 23:59:59\.999999" cannot be stored in DuckDB TIMESTAMP \(outside DuckDB TIMESTAMP range/);
      return true;
    });
    await source.query(`UPDATE public.types SET c_timestamp = '294247-01-10 04:00:54.775806', c_timestamptz = '294247-01-10 04:00:54.775806+00' WHERE id = 5`);
    // Chunks of 300 rows by key; the second range is read twice (a resume), with one row changed between the reads.
    const ids = (await client.query(`SELECT id FROM public.types ORDER BY id`)).rows.map((r) => Number(r.id));
    const bounds = [0, 300, 600, ids.length].map((i) => ids[Math.min(i, ids.length - 1)]);
    let seq = 0;
    const chunk = async (lo: number, hi: number) => {
      const rows = await copyOut(`SELECT ${COLUMNS.join(', ')} FROM public.types WHERE id >= ${lo} AND id < ${hi} ORDER BY id`);
      await appendChunk(file, load, shape, rows, ++seq, async () => {});
    };
    await chunk(bounds[0], bounds[1]);
    await chunk(bounds[1], bounds[2]);
    await source.query(`UPDATE public.types SET c_text = 'changed between the two reads' WHERE id = ${ids[400]}`);
    await chunk(bounds[1], bounds[2]);
    await chunk(bounds[2], ids[ids.length - 1] + 1);
    await finishLoad(file, 'truncate', load, live, shape, async () => {});
  } finally {
    file.close();
  }
  const compared = await assertEqualToSource(path);
  assert.ok(compared > 20_000, `compared ${compared} non-null values`);
});

test('a batch of every type through the MERGE: new rows, every column changed, to and from NULL, deletes', { timeout: 120_000 }, async () => {
  const info = await introspectTable(client, { schema: 'public', name: 'types' });
  const shape: TableShape = { columns: duckColumns(info), key: info.primaryKey };
  const path = join(dir, 'types.duckdb');
  // New edge rows, rows taking other rows' values (NULLs both ways), deletes: applied as one compacted batch.
  for (const [i, row] of EDGE_ROWS.entries()) {
    if (i !== 4) await source.query(`INSERT INTO public.types (${COLUMNS.join(', ')}) VALUES ${row.replace('$ID', String(5000 + i))}`);
  }
  const setAll = COLUMNS.filter((c) => c !== 'id').map((c) => `${c} = o.${c}`).join(', ');
  await source.query(`UPDATE public.types t SET ${setAll} FROM public.types o WHERE o.id = t.id + 337 AND t.id BETWEEN 100 AND 160`);
  await source.query(`UPDATE public.types t SET ${setAll} FROM public.types o WHERE o.id = t.id - 300 AND t.id BETWEEN 301 AND 304`);
  const deleted = (await source.query(`DELETE FROM public.types WHERE id % 9 = 0 AND id < 2000 RETURNING id::text`)).rows.map((r) => [r.id as string]);
  const images = await copyOut(`SELECT ${COLUMNS.join(', ')} FROM public.types WHERE id >= 5000 OR id BETWEEN 100 AND 160 OR id BETWEEN 301 AND 304`);
  const file = await openDuckDb(path);
  try {
    await applyBatch(file, { schema: 'main', name: 'types' }, shape, { upserts: images.map((row) => ({ row })), deletes: deleted }, null, async () => {});
  } finally {
    file.close();
  }
  await assertEqualToSource(path);
});

test('the cross-engine row hash: PostgreSQL and DuckDB give the same hash for every row and every type, and a one-ulp change shows', { timeout: 120_000 }, async () => {
  const info = await introspectTable(client, { schema: 'public', name: 'types' });
  const columns = duckColumns(info);
  const path = join(dir, 'types.duckdb');
  const pgHashes = (await client.query({ text: `SELECT id, ${postgresRowHashExpr(columns)} FROM public.types ORDER BY id`, rowMode: 'array' })).rows as [number, string][];
  const instance = await DuckDBInstance.create(path);
  const duck = await instance.connect();
  try {
    const duckHashes = (await duck.runAndReadAll(`SELECT id, ${duckdbRowHashExpr(columns)} FROM main.types ORDER BY id`)).getRowsJS() as [number, string][];
    assert.equal(duckHashes.length, pgHashes.length);
    const differing = pgHashes.filter(([id, h], i) => duckHashes[i][0] !== id || duckHashes[i][1] !== h).map(([id]) => id);
    assert.deepEqual(differing, [], 'rows whose hashes differ');
    // Each column on its own too, so that one column's agreement cannot hide in another's NULLs.
    for (const c of columns) {
      const p = (await client.query({ text: `SELECT string_agg(${postgresRowHashExpr([c])}, '' ORDER BY id) AS h FROM public.types` })).rows[0].h;
      const d = (await duck.runAndReadAll(`SELECT string_agg(${duckdbRowHashExpr([c])}, '' ORDER BY id) AS h FROM main.types`)).getRowsJS()[0][0];
      assert.equal(d, p, `column ${c.name}`);
    }
    const pgRange = (await client.query(`SELECT count(*)::int AS n, coalesce(md5(string_agg(${postgresRowHashExpr(columns)}, '' ORDER BY id)), md5('')) AS h FROM public.types`)).rows[0];
    const duckRange = (await duck.runAndReadAll(duckdbRangeHashSql({ schema: 'main', name: 'types' }, columns, ['id']))).getRowsJS()[0];
    assert.deepEqual([Number(duckRange[0]), duckRange[1]], [pgRange.n, pgRange.h]);
    // One value moved by one unit in the last place: that row's hash, and the range's, differ.
    await duck.run(`UPDATE main.types SET c_double = nextafter(c_double, 1e308) WHERE id = 200`);
    const after = (await duck.runAndReadAll(`SELECT id, ${duckdbRowHashExpr(columns)} FROM main.types ORDER BY id`)).getRowsJS() as [number, string][];
    assert.deepEqual(pgHashes.filter(([id, h], i) => after[i][0] !== id || after[i][1] !== h).map(([id]) => id), [200]);
    const changed = (await duck.runAndReadAll(duckdbRangeHashSql({ schema: 'main', name: 'types' }, columns, ['id']))).getRowsJS()[0];
    assert.notEqual(changed[1], pgRange.h);
  } finally {
    duck.closeSync();
    instance.closeSync();
  }
});
