/**
 * `sluice run` from a real PostgreSQL source into a DuckDB file: the first (online) backfill, then
 * inserts, updates, deletes, key changes, an update leaving a TOASTed value out, a TRUNCATE and an
 * added column, across clean stops and a SIGKILL mid-run; a second writer of the same file gets exit 2.
 *
 * DuckDB lets one process open the file, so the oracle reads it while sluice is stopped: each check
 * runs sluice for a while, stops it, and compares. The oracle reads both sides with plain SQL, each
 * engine computing its own text forms (timestamps as epoch microseconds), and compares the row
 * images in Node: no sluice code.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import pg from 'pg';
import { startCluster, type Cluster } from '../support/clusters.js';
import { killIfRunning, sluice, spawnSluice, type Running } from '../support/sluice.js';

const COLUMNS = ['id', 'name', 'body', 'price', 'at', 'tags', 'data'];

let dir: string;
let path: string;
let config: string;
let source: Cluster;
let src: pg.Client;
let running: Running | undefined;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-duckdb-pipeline-'));
  path = join(dir, 'analytics.duckdb');
  source = await startCluster({ name: 'duckdb-pipeline-source' });
  src = new pg.Client({ connectionString: source.url() });
  await src.connect();
  await src.query(`CREATE TABLE public.items (
    id int PRIMARY KEY, name text NOT NULL, body text, price numeric(10,2), at timestamptz, tags text[], data jsonb)`);
  await src.query(`INSERT INTO public.items
    SELECT g, 'item ' || g, CASE WHEN g % 100 = 0 THEN repeat(md5(g::text), 400) ELSE 'b' || g END, g * 1.25,
           timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour 0.000123 second', ARRAY['t' || g, 'x y'], jsonb_build_object('g', g)
      FROM generate_series(1, 3000) g`);
  config = join(dir, 'sluice.yaml');
  writeFileSync(
    config,
    `pipeline: { name: duck, heartbeatIntervalMs: 1000 }
source: { type: postgres, url: "${source.url()}" }
destination: { type: duckdb, path: "${path}", schema: main }
log: { type: embedded, path: "${join(dir, 'log')}" }
tables:
  - { name: public.items, chunkRows: 400 }
`,
  );
});

after(async () => {
  await killIfRunning(running);
  await src?.end().catch(() => {});
  await source?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function sourceRows(columns: string[]): Promise<string[]> {
  const sel = columns.map((c) => (c === 'at' ? `(extract(epoch FROM t.at) * 1000000)::bigint::text` : `t.${c}::text`)).join(', ');
  const r = await src.query({ text: `SELECT ${sel} FROM public.items AS t ORDER BY t.id`, rowMode: 'array' });
  return r.rows.map((row) => JSON.stringify(row));
}

async function duckRows(columns: string[]): Promise<string[]> {
  const db = await DuckDBInstance.create(path, { access_mode: 'READ_ONLY' });
  const c = await db.connect();
  try {
    const sel = columns.map((col) => (col === 'at' ? `CAST(epoch_us(t."at") AS VARCHAR)` : `CAST(t."${col}" AS VARCHAR)`)).join(', ');
    const r = await c.runAndReadAll(`SELECT ${sel} FROM main.items AS t ORDER BY t.id`);
    return (r.getRowsJS() as unknown[][]).map((row) => JSON.stringify(row));
  } finally {
    c.closeSync();
    db.closeSync();
  }
}

/** Which keys differ and how (at most 10), for a readable failure. */
function differences(actual: string[], expected: string[]): string[] {
  const byKey = (rows: string[]) => new Map(rows.map((r) => [JSON.parse(r)[0] as string, JSON.parse(r) as unknown[]]));
  const a = byKey(actual);
  const e = byKey(expected);
  const out: string[] = [];
  for (const [k, row] of e) {
    const got = a.get(k);
    if (!got) out.push(`${k}: missing`);
    else row.forEach((v, i) => v !== got[i] && out.push(`${k}.${i}: ${JSON.stringify(got[i])?.slice(0, 50)} ≠ ${JSON.stringify(v)?.slice(0, 50)}`));
  }
  for (const k of a.keys()) if (!e.has(k)) out.push(`${k}: not in the source`);
  if (out.length === 0 && actual.join() !== expected.join()) out.push('same rows, another order');
  return out.slice(0, 10);
}

/** Runs sluice until the destination equals the source (stopping it to look), at most `rounds` times. */
async function settle(what: string, columns = COLUMNS, rounds = 8): Promise<void> {
  let diff: string[] = [];
  let output = '';
  for (let i = 0; i < rounds; i++) {
    running = spawnSluice(['run'], { config });
    await running.waitForOutput(/pipeline running/, 60_000);
    await new Promise((r) => setTimeout(r, 1500 + i * 500));
    running.kill('SIGTERM');
    const r = await running.exited(30_000);
    assert.equal(r.code, 0, `sluice run stopped with ${r.code}:\n${r.stdout}${r.stderr}`);
    output = r.stdout + r.stderr;
    const have = await duckRows(columns).catch((e: Error) => e);
    diff = have instanceof Error ? [`cannot read the table: ${have.message}`] : differences(have, await sourceRows(columns));
    if (diff.length === 0) return;
  }
  assert.deepEqual(diff, [], `${what}; the last run printed:\n${output}`);
}

test('sluice run PostgreSQL → DuckDB: online backfill, then changes of every kind, across clean stops and a crash', async () => {
  await settle('after the backfill');

  await src.query(`UPDATE public.items SET price = 999.99, name = 'changed' WHERE id % 7 = 0`);
  await src.query(`DELETE FROM public.items WHERE id % 11 = 0`);
  await src.query(`INSERT INTO public.items (id, name, data) SELECT g, 'new ' || g, '{"n": [1, 2]}' FROM generate_series(3001, 3100) g`);
  await src.query(`UPDATE public.items SET id = id + 100000 WHERE id BETWEEN 10 AND 19`);
  // An update that leaves the TOASTed body out of the change: the destination keeps its value.
  await src.query(`UPDATE public.items SET name = 'toast kept' WHERE id IN (200, 300, 400)`);
  await settle('after inserts, updates, deletes, key changes and a TOAST update');

  // A SIGKILL while changes stream, then a resume.
  running = spawnSluice(['run'], { config });
  await running.waitForOutput(/pipeline running/, 60_000);
  await src.query(`UPDATE public.items SET tags = ARRAY['after', 'kill'] WHERE id < 500`);
  await new Promise((r) => setTimeout(r, 300));
  running.kill('SIGKILL');
  await running.exited(10_000);
  await settle('after a SIGKILL and a resume');

  await src.query(`TRUNCATE public.items`);
  await src.query(`INSERT INTO public.items (id, name) SELECT g, 'after truncate ' || g FROM generate_series(1, 50) g`);
  await src.query(`ALTER TABLE public.items ADD COLUMN extra text DEFAULT 'seven'`);
  await src.query(`UPDATE public.items SET extra = 'set ' || id WHERE id <= 5`);
  await settle('after a TRUNCATE and an added column', [...COLUMNS, 'extra']);

  // No run holds the file: status opens it and reads the table's state.
  const status = await sluice(['status', '--json'], { config, timeoutMs: 60_000 });
  assert.equal(status.code, 0, status.stdout + status.stderr);
  const s = JSON.parse(status.stdout);
  assert.equal(s.pipeline.running, false);
  assert.deepEqual(
    s.tables.map((t: { name: string; state: string; mode: string }) => [t.name, t.state, t.mode]),
    [['public.items', 'streaming', 'online']],
  );

  // verify: the same ranges hashed by both engines; equal, then a row changed in the file by hand is found.
  const equal = await sluice(['verify', 'public.items', '--json', '--range-rows', '20'], { config, timeoutMs: 60_000 });
  assert.equal(equal.code, 0, equal.stdout + equal.stderr);
  const v = JSON.parse(equal.stdout).tables[0];
  assert.deepEqual([v.equal, v.sourceRows, v.destinationRows, v.ranges > 1], [true, 50, 50, true]);
  const db = await DuckDBInstance.create(path);
  const c = await db.connect();
  await c.run(`UPDATE main.items SET name = 'edited by hand' WHERE id = 33`);
  c.closeSync();
  db.closeSync();
  const differs = await sluice(['verify', 'public.items', '--json', '--range-rows', '20', '--attempts', '1'], { config, timeoutMs: 60_000 });
  assert.equal(differs.code, 1, differs.stdout + differs.stderr);
  const d = JSON.parse(differs.stdout).tables[0];
  assert.deepEqual([d.equal, d.rangesDiffering], [false, 1]);
});

test('a SIGKILL at each crash point of a DuckDB load (a chunk, the dedupe, the replay, before and in the swap) resumes to the source', async (t) => {
  // A table and a pipeline of their own, so the first load runs here; a writer keeps changing it.
  await src.query(`CREATE TABLE public.events (id int PRIMARY KEY, kind text, n int, at timestamptz DEFAULT now())`);
  await src.query(`INSERT INTO public.events (id, kind, n) SELECT g, 'k' || (g % 5), g FROM generate_series(1, 4000) g`);
  const crashConfig = join(dir, 'crash.yaml');
  const crashPath = join(dir, 'crash.duckdb');
  writeFileSync(
    crashConfig,
    `pipeline: { name: crash, heartbeatIntervalMs: 1000 }
source: { type: postgres, url: "${source.url()}" }
destination: { type: duckdb, path: "${crashPath}", schema: main }
log: { type: embedded, path: "${join(dir, 'crash-log')}" }
tables:
  - { name: public.events, chunkRows: 300 }
`,
  );
  let writing = true;
  let next = 5000;
  const writer = (async () => {
    while (writing) {
      await src.query(`UPDATE public.events SET n = n + 1 WHERE id = $1`, [1 + Math.floor(Math.random() * 4000)]);
      await src.query(`INSERT INTO public.events (id, kind, n) VALUES ($1, 'new', 0)`, [next++]);
      await src.query(`DELETE FROM public.events WHERE id = $1`, [1 + Math.floor(Math.random() * 4000)]);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const reached: string[] = [];
  try {
    for (const point of ['duckdb:chunk', 'duckdb:chunk', 'duckdb:dedupe', 'replay:batch', 'online:before-swap', 'online:in-swap']) {
      const run = spawnSluice(['run'], { config: crashConfig, env: { SLUICE_CRASH_AT: point } });
      running = run;
      const r = await Promise.race([run.exited(30_000), new Promise<null>((res) => setTimeout(() => res(null), 20_000))]);
      if (r === null) {
        // Past that point already (the load resumed beyond it): stop and go on.
        run.kill('SIGTERM');
        await run.exited(30_000);
      } else {
        assert.equal(r.signal, 'SIGKILL', `${point}: ${r.stdout}${r.stderr}`);
        reached.push(point);
      }
    }
  } finally {
    writing = false;
    await writer;
  }
  t.diagnostic(`crash points reached: ${reached.join(', ')}`);
  assert.ok(reached.includes('duckdb:chunk') && reached.includes('duckdb:dedupe'), `crash points reached: ${reached.join(', ')}`);

  // Resumed to the end: the file equals the source.
  let diff: string[] = [];
  for (let i = 0; i < 8 && (i === 0 || diff.length > 0); i++) {
    running = spawnSluice(['run'], { config: crashConfig });
    await running.waitForOutput(/pipeline running/, 60_000);
    await new Promise((r) => setTimeout(r, 2000 + i * 500));
    running.kill('SIGTERM');
    await running.exited(30_000);
    const db = await DuckDBInstance.create(crashPath, { access_mode: 'READ_ONLY' });
    const c = await db.connect();
    try {
      const d = await c.runAndReadAll(`SELECT CAST(t.id AS VARCHAR), t.kind, CAST(t.n AS VARCHAR), CAST(epoch_us(t."at") AS VARCHAR) FROM main.events AS t ORDER BY t.id`);
      const s = await src.query({ text: `SELECT t.id::text, t.kind, t.n::text, (extract(epoch FROM t.at) * 1000000)::bigint::text FROM public.events AS t ORDER BY t.id`, rowMode: 'array' });
      diff = differences((d.getRowsJS() as unknown[][]).map((x) => JSON.stringify(x)), s.rows.map((x) => JSON.stringify(x)));
    } finally {
      c.closeSync();
      db.closeSync();
    }
  }
  assert.deepEqual(diff, [], `after the crashes (reached ${reached.join(', ')})`);
});

test('a table DuckDB cannot carry stops sluice run before anything loads (exit 2, naming the fix)', async () => {
  await src.query(`CREATE TABLE public.cased (id int PRIMARY KEY, "Amount" int, amount int)`);
  const refusedConfig = join(dir, 'refused.yaml');
  const refusedPath = join(dir, 'refused.duckdb');
  writeFileSync(
    refusedConfig,
    `pipeline: { name: refused }
source: { type: postgres, url: "${source.url()}" }
destination: { type: duckdb, path: "${refusedPath}" }
log: { type: embedded, path: "${join(dir, 'refused-log')}" }
tables:
  - { name: public.cased }
`,
  );
  const r = await sluice(['run'], { config: refusedConfig, timeoutMs: 60_000 });
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /columns "Amount" and "amount" differ only in case.*rename one of them on the source, or exclude the table/);
  const db = await DuckDBInstance.create(refusedPath, { access_mode: 'READ_ONLY' });
  const c = await db.connect();
  try {
    assert.deepEqual((await c.runAndReadAll(`SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main'`)).getRowsJS(), [[0n]]);
  } finally {
    c.closeSync();
    db.closeSync();
  }
});

test('a second writer of the DuckDB file gets exit 2 naming the process that holds it', async () => {
  running = spawnSluice(['run'], { config });
  await running.waitForOutput(/pipeline running/, 60_000);
  try {
    const second = await sluice(['run'], { config, timeoutMs: 60_000 });
    assert.equal(second.code, 2, second.stdout + second.stderr);
    assert.match(second.stdout + second.stderr, new RegExp(`DuckDB file .*analytics\\.duckdb is in use by process ${running.child.pid}`));
    // status cannot open the file either: it says who runs the pipeline.
    const status = await sluice(['status', '--json'], { config, timeoutMs: 60_000 });
    assert.equal(status.code, 0, status.stdout + status.stderr);
    const s = JSON.parse(status.stdout);
    assert.deepEqual([s.pipeline.running, s.pipeline.pid], [true, running.child.pid]);
    assert.match(s.pipeline.stateNote, /held by process/);
  } finally {
    running.kill('SIGTERM');
    await running.exited(30_000);
  }
});
