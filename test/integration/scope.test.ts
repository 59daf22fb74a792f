/**
 * `where` scopes (docs/architecture.md, "Backfill strategies": a scope limits any strategy to a subset): a
 * source table with a tenant column is loaded and streams; then the destination drifts, and
 *
 * 1. `sluice backfill public.t --mode upsert --where "tenant = 7" --wait` repairs exactly tenant 7
 *    (tenant 8's drift stays, checked with plain SQL);
 * 2. `--mode truncate --where "tenant = 8"` deletes and reloads exactly tenant 8: a destination-only
 *    row of tenant 8 disappears, one of tenant 9 stays; after removing that row the oracle agrees;
 * 3. `--mode online|drop --where …` exit 2 naming the fix; an invalid where (`tenant = `, or the
 *    non-boolean `tenant + 1`) exits 2 before anything is recorded in `_sluice.requests`.
 *
 * A light writer keeps changing the source (only tenants the current step does not assert drift
 * on), so the scoped loads run beside CDC.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { makeWorkdir, sluice, spawnSluice, waitUntil, type Result, type Running, type Workdir } from '../support/sluice.js';

const TABLE = 'public.t';
const PIPELINE = 'scope';
const TENANTS = 10;
const PER_TENANT = 2000;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;
let failed = false;
/** ids of rows the writer inserts (above the initial rows and the test's own extra rows) */
let nextId = TENANTS * PER_TENANT + 1_000_000;
const t0 = Date.now();
const note = (line: string) => console.log(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await source.query(`
    CREATE TABLE ${TABLE} (id int PRIMARY KEY, tenant int NOT NULL, v text, n int NOT NULL DEFAULT 0);
    INSERT INTO ${TABLE} SELECT i, i % ${TENANTS}, 'v' || md5(i::text), 0 FROM generate_series(1, ${TENANTS * PER_TENANT}) i;
    ANALYZE ${TABLE};
  `);
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline: PIPELINE,
    tables: [{ name: TABLE, chunkRows: 250, chunkSeconds: 0 }],
    // A tenant loads in about half a second: long enough for the writer to change rows meanwhile.
    extra: 'throttle: { maxRowsPerSecond: 5000 }',
  });
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 60_000);
  note('initial load done; streaming');
});

after(async () => {
  if (run && run.child.exitCode === null && run.child.signalCode === null) {
    run.kill('SIGKILL');
    await run.exited(10_000).catch(() => undefined);
  }
  await stopAll?.();
  if (failed) note(`work directory kept: ${work?.dir}`);
  else work?.remove();
});

/** Random updates, inserts and deletes on the source, only in `tenants`, ~50 a second. */
function writer(tenants: number[]): { stop(): Promise<number> } {
  let stopped = false;
  let ops = 0;
  const errors: string[] = [];
  const done = (async () => {
    const c = new pg.Client({ connectionString: source.url() });
    c.on('error', () => undefined);
    await c.connect();
    try {
      while (!stopped) {
        const tenant = tenants[Math.floor(Math.random() * tenants.length)];
        const id = tenant + TENANTS * Math.floor(Math.random() * PER_TENANT); // id % TENANTS = tenant
        const x = Math.random();
        try {
          if (x < 0.6) await c.query(`UPDATE ${TABLE} SET n = n + 1, v = md5(random()::text) WHERE id = $1 AND tenant = $2`, [id, tenant]);
          else if (x < 0.85) await c.query(`INSERT INTO ${TABLE} (id, tenant, v) VALUES ($1, $2, 'new')`, [nextId++, tenant]);
          else await c.query(`DELETE FROM ${TABLE} WHERE id = $1 AND tenant = $2`, [id, tenant]);
          ops++;
        } catch (err) {
          errors.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
      assert.deepEqual(errors, [], 'the writer ran without errors');
      return ops;
    },
  };
}

/** Row count and an ordered md5 of the rows matching `where` (plain SQL). */
async function subset(c: Cluster, where: string): Promise<{ rows: number; md5: string }> {
  const r = await c.query(
    `SELECT count(*)::int AS rows, coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') AS md5 FROM ${TABLE} t WHERE ${where}`,
  );
  return r.rows[0];
}

async function eventually(what: string, check: () => Promise<void>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        (err as Error).message = `${what}: ${(err as Error).message}\n--- sluice output (tail):\n${run?.output().slice(-3000)}`;
        throw err;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function subsetsEqual(where: string): Promise<void> {
  const [s, d] = await Promise.all([subset(source, where), subset(destination, where)]);
  assert.deepEqual(d, s, `rows where ${where}: destination differs from source`);
}

async function lastRun(): Promise<{ mode: string; where_sql: string; status: string; rows_copied: number; chunks: number }> {
  const r = await destination.query(
    `SELECT mode, where_sql, status, rows_copied::int AS rows_copied, chunks::int AS chunks FROM _sluice.runs WHERE pipeline = $1 ORDER BY id DESC LIMIT 1`,
    [PIPELINE],
  );
  return r.rows[0];
}

async function requestCount(): Promise<number> {
  const r = await destination.query(`SELECT count(*)::int AS n FROM _sluice.requests WHERE pipeline = $1`, [PIPELINE]);
  return r.rows[0].n;
}

function assertUsage(res: Result, pattern: RegExp): void {
  assert.equal(res.code, 2, `exit code (stdout: ${res.stdout}; stderr: ${res.stderr})`);
  assert.match(res.stderr, pattern);
  assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace');
}

test('upsert --where "tenant = 7" repairs exactly tenant 7; the drift of tenant 8 stays', { timeout: 60_000 }, async () => {
  try {
    await eventually('tenant 7 and 8 equal before the drift', async () => {
      await subsetsEqual('tenant IN (7, 8)');
    });
    // Drift: changed and missing rows of tenant 7; changed rows of tenant 8.
    const d7 = await destination.query(`UPDATE ${TABLE} SET v = 'drift' WHERE tenant = 7 AND id % 3 = 0`);
    const m7 = await destination.query(`DELETE FROM ${TABLE} WHERE tenant = 7 AND id % 7 = 0 AND v <> 'drift'`);
    const d8 = await destination.query(`UPDATE ${TABLE} SET v = 'drift' WHERE tenant = 8 AND id % 3 = 1`);
    note(`drift: tenant 7 ${d7.rowCount} changed, ${m7.rowCount} missing; tenant 8 ${d8.rowCount} changed`);
    assert.ok((d7.rowCount ?? 0) > 100 && (m7.rowCount ?? 0) > 50 && (d8.rowCount ?? 0) > 100);

    // The writer keeps changing tenants 0-7 (not 8, whose drift must stay untouched).
    const w = writer([0, 1, 2, 3, 4, 5, 6, 7]);
    let res: Result;
    try {
      res = await sluice(['backfill', TABLE, '--mode', 'upsert', '--where', 'tenant = 7', '--wait'], { config: work.config, timeoutMs: 60_000 });
    } finally {
      note(`writer: ${await w.stop()} operations during the backfill`);
    }
    assert.equal(res.code, 0, `${res.stdout}${res.stderr}`);
    assert.match(res.stdout, /streaming/);

    await eventually('tenant 7 repaired', async () => subsetsEqual('tenant = 7'));
    const still8 = await destination.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE tenant = 8 AND v = 'drift'`);
    assert.equal(still8.rows[0].n, d8.rowCount, "tenant 8's drift is untouched by a backfill scoped to tenant 7");
    const left7 = await destination.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE tenant = 7 AND v = 'drift'`);
    assert.equal(left7.rows[0].n, 0);
    await eventually('the other tenants stream on', async () => subsetsEqual('tenant NOT IN (7, 8)'));

    const r = await lastRun();
    note(`run: ${JSON.stringify(r)}`);
    assert.equal(r.mode, 'upsert');
    assert.equal(r.where_sql, 'tenant = 7');
    // Exactly tenant 7 was read: about PER_TENANT rows (the writer adds a few), far from the whole table.
    assert.ok(r.rows_copied >= PER_TENANT * 0.9 && r.rows_copied <= PER_TENANT * 1.2, `rows copied ${r.rows_copied}`);
  } catch (err) {
    failed = true;
    throw err;
  }
});

test('truncate --where "tenant = 8" deletes and reloads exactly tenant 8', { timeout: 60_000 }, async () => {
  try {
    // Destination-only rows: one of tenant 8 (gone after the reload), one of tenant 9 (stays).
    await destination.query(`INSERT INTO ${TABLE} (id, tenant, v) VALUES (900008, 8, 'only here'), (900009, 9, 'only here')`);
    const drift8 = (await destination.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE tenant = 8 AND v = 'drift'`)).rows[0].n;
    assert.ok(drift8 > 100, 'tenant 8 still drifted from the previous step');

    // The writer changes tenants 0-6 and 8 (not 9, whose extra row must stay).
    const w = writer([0, 1, 2, 3, 4, 5, 6, 8]);
    let res: Result;
    try {
      res = await sluice(['backfill', TABLE, '--mode', 'truncate', '--where', 'tenant = 8', '--wait'], { config: work.config, timeoutMs: 60_000 });
    } finally {
      note(`writer: ${await w.stop()} operations during the backfill`);
    }
    assert.equal(res.code, 0, `${res.stdout}${res.stderr}`);
    assert.match(res.stdout, /streaming/);

    await eventually('tenant 8 reloaded', async () => subsetsEqual('tenant = 8'));
    const extra = await destination.query(`SELECT id, tenant FROM ${TABLE} WHERE id IN (900008, 900009) ORDER BY id`);
    assert.deepEqual(extra.rows, [{ id: 900009, tenant: 9 }], 'the tenant-8 extra row is gone, the tenant-9 one stays');
    assert.match(run!.output(), /scoped truncate: matching destination rows deleted/);

    const r = await lastRun();
    note(`run: ${JSON.stringify(r)}`);
    assert.equal(r.mode, 'truncate');
    assert.equal(r.where_sql, 'tenant = 8');
    assert.ok(r.rows_copied >= PER_TENANT * 0.9 && r.rows_copied <= PER_TENANT * 1.2, `rows copied ${r.rows_copied}`);

    // Everything else is as it was: without the tenant-9 extra row the whole table is equal.
    await destination.query(`DELETE FROM ${TABLE} WHERE id = 900009`);
    await eventually('whole table equal', () => assertTablesEqual(source.url(), destination.url(), TABLE));
    const st = await sluice(['status', '--json'], { config: work.config });
    const t = (JSON.parse(st.stdout) as { tables: { name: string; state: string; error: string | null }[] }).tables.find((x) => x.name === TABLE);
    assert.equal(t?.state, 'streaming');
    assert.equal(t?.error, null);
  } catch (err) {
    failed = true;
    throw err;
  }
});

test('a scope with --mode online or drop, or an invalid scope, exits 2 before anything is recorded', { timeout: 60_000 }, async () => {
  const before = await requestCount();
  const runsBefore = (await destination.query(`SELECT count(*)::int AS n FROM _sluice.runs`)).rows[0].n;

  for (const mode of ['online', 'drop']) {
    const res = await sluice(['backfill', TABLE, '--mode', mode, '--where', 'tenant = 7', '--wait'], { config: work.config });
    assertUsage(res, new RegExp(`mode ${mode} would replace the whole table with that part; use mode upsert or truncate`));
  }
  // The default mode is online: a scope without --mode is refused the same way.
  assertUsage(await sluice(['backfill', TABLE, '--where', 'tenant = 7'], { config: work.config }), /use mode upsert or truncate/);

  for (const where of ['tenant = ', 'tenant + 1']) {
    const res = await sluice(['backfill', TABLE, '--mode', 'upsert', '--where', where, '--wait'], { config: work.config });
    assertUsage(res, /--where: .* is not a valid condition on public\.t/);
    note(`--where ${JSON.stringify(where)}: ${res.stderr.trim()}`);
  }
  assert.match((await sluice(['backfill', TABLE, '--mode', 'upsert', '--where', 'tenant + 1'], { config: work.config })).stderr, /boolean/);
  // Nothing reaches sluice's state, and nothing is dropped.
  assert.equal(await requestCount(), before, 'no request recorded');
  assert.equal((await destination.query(`SELECT count(*)::int AS n FROM _sluice.runs`)).rows[0].n, runsBefore, 'no run started');
  await waitUntil('the pipeline to keep streaming', async () => {
    const st = await sluice(['status', '--json'], { config: work.config });
    return (JSON.parse(st.stdout) as { tables: { name: string; state: string }[] }).tables.find((x) => x.name === TABLE)?.state === 'streaming';
  });
  await source.query(`UPDATE ${TABLE} SET n = n + 1 WHERE id = 1`);
  await eventually('a change still streams', () => assertTablesEqual(source.url(), destination.url(), TABLE));
});
