/**
 * Contract 10: sluice's own sessions never deadlock each other. Re-backfills in every mode run while
 * a write load (updates, key changes, deletes, inserts, multi-row transactions) streams into the same
 * table, so the chunk writer and the Applier write the same rows at the same time; the destination's
 * own deadlock counter (`pg_stat_database.deadlocks`) must not move, and the oracle must agree.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createDemoTable, Workload } from '../../src/demo/workload.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { makeWorkdir, sluice, spawnSluice, eventuallyEqual, type Running, type Workdir, killIfRunning } from '../support/sluice.js';

const TABLE = 'public.orders';
let source: Cluster;
let destination: Cluster;
let stopAll: () => Promise<void>;
let work: Workdir;
let run: Running | undefined;

async function deadlocks(): Promise<number> {
  const r = await destination.query(`SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()`);
  return r.rows[0].n as number;
}

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await createDemoTable(source.url(), { rows: 40_000 });
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    tables: [{ name: TABLE, chunkRows: 10000, chunkSeconds: 0 }],
    // A reload takes several seconds, and the Applier's batches hold many keys at once.
    extra: 'throttle: { maxRowsPerSecond: 20000 }',
  });
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 90_000);
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  work?.remove();
});

for (const mode of ['upsert', 'truncate', 'online'] as const) {
  test(`backfill --mode ${mode} under a write load: no deadlock, destination equals source`, { timeout: 150_000 }, async () => {
    const before = await deadlocks();
    const from = run!.output().length;
    const workload = new Workload(source.url(), { ratePerSecond: 2500 });
    workload.start();
    try {
      const r = await sluice(['backfill', TABLE, '--mode', mode, '--wait'], { config: work.config, timeoutMs: 120_000 });
      assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    } finally {
      await workload.stop();
    }
    assert.ok(workload.stats.keyChanges > 0 && workload.stats.updates > 0, 'the load did its mix');
    await eventuallyEqual(source.url(), destination.url(), TABLE, { what: `after --mode ${mode}`, run, timeoutMs: 60_000 });
    const grown = (await deadlocks()) - before;
    assert.equal(grown, 0, `${grown} deadlock(s) on the destination; sluice output:\n${run!.output().slice(-3000)}`);
    assert.doesNotMatch(run!.output().slice(from), /deadlock detected/);
  });
}
