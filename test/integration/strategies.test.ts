/**
 * Backfill strategies (docs/architecture.md, "Backfill strategies"; contracts 3 and 4): the initial load of a
 * demo table (~100k rows) through `sluice run` with each strategy — keyset, interval with
 * parallelism 3, ctid with parallelism 3 — under a running write load. Each load is SIGKILLed
 * after a few chunks are committed and restarted (it resumes the same run); once the table streams
 * the load stops and the destination must equal the source (independent oracle).
 *
 * For interval and ctid: `_sluice.runs.strategy` names the strategy, and more than one chunk was in
 * flight at some moment (pg_stat_activity on the source, sampled during the load, shows more than
 * one active `COPY (SELECT …` of sluice's chunk workers). The ctid load runs beside an extra updater
 * that keeps moving rows to other pages, so some rows are read twice: the key build finds them and
 * the dedupe removes them (the log says how many: more than none), and the destination ends with its
 * primary key and equal to the source (no duplicate keys).
 *
 * A TOAST-heavy table (2,000 rows of 200 kB STORAGE EXTERNAL text: a small heap, a 400 MB TOAST)
 * loaded by ctid with chunkRows 100000 (and fixed chunk sizes) is still cut into several chunks of
 * at most 64 MiB.
 *
 * A ctid load misses a row whose update moves it to a page already read; when that update leaves a
 * TOASTed column out of its image, the replay has no destination value to keep: the column must
 * still arrive (a deterministic case: the load held by the throttle, room made on the first pages
 * with DELETE + VACUUM, a TOASTed row from a later page updated so that it lands there).
 *
 * Each case runs its own pipeline (own slot, publication, change log) on one pair of clusters.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createDemoTable, Workload } from '../../src/demo/workload.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

const ROWS = 100_000;
const CHUNK_ROWS = 4000;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
const workdirs: Workdir[] = [];
const runs: Running[] = [];
const workloads: Workload[] = [];
let failed = false;
const t0 = Date.now();
const note = (line: string) => console.log(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
});

after(async () => {
  for (const w of workloads) await w.stop().catch(() => undefined);
  for (const r of runs) {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      r.kill('SIGKILL');
      await r.exited(10_000).catch(() => undefined);
    }
  }
  await stopAll?.();
  for (const w of workdirs) {
    if (failed) note(`work directory kept: ${w.dir}`);
    else w.remove();
  }
});

function start(work: Workdir): Running {
  const r = spawnSluice(['run'], { config: work.config });
  runs.push(r);
  return r;
}

async function tableRow(pipeline: string, table: string): Promise<{ state: string; chunks_done: number; run_id: number | null } | undefined> {
  const r = await destination
    .query(`SELECT state, chunks_done::int AS chunks_done, run_id::int AS run_id FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [pipeline, table])
    .catch(() => ({ rows: [] }));
  return r.rows[0];
}

async function stateOf(work: Workdir, table: string): Promise<string | undefined> {
  const r = await sluice(['status', '--json'], { config: work.config, timeoutMs: 30_000 });
  if (r.code !== 0) return undefined;
  try {
    return (JSON.parse(r.stdout) as { tables: { name: string; state: string }[] }).tables.find((t) => t.name === table)?.state;
  } catch {
    return undefined;
  }
}

/**
 * Samples the source's pg_stat_activity until stopped: the most chunk COPYs of sluice's chunk
 * workers (application_name sluice-chunk) seen active at one moment.
 */
function concurrencySampler(): { stop(): Promise<number> } {
  let stopped = false;
  let max = 0;
  const done = (async () => {
    const c = new pg.Client({ connectionString: source.url() });
    c.on('error', () => undefined);
    await c.connect();
    try {
      while (!stopped) {
        const r = await c.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE application_name = 'sluice-chunk' AND state = 'active' AND query LIKE 'COPY (SELECT%'`,
        );
        max = Math.max(max, r.rows[0].n);
        await new Promise((res) => setTimeout(res, 5));
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done.catch(() => undefined);
      return max;
    },
  };
}

/**
 * Keeps rewriting ranges of rows (every column left as it is, but a new row version each time):
 * on full heap pages the new versions land on other pages, so a ctid load meets rows twice.
 */
function heavyUpdater(table: string): { stop(): Promise<number> } {
  let stopped = false;
  let updated = 0;
  const done = (async () => {
    const c = new pg.Client({ connectionString: source.url() });
    c.on('error', () => undefined);
    await c.connect();
    try {
      while (!stopped) {
        const lo = 1 + Math.floor(Math.random() * (ROWS - 200));
        const r = await c.query(`UPDATE ${table} SET customer_id = customer_id WHERE id BETWEEN $1 AND $1 + 199`, [lo]).catch(() => null);
        updated += r?.rowCount ?? 0;
        // ~4,000 row versions a second: heavy for the load, and the replay still keeps up
        await new Promise((res) => setTimeout(res, 50));
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done.catch(() => undefined);
      return updated;
    },
  };
}

async function eventuallyEqual(table: string, run: Running, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await assertTablesEqual(source.url(), destination.url(), table);
      return;
    } catch (err) {
      if (run.child.exitCode !== null) throw new Error(`sluice run exited (${run.child.exitCode}):\n${run.output().slice(-5000)}`);
      if (Date.now() > deadline) {
        (err as Error).message += `\n--- sluice output (tail):\n${run.output().slice(-5000)}`;
        throw err;
      }
      await new Promise((res) => setTimeout(res, 500));
    }
  }
}

const CASES = [
  { strategy: 'keyset', parallelism: 1 },
  { strategy: 'interval', parallelism: 3 },
  { strategy: 'ctid', parallelism: 3 },
] as const;

for (const { strategy, parallelism } of CASES) {
  test(`strategy ${strategy}${parallelism > 1 ? ` with parallelism ${parallelism}` : ''}: SIGKILL in the middle of the load, restart, equal under write load`, { timeout: 120_000 }, async () => {
    const table = `public.orders_${strategy}`;
    const pipeline = `st_${strategy}`;
    const started = Date.now();
    await createDemoTable(source.url(), { table, rows: ROWS });
    note(`${strategy}: createDemoTable(${ROWS}) took ${Date.now() - started} ms`);
    const work = makeWorkdir({
      sourceUrl: source.url(),
      destinationUrl: destination.url(),
      pipeline,
      tables: [{ name: table, strategy, parallelism: parallelism > 1 ? parallelism : undefined, chunkRows: CHUNK_ROWS, chunkSeconds: 0 }],
    });
    workdirs.push(work);

    const workload = new Workload(source.url(), { table, ratePerSecond: 400 });
    workloads.push(workload);
    workload.start();
    const updater = strategy === 'ctid' ? heavyUpdater(table) : null;
    const sampler = concurrencySampler();
    try {
      // 1. The first process: killed after a few chunks are committed, in the middle of the load.
      let run = start(work);
      await waitUntil(
        `more than 2 chunks of ${table} committed`,
        async () => {
          if (run.child.exitCode !== null) throw new Error(`sluice run exited (${run.child.exitCode}):\n${run.output()}`);
          return ((await tableRow(pipeline, table))?.chunks_done ?? 0) > 2;
        },
        60_000,
        20,
      );
      run.kill('SIGKILL');
      const killed = await run.exited(10_000);
      assert.equal(killed.signal, 'SIGKILL');
      const atKill = await tableRow(pipeline, table);
      note(`${strategy}: SIGKILL with ${atKill?.chunks_done} chunks committed (state ${atKill?.state})`);
      assert.equal(atKill?.state, 'backfilling', 'the kill landed in the middle of the load');
      if (parallelism > 1) {
        const c = await destination.query(`SELECT count(*)::int AS n FROM _sluice.chunks WHERE pipeline = $1 AND run_id = $2`, [pipeline, atKill!.run_id]);
        assert.ok(c.rows[0].n > 2 && c.rows[0].n < ROWS / CHUNK_ROWS, `chunks committed at the kill: ${c.rows[0].n}`);
      }

      // 2. The restart resumes the same run and finishes it; the table streams.
      run = start(work);
      await run.waitForOutput(/resuming backfill/, 60_000);
      const final = run;
      let moved = 0;
      if (updater) {
        // The rewrites matter while chunks are read; afterwards they would only lengthen the replay.
        await final.waitForOutput(/backfill copied; replaying/, 90_000);
        moved = await updater.stop();
      }
      await waitUntil(
        `${table} to stream`,
        async () => {
          if (final.child.exitCode !== null) throw new Error(`sluice run exited (${final.child.exitCode}):\n${final.output()}`);
          return /table caught up; streaming/.test(final.output()) && (await stateOf(work, table)) === 'streaming';
        },
        90_000,
        300,
      );
      const maxInFlight = await sampler.stop();
      note(`${strategy}: streaming after ${((Date.now() - started) / 1000).toFixed(1)} s; at most ${maxInFlight} chunk COPYs in flight at once`);
      await new Promise((res) => setTimeout(res, 1500));
      await workload.stop();
      note(`${strategy}: workload ${JSON.stringify(workload.stats)}${moved ? `; heavy updater rewrote ${moved} rows` : ''}`);
      assert.ok(workload.stats.inserts > 0 && workload.stats.updates > 0 && workload.stats.deletes > 0, 'the load wrote');

      await eventuallyEqual(table, final);
      note(`${strategy}: destination equals source`);

      // The audit row: one run (resumed, not restarted) with the strategy and parallelism asked for.
      const audit = await destination.query(
        `SELECT strategy, params->>'parallelism' AS parallelism, chunks::int AS chunks, status FROM _sluice.runs WHERE pipeline = $1 ORDER BY id`,
        [pipeline],
      );
      assert.equal(audit.rowCount, 1, `runs: ${JSON.stringify(audit.rows)}`);
      assert.equal(audit.rows[0].strategy, strategy);
      assert.equal(Number(audit.rows[0].parallelism), parallelism);
      assert.ok(audit.rows[0].chunks >= 3, `chunks ${audit.rows[0].chunks}`);
      if (parallelism > 1) {
        assert.ok(maxInFlight > 1, `more than one chunk in flight at some moment (saw at most ${maxInFlight})`);
      }
      if (strategy === 'ctid') {
        const pk = await destination.query(
          `SELECT count(*)::int AS n FROM pg_index WHERE indrelid = $1::regclass AND indisprimary`,
          [table],
        );
        assert.equal(pk.rows[0].n, 1, 'the destination table has its primary key after a ctid load');
        const dup = await destination.query(`SELECT count(*) - count(DISTINCT id) AS d FROM ${table}`);
        assert.equal(Number(dup.rows[0].d), 0, 'no duplicate keys');
        // The updater moved rows to pages read later, so some rows were really read twice: the key
        // build met them (it failed at first) and the dedupe removed them. The oracle above says
        // that what is left is exactly the source.
        const dedupe = /ctid load deduplicated[^\n]*/.exec(final.output());
        assert.ok(dedupe, 'the ctid load was deduplicated');
        note(`${strategy}: ${dedupe[0].slice(0, 200)}`);
        const removed = Number(/duplicatesRemoved=(\d+)/.exec(dedupe[0])?.[1] ?? NaN);
        assert.ok(removed > 0, `rows read twice were removed (${dedupe[0]})`);
        assert.match(dedupe[0], /keyBuiltAtFirstTry=false/);
      }

      final.kill('SIGTERM');
      const stopped = await final.exited(30_000);
      assert.equal(stopped.code, 0, `exit code after SIGTERM:\n${(stopped.stdout + stopped.stderr).slice(-3000)}`);
    } catch (err) {
      failed = true;
      const last = runs[runs.length - 1];
      if (last) (err as Error).message += `\n--- sluice output (tail):\n${last.output().slice(-6000)}`;
      throw err;
    } finally {
      await sampler.stop();
      await updater?.stop();
      await workload.stop();
    }
  });
}

test('ctid on a TOAST-heavy table (small heap, 400 MB of TOAST) is cut into several chunks of at most 64 MiB', { timeout: 150_000 }, async () => {
  const table = 'public.blobs';
  const pipeline = 'st_toast';
  let started = Date.now();
  await source.query(`
    CREATE TABLE ${table} (id int PRIMARY KEY, body text);
    ALTER TABLE ${table} ALTER COLUMN body SET STORAGE EXTERNAL;
    INSERT INTO ${table} SELECT i, repeat(md5(i::text), 6250) FROM generate_series(1, 2000) i;
  `);
  const size = (
    await source.query(
      `SELECT pg_relation_size(c.oid)::float8 AS heap, pg_total_relation_size(c.reltoastrelid)::float8 AS toast FROM pg_class c WHERE c.oid = $1::regclass`,
      [table],
    )
  ).rows[0];
  note(`toast: table created in ${Date.now() - started} ms: heap ${(size.heap / 1024).toFixed(0)} kB, TOAST ${(size.toast / 1024 / 1024).toFixed(0)} MB`);
  assert.ok(size.toast > 300 * 1024 * 1024 && size.heap < 1024 * 1024, 'a small heap and a big TOAST');

  const work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline,
    tables: [{ name: table, strategy: 'ctid', parallelism: 3, chunkRows: 100_000, chunkSeconds: 0 }],
  });
  workdirs.push(work);
  started = Date.now();
  const run = start(work);
  try {
    await run.waitForOutput(/table caught up; streaming/, 120_000);
    note(`toast: loaded and streaming in ${Date.now() - started} ms`);
    const chunks = await destination.query(
      `SELECT c.lo, c.hi, c.rows::int AS rows FROM _sluice.chunks c JOIN _sluice.runs r ON r.id = c.run_id
        WHERE c.pipeline = $1 AND r.strategy = 'ctid' ORDER BY c.lo::int`,
      [pipeline],
    );
    note(`toast: ${chunks.rowCount} chunks: ${chunks.rows.map((c) => `[${c.lo},${c.hi ?? '∞'}):${c.rows}`).join(' ')}`);
    assert.ok((chunks.rowCount ?? 0) >= 4, `a 400 MB TOAST is read in at least 4 chunks, got ${chunks.rowCount}`);
    // No chunk carries much more than 64 MiB: at 200 kB a row, ≤ ~330 rows (some slack for the estimate).
    for (const c of chunks.rows) assert.ok(c.rows <= 400, `chunk [${c.lo},${c.hi}) has ${c.rows} rows (${((c.rows * 200_000) / 1024 / 1024).toFixed(0)} MB)`);
    await assertTablesEqual(source.url(), destination.url(), table);
    run.kill('SIGTERM');
    const r = await run.exited(30_000);
    assert.equal(r.code, 0, (r.stdout + r.stderr).slice(-3000));
  } catch (err) {
    failed = true;
    (err as Error).message += `\n--- sluice output (tail):\n${run.output().slice(-4000)}`;
    throw err;
  }
});

test('ctid: a row that an update moves to a page already read, leaving its TOASTed column out of the image, keeps that column', { timeout: 90_000 }, async () => {
  const table = 'public.moved';
  const pipeline = 'st_moved';
  // Full pages (no room for a new row version on its own page), autovacuum off (the FSM changes only when we say).
  await source.query(`
    CREATE TABLE ${table} (id int PRIMARY KEY, n int NOT NULL, pad text, note text) WITH (autovacuum_enabled = off);
    ALTER TABLE ${table} ALTER COLUMN note SET STORAGE EXTERNAL, ALTER COLUMN pad SET STORAGE PLAIN;
    INSERT INTO ${table} SELECT i, 0, repeat('p', 200), CASE WHEN i % 100 = 0 THEN repeat(md5(i::text), 100) END FROM generate_series(1, 20000) i;
    CREATE TABLE public.moved_flag (id int);
  `);
  const perPage = (await source.query(`SELECT count(*)::int AS n FROM ${table} WHERE ctid < '(1,0)'::tid`)).rows[0].n as number;
  await source.query(`INSERT INTO ${table} SELECT i, 0, repeat('p', 200), NULL FROM generate_series(20001, 20000 + ${(perPage - (20000 % perPage)) % perPage}) i`);
  await source.query(`VACUUM ANALYZE ${table}`);

  const work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline,
    tables: [{ name: table, strategy: 'ctid', parallelism: 1, chunkRows: 1000, chunkSeconds: 0 }],
    extra: 'throttle: { maxRowsPerSecond: 3000, query: "SELECT count(*) FROM public.moved_flag" }',
  });
  workdirs.push(work);
  const run = start(work);
  try {
    await waitUntil('two chunks committed', async () => {
      const r = await destination.query(`SELECT count(*)::int AS n FROM _sluice.chunks WHERE pipeline = $1`, [pipeline]).catch(() => null);
      return (r?.rows[0].n ?? 0) >= 2;
    }, 60_000, 50);
    // Hold the load (no chunk in flight, so VACUUM can free the pages already read).
    await source.query(`INSERT INTO public.moved_flag VALUES (1)`);
    await waitUntil('the throttle to hold the load', async () => {
      const r = await sluice(['status', '--json'], { config: work.config });
      return /throttle query returned 1/.test(JSON.parse(r.stdout).pipeline.throttle?.state ?? '');
    }, 20_000, 200);
    await new Promise((res) => setTimeout(res, 500));
    const read = (await destination.query(`SELECT max(hi::int) AS hi FROM _sluice.chunks WHERE pipeline = $1`, [pipeline])).rows[0].hi as number;

    // Room on the first pages (already read), then a TOASTed row from a page not read yet gets a
    // bigger pad, note untouched: its new version lands on page 0..2, its old one is dead.
    await source.query(`DELETE FROM ${table} WHERE ctid < '(3,0)'::tid`);
    await source.query(`VACUUM (INDEX_CLEANUP ON) ${table}`);
    const row = (await source.query(`SELECT id FROM ${table} WHERE note IS NOT NULL AND ctid > $1::tid LIMIT 1`, [`(${read + 50},0)`])).rows[0].id as number;
    await source.query(`UPDATE ${table} SET n = n + 1, pad = repeat('q', 7000) WHERE id = $1`, [row]);
    const page = Number(/^\((\d+),/.exec((await source.query(`SELECT ctid::text AS c FROM ${table} WHERE id = $1`, [row])).rows[0].c)![1]);
    note(`moved: chunks read pages [0,${read}); row ${row} moved to page ${page}`);
    assert.ok(page < read, `the new row version is on a page already read (page ${page})`);

    await source.query(`DELETE FROM public.moved_flag`);
    const lifted = await sluice(['throttle', '--max-rows-per-second', '0'], { config: work.config });
    assert.equal(lifted.code, 0, lifted.stderr);
    await run.waitForOutput(/table caught up; streaming/, 60_000);
    // "Caught up" is with the change log; on a loaded machine capture may still be a moment behind the source.
    await eventuallyEqual(table, run, 30_000);
    const dst = (await destination.query(`SELECT n, note IS NOT NULL AS has_note FROM ${table} WHERE id = $1`, [row])).rows[0];
    assert.deepEqual(dst, { n: 1, has_note: true });
    run.kill('SIGTERM');
    const r = await run.exited(30_000);
    assert.equal(r.code, 0, (r.stdout + r.stderr).slice(-3000));
  } catch (err) {
    failed = true;
    (err as Error).message += `\n--- sluice output (tail):\n${run.output().slice(-4000)}`;
    throw err;
  }
});
