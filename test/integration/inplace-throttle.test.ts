/**
 * The health gate of in-place jobs against the database's real signals (docs/inplace.md, "Throttle"):
 * a standby whose replay is paused, autovacuum working on the table, an application session holding a
 * lock the job needs, sessions waiting on the job's own locks, and the WAL budget. Each test makes
 * the signal happen for real and checks that the job held, slowed or retried, and still ended right.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startCluster, startReplica, type Cluster } from '../support/clusters.js';
import { sluice, spawnSluice, waitUntil } from '../support/sluice.js';

let db: Cluster;
let dir: string;

before(async () => {
  // Autovacuum wakes every second, so that the test can watch it work.
  db = await startCluster({ name: 'inplace-throttle', settings: { autovacuum_naptime: '1s' } });
  dir = mkdtempSync(join(tmpdir(), 'sluice-inplace-throttle-'));
});

after(async () => {
  await db?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function jobFile(name: string, yaml: string): string {
  const f = join(dir, `${name}.yaml`);
  writeFileSync(f, `job: ${name}\ndatabase: "${db.url()}"\nreason: "test ${name}"\n${yaml}\n`);
  return f;
}
const run = (file: string) => spawnSluice(['-c', join(dir, 'none.yaml'), 'inplace', 'run', file]);
const count = async (sql: string) => Number((await db.query(sql)).rows[0].n);

async function table(name: string, rows: number): Promise<void> {
  await db.query(`CREATE TABLE public.${name} (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, pad text)`);
  await db.query(`INSERT INTO public.${name} (id, pad) SELECT g, repeat('x', 100) FROM generate_series(1, ${rows}) g`);
}

test('holds while a standby replays more than maxReplicaLagSeconds behind, and goes on when it catches up', { timeout: 180_000 }, async () => {
  const replica = await startReplica(db, 'inplace-standby');
  try {
    await table('lagged', 20_000);
    await replica.query(`SELECT pg_wal_replay_pause()`);
    const writer = setInterval(() => void db.query(`UPDATE public.lagged SET pad = pad WHERE id = 1`).catch(() => undefined), 200);
    try {
      await waitUntil('the standby lags', async () => (await count(`SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 AS n FROM pg_stat_replication`)) > 1.5, 30_000);
    } finally {
      clearInterval(writer);
    }
    const r = run(jobFile('lagged', `table: lagged\nkind: update\nset: "v = v + 1"\nthrottle: { maxReplicaLagSeconds: 1 }`));
    await r.waitForOutput(/held: replica lag [\d.]+ s > 1 s/, 30_000);
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal(await count(`SELECT count(*)::int AS n FROM public.lagged WHERE v > 0`), 0, 'no chunk while held');
    await replica.query(`SELECT pg_wal_replay_resume()`);
    const done = await r.exited(60_000);
    assert.equal(done.code, 0, done.stdout + done.stderr);
    assert.match(done.stdout + done.stderr, /throttle open again/);
    assert.equal(await count(`SELECT count(*)::int AS n FROM public.lagged WHERE v <> 1`), 0);
  } finally {
    await replica.destroy();
  }
});

test('holds while autovacuum works on the table (pauseWhileAutovacuum)', { timeout: 120_000 }, async () => {
  await table('vacuumed', 30_000);
  // A slow autovacuum on this table only: many dead rows, a tiny cost budget.
  await db.query(`UPDATE public.vacuumed SET pad = pad || 'y'`);
  await db.query(`ALTER TABLE public.vacuumed SET (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)`);
  await waitUntil(
    'autovacuum works on the table',
    async () => (await count(`SELECT count(*)::int AS n FROM pg_stat_progress_vacuum WHERE relid = 'public.vacuumed'::regclass`)) > 0,
    60_000,
  );
  const r = run(jobFile('vacuumed', `table: vacuumed\nkind: update\nset: "v = v + 1"\nthrottle: { pauseWhileAutovacuum: true }`));
  await r.waitForOutput(/held: autovacuum is working on the table/, 30_000);
  assert.equal(await count(`SELECT count(*)::int AS n FROM public.vacuumed WHERE v > 0`), 0, 'no chunk while autovacuum works');
  // Turn it off for the table and stop the worker: the job goes on.
  await db.query(`ALTER TABLE public.vacuumed SET (autovacuum_enabled = false)`);
  await db.query(`SELECT pg_cancel_backend(pid) FROM pg_stat_progress_vacuum WHERE relid = 'public.vacuumed'::regclass`);
  const done = await r.exited(60_000);
  assert.equal(done.code, 0, done.stdout + done.stderr);
  assert.equal(await count(`SELECT count(*)::int AS n FROM public.vacuumed WHERE v <> 1`), 0);
});

test('a lock held by the application: the chunk times out, is retried and halved, and the job ends right', { timeout: 120_000 }, async () => {
  await table('locked', 5000);
  const app = new pg.Client({ connectionString: db.url() });
  await app.connect();
  try {
    await app.query(`BEGIN`);
    await app.query(`UPDATE public.locked SET pad = 'app' WHERE id = 2500`);
    const r = run(jobFile('locked', `table: locked\nkind: update\nset: "v = v + 1"\nlockTimeoutMs: 100\nchunk: { rows: 1000, maxRows: 1000 }\nfailures: { retries: 2 }`));
    await r.waitForOutput(/chunk kept failing; halving it/, 60_000);
    await app.query(`COMMIT`);
    const done = await r.exited(60_000);
    assert.equal(done.code, 0, done.stdout + done.stderr);
    assert.match(done.stdout + done.stderr, /chunk retried .*lock timeout/);
  } finally {
    await app.end();
  }
  assert.equal(await count(`SELECT count(*)::int AS n FROM public.locked WHERE v <> 1`), 0);
  assert.equal(await count(`SELECT count(*)::int AS n FROM public.locked WHERE id = 2500 AND pad = 'app'`), 1);
});

test('sessions that wait on the job’s locks halve its next chunk', { timeout: 120_000 }, async () => {
  await table('contended', 20_000);
  // A slow chunk statement (about 1 ms a row), and an application that keeps updating rows everywhere.
  const r = run(jobFile('contended', `table: contended\nkind: update\nset: "v = v + 1 + length(pg_sleep(0.001)::text)"\nchunk: { rows: 400, maxRows: 400, targetSeconds: 2 }`));
  await r.waitForOutput(/run started/, 30_000);
  const app = new pg.Client({ connectionString: db.url() });
  await app.connect();
  let stop = false;
  const hammer = (async () => {
    for (let i = 1; !stop; i = (i + 97) % 20_000) await app.query(`UPDATE public.contended SET pad = 'app' WHERE id = $1`, [i + 1]).catch(() => undefined);
  })();
  try {
    await r.waitForOutput(/sessions waited on the chunk; halving the next/, 60_000);
  } finally {
    stop = true;
    await hammer;
    await app.end();
  }
  const done = await r.exited(120_000);
  assert.equal(done.code, 0, done.stdout + done.stderr);
  assert.equal(await count(`SELECT count(*)::int AS n FROM public.contended WHERE v <> 1`), 0);
});

test('the WAL budget paces the job to its WAL bytes per second', { timeout: 120_000 }, async () => {
  await table('walled', 6000);
  const budget = 400_000;
  const t0 = Date.now();
  const r = await sluice(['-c', join(dir, 'none.yaml'), 'inplace', 'run', jobFile('walled', `table: walled\nkind: update\nset: "v = v + 1, pad = pad || 'z'"\nchunk: { rows: 500, maxRows: 500 }\nthrottle: { maxWalBytesPerSecond: ${budget} }`)]);
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const wal = await count(`SELECT sum(wal_bytes)::int8 AS n FROM _sluice.inplace_chunks c JOIN _sluice.inplace_runs r ON r.id = c.run_id WHERE r.job = 'walled'`);
  assert.ok(wal > 2 * budget, `the job wrote ${wal} bytes of WAL: enough to need pacing`);
  assert.ok(seconds >= (0.8 * wal) / budget, `${wal} bytes of WAL at ${budget} B/s take ≥ ${((0.8 * wal) / budget).toFixed(1)} s; took ${seconds.toFixed(1)} s`);
  assert.equal(await count(`SELECT count(*)::int AS n FROM public.walled WHERE v <> 1`), 0);
});

test('holds while a sluice replication slot retains more WAL than maxSlotRetainedBytes', { timeout: 120_000 }, async () => {
  await table('slotted', 5000);
  await db.query(`SELECT pg_create_logical_replication_slot('sluice_behind', 'pgoutput')`);
  try {
    await db.query(`UPDATE public.slotted SET pad = pad || 'w'`);
    const r = run(jobFile('slotted', `table: slotted\nkind: update\nset: "v = v + 1"\nthrottle: { maxSlotRetainedBytes: 100000 }`));
    await r.waitForOutput(/held: a sluice replication slot retains \d+ KiB of WAL > 98 KiB/, 30_000);
    assert.equal(await count(`SELECT count(*)::int AS n FROM public.slotted WHERE v > 0`), 0, 'no chunk while held');
    await db.query(`SELECT pg_drop_replication_slot('sluice_behind')`);
    const done = await r.exited(60_000);
    assert.equal(done.code, 0, done.stdout + done.stderr);
  } finally {
    await db.query(`SELECT pg_drop_replication_slot('sluice_behind') WHERE EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'sluice_behind')`);
  }
  assert.equal(await count(`SELECT count(*)::int AS n FROM public.slotted WHERE v <> 1`), 0);
});
