/**
 * Fault matrix: the replication slot is lost. Changes between the slot's last position and now are
 * gone from the source, so replay cannot repair the destination.
 *
 * 1. Dropped while sluice is down, default `source.onSlotLost: stop`: `run` exits 2 naming the slot
 *    and the recovery, and creates nothing.
 * 2. Same state with `onSlotLost: rebackfill`: the slot is recreated and the table reloaded online
 *    under write load; a prober reading the destination table every 50 ms never fails and never sees
 *    it empty; the oracle agrees.
 * 3. Dropped while running (walsender terminated, slot dropped), `stop`: sluice exits 2 within
 *    seconds with the message.
 * 4. Dropped while running, `rebackfill`: sluice notices within seconds, restarts itself, reloads
 *    online (prober as in 2), oracle equal.
 * 5. Invalidated while sluice is down (`max_slot_wal_keep_size` exceeded, wal_status `lost`):
 *    `stop` exits 2 naming the invalidation; `rebackfill` reloads online and ends equal.
 *
 * One pair of clusters and one pipeline; the tests run in order and each starts from a streaming
 * pipeline.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createDemoTable, Workload } from '../../src/demo/workload.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { makeWorkdir, spawnSluice, waitUntil, type Running, type Workdir, eventuallyEqual, killIfRunning } from '../support/sluice.js';

const TABLE = 'public.orders';
const SLOT = 'sluice_test';
const ROWS = 20_000;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;
const t0 = Date.now();
const note = (line: string) => console.log(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await createDemoTable(source.url(), { rows: ROWS });
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    tables: [{ name: TABLE, chunkRows: 5000 }],
    // A reload takes a few seconds: long enough for the prober to read during it.
    extra: 'throttle: { maxRowsPerSecond: 15000 }',
  });
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 90_000);
  note('initial load done; streaming');
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  work?.remove();
});

function setOnSlotLost(value: 'stop' | 'rebackfill'): void {
  const text = readFileSync(work.config, 'utf8').replace(/^(source: \{ type: postgres, url: "[^"]*")(, onSlotLost: \w+)?/m, `$1, onSlotLost: ${value}`);
  writeFileSync(work.config, text);
}

async function stopRun(): Promise<void> {
  if (!run || run.child.exitCode !== null) return;
  run.kill('SIGTERM');
  const r = await run.exited(60_000);
  assert.equal(r.code, 0, `a clean stop exits 0:\n${r.stdout}${r.stderr}`);
}

async function slotExists(): Promise<boolean> {
  return ((await source.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [SLOT])).rowCount ?? 0) > 0;
}

/** Terminates the walsender and drops the slot before sluice reconnects. */
async function dropSlotUnderSluice(): Promise<void> {
  for (let i = 0; i < 500; i++) {
    await source.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, [SLOT]);
    try {
      await source.query(`SELECT pg_drop_replication_slot($1)`, [SLOT]);
      return;
    } catch (err) {
      if (/does not exist/.test((err as Error).message)) return;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  throw new Error('could not drop the slot under sluice');
}

/** Reads the destination table every 50 ms: counts the reads, the smallest count, and any error. */
class Prober {
  reads = 0;
  min = Number.POSITIVE_INFINITY;
  errors: string[] = [];
  private stopped = false;
  private loop: Promise<void> | null = null;

  start(): void {
    this.loop = (async () => {
      const c = new pg.Client({ connectionString: destination.url() });
      await c.connect();
      try {
        while (!this.stopped) {
          try {
            const n = Number((await c.query(`SELECT count(*)::int AS n FROM ${TABLE}`)).rows[0].n);
            this.reads++;
            this.min = Math.min(this.min, n);
          } catch (err) {
            this.errors.push((err as Error).message);
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await c.end().catch(() => undefined);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  assertNeverDark(what: string): void {
    note(`${what}: prober read the destination ${this.reads} times, smallest count ${this.min}, errors ${this.errors.length}`);
    assert.ok(this.reads > 10, `${what}: the prober read during the reload`);
    assert.deepEqual(this.errors, [], `${what}: reads of the destination table never fail`);
    assert.ok(this.min > ROWS / 2, `${what}: the destination table never went empty (smallest count ${this.min})`);
  }
}

/** Waits until the output holds `n` matches of `re`. */
async function waitForCount(r: Running, re: RegExp, n: number, timeoutMs: number): Promise<void> {
  const g = new RegExp(re.source, 'g');
  await waitUntil(`${n}× ${re}`, async () => {
    if (r.child.exitCode !== null) throw new Error(`sluice exited (${r.child.exitCode}); output:\n${r.output()}`);
    return (r.output().match(g)?.length ?? 0) >= n;
  }, timeoutMs, 100);
}

/** Starts `run` with rebackfill, and checks the reload was online and ended equal under writes. */
async function reloadOnline(what: string, workload: Workload, alreadyRunning = false): Promise<void> {
  const prober = new Prober();
  prober.start();
  try {
    if (!alreadyRunning) run = spawnSluice(['run'], { config: work.config });
    const r = run!;
    await r.waitForOutput(/the replication slot was lost: the table is reloaded/, 60_000);
    await r.waitForOutput(/swapped: the new table is live/, 90_000);
    assert.ok(await slotExists(), `${what}: the slot was recreated`);
  } finally {
    await workload.stop();
    await prober.stop();
  }
  await eventuallyEqual(source.url(), destination.url(), TABLE, { what, timeoutMs: 60_000, run });
  prober.assertNeverDark(what);
}

test('slot dropped while sluice is down: stop (the default) exits 2 naming the fix, creates nothing', async () => {
  await stopRun();
  await source.query(`SELECT pg_drop_replication_slot($1)`, [SLOT]);
  // Changes the dropped slot will never deliver.
  await source.query(`UPDATE ${TABLE} SET amount = amount + 1 WHERE id % 10 = 0`);
  await source.query(`DELETE FROM ${TABLE} WHERE id % 101 = 0`);
  run = spawnSluice(['run'], { config: work.config });
  const r = await run.exited(60_000);
  note(`exit ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /replication slot sluice_test is missing on the source \(it was dropped\).*set source\.onSlotLost: rebackfill/);
  assert.equal(await slotExists(), false, 'no slot was created');
});

test('slot dropped while sluice is down: rebackfill recreates it and reloads online; never dark; oracle equal', async () => {
  setOnSlotLost('rebackfill');
  const workload = new Workload(source.url(), { ratePerSecond: 300 });
  workload.start();
  await reloadOnline('dropped while down', workload);
});

test('slot dropped while running, stop: exits 2 within seconds with the message', async () => {
  setOnSlotLost('stop');
  await stopRun();
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/pipeline running/, 60_000);
  await waitUntil('the walsender', async () => (await source.query(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [SLOT])).rows[0]?.active === true);
  const dropped = Date.now();
  await dropSlotUnderSluice();
  const r = await run.exited(30_000);
  const seconds = (Date.now() - dropped) / 1000;
  note(`dropped while running (stop): exit ${r.code} ${seconds.toFixed(1)} s after the drop`);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /replication slot sluice_test was dropped or invalidated while sluice was running .*does not exist.*set source\.onSlotLost: rebackfill/);
  assert.ok(seconds < 15, `detected within seconds (${seconds} s)`);
});

test('slot dropped while running, rebackfill: detected within seconds, reloaded online; never dark; oracle equal', async () => {
  setOnSlotLost('rebackfill');
  // The previous test left the slot dropped: this start reloads; let it settle first.
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/swapped: the new table is live/, 90_000);
  await eventuallyEqual(source.url(), destination.url(), TABLE, { what: 'before the drop', timeoutMs: 60_000, run });
  const workload = new Workload(source.url(), { ratePerSecond: 300 });
  workload.start();
  const prober = new Prober();
  prober.start();
  try {
    await new Promise((r) => setTimeout(r, 1000));
    const dropped = Date.now();
    await dropSlotUnderSluice();
    await run.waitForOutput(/replication slot lost while running; restarting/, 30_000);
    note(`dropped while running (rebackfill): noticed ${((Date.now() - dropped) / 1000).toFixed(1)} s after the drop`);
    await waitForCount(run, /swapped: the new table is live/, 2, 90_000);
    assert.ok(await slotExists(), 'the slot was recreated');
  } finally {
    await workload.stop();
    await prober.stop();
  }
  await eventuallyEqual(source.url(), destination.url(), TABLE, { what: 'dropped while running', timeoutMs: 60_000, run });
  prober.assertNeverDark('dropped while running');
});

test('slot invalidated while sluice is down (max_slot_wal_keep_size): stop exits 2; rebackfill reloads online; oracle equal', async () => {
  await stopRun();
  await source.query(`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`);
  await source.query(`SELECT pg_reload_conf()`);
  try {
    let status = '';
    for (let i = 0; i < 20 && status !== 'lost'; i++) {
      await source.query(`UPDATE ${TABLE} SET price = coalesce(price, 0) + 1 WHERE id % 7 = $1`, [i % 7]);
      await source.query(`SELECT pg_switch_wal()`);
      await source.query(`CHECKPOINT`);
      status = (await source.query(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`, [SLOT])).rows[0]?.wal_status;
    }
    note(`slot wal_status: ${status}`);
    assert.equal(status, 'lost', 'the slot was invalidated');
  } finally {
    // A new slot must not be invalidated in turn while the reload runs.
    await source.query(`ALTER SYSTEM RESET max_slot_wal_keep_size`);
    await source.query(`SELECT pg_reload_conf()`);
  }

  setOnSlotLost('stop');
  run = spawnSluice(['run'], { config: work.config });
  const r = await run.exited(60_000);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /replication slot sluice_test was invalidated by the source \(wal_status lost; max_slot_wal_keep_size was exceeded\).*onSlotLost: rebackfill/);

  setOnSlotLost('rebackfill');
  const workload = new Workload(source.url(), { ratePerSecond: 300 });
  workload.start();
  await reloadOnline('invalidated while down', workload);
  const s = await source.query(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`, [SLOT]);
  assert.notEqual(s.rows[0].wal_status, 'lost', 'the new slot is healthy');
});
