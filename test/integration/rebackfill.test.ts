/**
 * Ad-hoc backfills of a streaming table while CDC keeps running (`sluice backfill --mode
 * upsert|truncate|drop --wait`), `sluice cancel`, `sluice status --json` and the exit codes of
 * `sluice verify`. Equality is checked with the independent oracle.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createDemoTable, Workload } from '../../src/demo/workload.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { makeWorkdir, sluice, spawnSluice, type Running, type Workdir, eventuallyEqual as sharedEventuallyEqual, killIfRunning } from '../support/sluice.js';

const TABLE = 'public.orders';
let source: Cluster;
let destination: Cluster;
let stopAll: () => Promise<void>;
let work: Workdir;
let run: Running | undefined;

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await createDemoTable(source.url(), { rows: 30_000 });
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    tables: [{ name: TABLE, chunkRows: 2000 }],
    // A reload takes about two seconds: long enough for a cancel to arrive in the middle.
    extra: 'throttle: { maxRowsPerSecond: 15000 }',
  });
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 60_000);
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  work?.remove();
});

async function eventuallyEqual(what: string, timeoutMs = 20_000): Promise<void> {
  await sharedEventuallyEqual(source.url(), destination.url(), TABLE, { what, timeoutMs, run });
}

async function statusOf(table: string): Promise<Record<string, unknown>> {
  const r = await sluice(['status', '--json'], { config: work.config });
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  return s.tables.find((t: { name: string }) => t.name === table);
}

for (const mode of ['upsert', 'truncate', 'drop'] as const) {
  test(`backfill --mode ${mode} under live writes ends equal`, async () => {
    // Drift the destination first, so the reload has something to repair.
    await destination.query(`UPDATE ${TABLE} SET amount = -1 WHERE id % 97 = 0`);
    const workload = new Workload(source.url(), { ratePerSecond: 400 });
    workload.start();
    try {
      const r = await sluice(['backfill', TABLE, '--mode', mode, '--wait'], { config: work.config, timeoutMs: 120_000 });
      assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /streaming/);
    } finally {
      await workload.stop();
    }
    assert.ok(workload.stats.inserts + workload.stats.updates + workload.stats.deletes > 0);
    await eventuallyEqual(`after backfill --mode ${mode}`);
    const st = await statusOf(TABLE);
    assert.equal(st.state, 'streaming');
    assert.equal(st.error, null);
    assert.ok(Number(st.rowsCopied) > 0);
    let runs = await destination.query(`SELECT status, mode, rows_copied, chunks FROM _sluice.runs WHERE mode = $1 ORDER BY id DESC LIMIT 1`, [mode]);
    for (let i = 0; i < 50 && runs.rows[0].status !== 'done'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      runs = await destination.query(`SELECT status, mode, rows_copied, chunks FROM _sluice.runs WHERE mode = $1 ORDER BY id DESC LIMIT 1`, [mode]);
    }
    assert.equal(runs.rows[0].status, 'done', `runs: ${JSON.stringify(runs.rows)}\n${run?.output().slice(-3000)}`);
    assert.ok(Number(runs.rows[0].chunks) >= 3, 'the audit row counts the chunks');
  });
}

test('status --json has the contract fields', async () => {
  const st = await statusOf(TABLE);
  for (const k of ['name', 'state', 'rowsCopied', 'rowsEstimated', 'rowsPerSecond', 'lagBytes', 'lagSeconds', 'error']) {
    assert.ok(k in st, `status has ${k}`);
  }
  assert.equal(typeof st.lagBytes, 'number');
});

test('cancel stops a truncate backfill; the table is not applied to until the next backfill, which repairs it', async () => {
  // Slow enough (about 10 s) that the cancel lands mid-load even when the machine is busy.
  const slow = await sluice(['throttle', '--max-rows-per-second', '3000'], { config: work.config });
  assert.equal(slow.code, 0, slow.stdout + slow.stderr);
  const r = await sluice(['backfill', TABLE, '--mode', 'truncate'], { config: work.config });
  assert.equal(r.code, 0, r.stderr);
  const c = await sluice(['cancel', TABLE], { config: work.config });
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /cancelled; the table is not replicated until the next backfill/);
  const st = await statusOf(TABLE);
  assert.equal(st.state, 'cancelled');
  const runs = await destination.query(`SELECT status FROM _sluice.runs ORDER BY id DESC LIMIT 1`);
  assert.equal(runs.rows[0].status, 'cancelled');
  const fast = await sluice(['throttle', '--max-rows-per-second', '15000'], { config: work.config });
  assert.equal(fast.code, 0, fast.stdout + fast.stderr);
  const again = await sluice(['backfill', TABLE, '--mode', 'truncate', '--wait'], { config: work.config, timeoutMs: 120_000 });
  assert.equal(again.code, 0, `${again.stdout}${again.stderr}`);
  await eventuallyEqual('after cancel and a new backfill');
});

test('verify: exit 0 when equal, 1 with the differing key when not', async () => {
  const ok = await sluice(['verify', TABLE], { config: work.config });
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /EQUAL/);
  // Stop the pipeline so nothing repairs the tampering.
  run!.kill('SIGTERM');
  const exit = await run!.exited(30_000);
  assert.equal(exit.code, 0, exit.stdout + exit.stderr);
  const id = (await destination.query(`SELECT min(id) AS id FROM ${TABLE}`)).rows[0].id;
  await destination.query(`UPDATE ${TABLE} SET amount = amount + 1000 WHERE id = $1`, [id]);
  const bad = await sluice(['verify', TABLE, '--attempts', '1', '--json'], { config: work.config });
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  const v = JSON.parse(bad.stdout);
  assert.equal(v.equal, false);
  assert.deepEqual(v.tables[0].differences, [{ key: `(${id})`, problem: 'differs' }]);
});
