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
import { COLUMNS, DDL, EDGE_ROWS, generatedRowsSql } from '../support/round-trip-types.js';

let source: Cluster;
let dir: string;
let client: pg.Client;

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
    // The DuckDB types of docs/configuration.md, "DuckDB destination: type mapping".
    assert.deepEqual(types.map((t) => t[1]).join(' '), [
      'INTEGER SMALLINT INTEGER BIGINT VARCHAR DECIMAL(12,3) FLOAT DOUBLE VARCHAR VARCHAR VARCHAR BLOB BOOLEAN DATE TIME',
      'TIME WITH TIME ZONE TIMESTAMP TIMESTAMP WITH TIME ZONE INTERVAL UUID JSON JSON VARCHAR VARCHAR VARCHAR',
      `ENUM('sad', 'ok', 'happy', 'very "happy", really') INTEGER VARCHAR VARCHAR VARCHAR VARCHAR VARCHAR VARCHAR BIT VARCHAR`,
      'DECIMAL(19,2) VARCHAR VARCHAR VARCHAR VARCHAR',
    ].join(' '));
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
