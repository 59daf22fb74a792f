/**
 * `sluice rollback`: the table an online backfill replaced comes back, brought current by replaying
 * the changes since its swap, and swapped in under the swap's lock rules, while the source keeps
 * writing and a reader keeps probing the destination table.
 *
 * Oracle: the destination's live table is, physically, the archived one (its pg_class oid), and its
 * rows equal the source's by the plain-SQL checksum of test/support/oracle.ts (so every change made
 * since the swap reached it); the reader never failed and never found the table empty. The rollback
 * is itself rolled back (the table it replaced was archived with a position of its own), and a table
 * without an archive is refused with exit 2 before anything is recorded.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startClusters, type Cluster } from '../support/clusters.js';
import { eventuallyEqual, killIfRunning, makeWorkdir, sluice, spawnSluice, type Running, type Workdir } from '../support/sluice.js';

const TABLE = 'public.items';
const OTHER = 'public.other';
const PIPELINE = 'rb';
const ROWS = 20_000;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await source.query(
    `CREATE TABLE ${TABLE} (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL);
     INSERT INTO ${TABLE} SELECT i, 'v' || i, i % 17 FROM generate_series(1, ${ROWS}) i;
     CREATE TABLE ${OTHER} (id int PRIMARY KEY, v text);
     INSERT INTO ${OTHER} SELECT i, 'o' || i FROM generate_series(1, 100) i`,
  );
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline: PIPELINE,
    tables: [{ name: TABLE, chunkRows: 5000 }, { name: OTHER }],
  });
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 90_000);
  await eventuallyEqual(source.url(), destination.url(), TABLE, { run, timeoutMs: 60_000 });
  await eventuallyEqual(source.url(), destination.url(), OTHER, { run, timeoutMs: 60_000 });
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  work?.remove();
});

/** Runs `step` on its own connection to `url` every `everyMs` until stopped; returns how many times it ran. */
function loop(url: string, everyMs: number, step: (c: pg.Client, i: number) => Promise<void>): { stop: () => Promise<number> } {
  let stopped = false;
  let runs = 0;
  const done = (async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      for (; !stopped; runs++) {
        await step(c, runs);
        await new Promise((r) => setTimeout(r, everyMs));
      }
    } finally {
      await c.end();
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
      return runs;
    },
  };
}

/** Inserts, updates and deletes on the source, each its own transaction, until stopped. */
function writer(): { stop: () => Promise<number> } {
  return loop(source.url(), 5, async (c, i) => {
    const id = 1 + Math.floor(Math.random() * ROWS);
    await c.query(`INSERT INTO ${TABLE} VALUES ($1, 'new', 1)`, [ROWS + 1_000_000 + i]);
    await c.query(`UPDATE ${TABLE} SET v = v || '+', n = n + 1 WHERE id = $1`, [id]);
    if (i % 5 === 0) await c.query(`DELETE FROM ${TABLE} WHERE id = $1`, [id + 7 > ROWS ? id : id + 7]);
  });
}

/** Counts the destination table every 20 ms; records failures and the smallest count seen. */
function prober(): { stop: () => Promise<{ probes: number; errors: string[]; min: number }> } {
  let min = Number.MAX_SAFE_INTEGER;
  const errors: string[] = [];
  const l = loop(destination.url(), 20, async (c) => {
    try {
      min = Math.min(min, (await c.query(`SELECT count(*)::int AS n FROM ${TABLE}`)).rows[0].n as number);
    } catch (err) {
      errors.push((err as Error).message);
    }
  });
  return { stop: async () => ({ probes: await l.stop(), errors, min }) };
}

async function oid(name: string): Promise<number | null> {
  const r = await destination.query(`SELECT to_regclass($1)::oid::int AS oid`, [name]);
  return r.rows[0].oid;
}

async function newestArchive(): Promise<{ archive: string; hasCursor: boolean }> {
  const r = await destination.query(
    `SELECT a.archive, EXISTS (SELECT 1 FROM _sluice.cursors c WHERE c.pipeline = a.pipeline AND c.target = a.archive) AS "hasCursor"
       FROM _sluice.archives a WHERE a.pipeline = $1 AND a.table_name = $2 AND a.dropped_at IS NULL ORDER BY a.created_at DESC LIMIT 1`,
    [PIPELINE, TABLE],
  );
  return r.rows[0];
}

test('a table without a kept archive is refused with exit 2, nothing recorded', { timeout: 60_000 }, async () => {
  const r = await sluice(['rollback', OTHER], { config: work.config, timeoutMs: 30_000 });
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /public\.other has no archive to roll back to.*archives list/);
  const reqs = await destination.query(`SELECT count(*)::int AS n FROM _sluice.requests WHERE pipeline = $1 AND kind = 'rollback'`, [PIPELINE]);
  assert.equal(reqs.rows[0].n, 0);
});

test('rollback under writes: the archive is brought current and swapped back in; a reader never fails nor sees it empty; it can be rolled back again', { timeout: 240_000 }, async () => {
  const loadedOid = await oid(TABLE);
  const w = writer();
  const p = prober();
  let writes = 0;
  let probe: Awaited<ReturnType<ReturnType<typeof prober>['stop']>>;
  try {
    // An online re-backfill replaces the table; the one loaded first becomes the archive.
    const b = await sluice(['backfill', TABLE, '--mode', 'online', '--wait'], { config: work.config, timeoutMs: 150_000 });
    assert.equal(b.code, 0, `${b.stdout}${b.stderr}\n${run?.output().slice(-3000)}`);
    const first = await newestArchive();
    assert.ok(first.hasCursor, 'the swap recorded the archive with its position');
    assert.equal(await oid(first.archive), loadedOid, 'the archive is the table loaded first');
    const reloadedOid = await oid(TABLE);
    // Changes accumulate after the swap: the rollback must replay them into the archive.
    await new Promise((r) => setTimeout(r, 1500));

    const rb = await sluice(['rollback', TABLE, '--wait'], { config: work.config, timeoutMs: 150_000 });
    assert.equal(rb.code, 0, `${rb.stdout}${rb.stderr}\n${run?.output().slice(-3000)}`);
    assert.match(rb.stdout, new RegExp(`rollback requested: public\\.items: back to ${first.archive.replace('.', '\\.')}`));
    assert.match(rb.stdout, /streaming/);
    assert.equal(await oid(TABLE), loadedOid, 'the table loaded first is live again');
    const second = await newestArchive();
    assert.notEqual(second.archive, first.archive);
    assert.equal(await oid(second.archive), reloadedOid, 'the table the rollback replaced is kept as the newest archive');
    assert.ok(second.hasCursor, 'and can be rolled back in turn');
    await new Promise((r) => setTimeout(r, 1000));

    // The rollback of the rollback.
    const again = await sluice(['rollback', TABLE, '--wait'], { config: work.config, timeoutMs: 150_000 });
    assert.equal(again.code, 0, `${again.stdout}${again.stderr}\n${run?.output().slice(-3000)}`);
    assert.equal(await oid(TABLE), reloadedOid, 'rolled forward again');
  } finally {
    writes = await w.stop();
    probe = await p.stop();
  }
  await eventuallyEqual(source.url(), destination.url(), TABLE, { run, timeoutMs: 60_000, what: 'after two rollbacks under writes' });
  assert.ok(writes > 50, `the source was written throughout (${writes} rounds)`);
  assert.deepEqual(probe.errors, [], 'no reader query failed');
  assert.ok(probe.probes > 50, `the reader probed throughout (${probe.probes})`);
  assert.ok(probe.min > ROWS / 2, `the reader never saw the table empty or partial (min ${probe.min})`);

  const runs = await destination.query(
    `SELECT status, params->'rollback'->>'archive' AS archive FROM _sluice.runs WHERE pipeline = $1 AND table_name = $2 AND strategy = 'rollback' ORDER BY id`,
    [PIPELINE, TABLE],
  );
  assert.deepEqual(runs.rows.map((r) => r.status), ['done', 'done'], 'both rollbacks are audited as runs that finished');
  const handled = await destination.query(`SELECT outcome FROM _sluice.requests WHERE pipeline = $1 AND kind = 'rollback' ORDER BY id`, [PIPELINE]);
  assert.equal(handled.rows.length, 2);
  for (const r of handled.rows) assert.match(r.outcome, /^rolling back to sluice_archive\./);
});
