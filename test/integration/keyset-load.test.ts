/**
 * The default keyset load into a table of ours (docs/benchmarks.md, "Backfill against the COPY pipe
 * on PostgreSQL 15 and 17"): two chunks are copied at once (a second destination session shares the
 * load) and commit in key order, and the primary key is built once after the last chunk instead of
 * being maintained row by row.
 *
 * `sluice run` loads a 60,000-row demo table (mode drop, fixed 2,000-row chunks) under a write load.
 * While it loads, the destination's pg_stat_activity is sampled: at some moment two COPY … FROM STDIN
 * of sluice's chunk workers run at once, and the destination table has no primary key yet while
 * its state is backfilling. The run is SIGKILLed after a few chunks and restarted: the resumed run
 * finishes, the table ends with its primary key, and the destination equals the source (independent
 * oracle). The progress recorded (last key) only ever moves forward, as with one chunk at a time.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createDemoTable, Workload } from '../../src/demo/workload.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { makeWorkdir, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

const ROWS = 60_000;
const CHUNK_ROWS = 2000;
const TABLE = 'public.orders_ks';
const PIPELINE = 'ks_load';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir | undefined;
const runs: Running[] = [];
let workload: Workload | undefined;

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
});

after(async () => {
  await workload?.stop().catch(() => undefined);
  for (const r of runs) {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      r.kill('SIGKILL');
      await r.exited(10_000).catch(() => undefined);
    }
  }
  await stopAll?.();
  work?.remove();
});

/** Samples the destination every few ms: most chunk COPYs at once, whether the table ever lacked its key while loading, last keys seen. */
function sampler(): { stop(): Promise<{ maxCopies: number; keylessWhileLoading: boolean; lastKeys: number[] }> } {
  let stopped = false;
  let maxCopies = 0;
  let keylessWhileLoading = false;
  const lastKeys: number[] = [];
  const done = (async () => {
    const c = new pg.Client({ connectionString: destination.url() });
    c.on('error', () => undefined);
    await c.connect();
    try {
      while (!stopped) {
        const r = await c.query(
          `SELECT (SELECT count(*)::int FROM pg_stat_activity
                    WHERE application_name = 'sluice-chunk' AND state = 'active' AND query LIKE 'COPY % FROM STDIN%') AS copies,
                  (SELECT state FROM _sluice.tables WHERE pipeline = $1 AND name = $2) AS state,
                  (SELECT (last_key->>0)::int8 FROM _sluice.tables WHERE pipeline = $1 AND name = $2 AND jsonb_typeof(last_key) = 'array') AS last_key,
                  to_regclass($2) IS NOT NULL AS exists,
                  EXISTS (SELECT 1 FROM pg_index WHERE indrelid = to_regclass($2) AND indisprimary) AS keyed`,
          [PIPELINE, TABLE],
        ).catch(() => null);
        if (r) {
          const x = r.rows[0];
          maxCopies = Math.max(maxCopies, x.copies);
          if (x.state === 'backfilling' && x.exists && !x.keyed) keylessWhileLoading = true;
          if (x.last_key !== null && lastKeys[lastKeys.length - 1] !== Number(x.last_key)) lastKeys.push(Number(x.last_key));
        }
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
      return { maxCopies, keylessWhileLoading, lastKeys };
    },
  };
}

test('keyset drop load: two chunks in flight committed in key order, key built after the load, SIGKILL + resume, equal under writes', { timeout: 180_000 }, async () => {
  await createDemoTable(source.url(), { table: TABLE, rows: ROWS });
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline: PIPELINE,
    tables: [{ name: TABLE, mode: 'drop', chunkRows: CHUNK_ROWS, chunkSeconds: 0 }],
  });
  workload = new Workload(source.url(), { table: TABLE, ratePerSecond: 300 });
  workload.start();
  const s = sampler();
  let run = spawnSluice(['run'], { config: work.config });
  runs.push(run);
  await waitUntil(
    'a few chunks committed',
    async () => {
      if (run.child.exitCode !== null) throw new Error(`sluice run exited (${run.child.exitCode}):\n${run.output()}`);
      const r = await destination
        .query(`SELECT chunks_done::int AS n FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [PIPELINE, TABLE])
        .catch(() => ({ rows: [] as { n: number }[] }));
      return (r.rows[0]?.n ?? 0) > 6;
    },
    60_000,
    20,
  );
  run.kill('SIGKILL');
  await run.exited(10_000);
  run = spawnSluice(['run'], { config: work.config });
  runs.push(run);
  const final = run;
  await final.waitForOutput(/resuming backfill/, 60_000);
  await final.waitForOutput(/primary key built after the load/, 120_000);
  await final.waitForOutput(/table caught up; streaming/, 120_000);
  const seen = await s.stop();
  await workload.stop();
  workload = undefined;
  assert.ok(seen.maxCopies >= 2, `at most ${seen.maxCopies} chunk COPY … FROM STDIN ran at once on the destination; expected 2`);
  assert.ok(seen.keylessWhileLoading, 'the destination table had its primary key during the load');
  for (let i = 1; i < seen.lastKeys.length; i++) {
    assert.ok(seen.lastKeys[i] > seen.lastKeys[i - 1], `the recorded last key went back: ${seen.lastKeys.join(', ')}`);
  }
  const keyed = await destination.query(`SELECT count(*)::int AS n FROM pg_index WHERE indrelid = $1::regclass AND indisprimary`, [TABLE]);
  assert.equal(keyed.rows[0].n, 1, 'the table ends with its primary key');
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await assertTablesEqual(source.url(), destination.url(), TABLE);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((res) => setTimeout(res, 500));
    }
  }
  final.kill('SIGTERM');
  await final.exited(30_000).catch(() => undefined);
});
