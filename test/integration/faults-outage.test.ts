/**
 * Fault matrix, outages: a server goes away for 20 s under a write load and comes back on the same
 * port. No operator action in between: sluice must resume by itself and end equal (independent oracle).
 *
 * 1. The destination is stopped during a backfill, then during streaming. Capture goes on into the
 *    change log (the slot keeps being acknowledged); chunks and applies retry with backoff; `sluice
 *    status` during the outage exits with a clear message instead of hanging.
 * 2. The source is stopped during a backfill (a reload in upsert mode): capture reconnects and resumes
 *    from the slot, chunks retry.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createDemoTable, Workload } from '../../src/demo/workload.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { eventuallyEqual, makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

const TABLE = 'public.orders';
const SLOT = 'sluice_test';
const ROWS = 30_000;
const OUTAGE_MS = 20_000;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir | undefined;
let run: Running | undefined;
let workload: Workload | undefined;
const t0 = Date.now();
const note = (line: string) => console.log(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  const c = await startClusters();
  source = c.source;
  destination = c.destination;
  stopAll = c.stopAll;
  await createDemoTable(source.url(), { rows: ROWS });
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    // Slow enough (about 10 s) that an outage lands in the middle of the load.
    tables: [{ name: TABLE, chunkRows: 1500, chunkSeconds: 0 }],
    extra: 'throttle: { maxRowsPerSecond: 3000 }',
  });
});

after(async () => {
  await workload?.stop().catch(() => undefined);
  if (run && run.child.exitCode === null && run.child.signalCode === null) {
    run.kill('SIGKILL');
    await run.exited(10_000).catch(() => undefined);
  }
  if (process.env.SLUICE_TEST_DUMP && run) (await import('node:fs')).writeFileSync(process.env.SLUICE_TEST_DUMP, run.output());
  await stopAll?.();
  work?.remove();
});

interface StatusTable {
  name: string;
  state: string;
  rowsCopied: number;
  error: string | null;
}

async function tableStatus(): Promise<StatusTable | undefined> {
  const r = await sluice(['status', '--json'], { config: work!.config, timeoutMs: 30_000 });
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as { tables: StatusTable[] }).tables.find((t) => t.name === TABLE);
}

/** The table's row in the destination's state (cheaper to poll than `sluice status`). */
async function tableState(): Promise<{ state: string; error: string | null; rowsCopied: number } | undefined> {
  const r = await destination.query(`SELECT state, error, rows_copied::float8 AS n FROM _sluice.tables WHERE pipeline = 'test' AND name = $1`, [TABLE]).catch(() => null);
  const x = r?.rows[0];
  return x ? { state: x.state, error: x.error, rowsCopied: Number(x.n) } : undefined;
}

async function waitStreaming(what: string, timeoutMs = 120_000): Promise<void> {
  await waitUntil(
    what,
    async () => {
      if (run!.child.exitCode !== null) throw new Error(`sluice run exited (${run!.child.exitCode}):\n${run!.output()}`);
      const st = await tableState();
      assert.equal(st?.error ?? null, null, `no table error (${st?.error})`);
      return st?.state === 'streaming';
    },
    timeoutMs,
    300,
  );
}

async function confirmedLsn(): Promise<string> {
  const r = await source.query(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [SLOT]);
  return r.rows[0].lsn as string;
}

async function lsnDiff(a: string, b: string): Promise<number> {
  const r = await source.query(`SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::float8 AS d`, [a, b]);
  return Number(r.rows[0].d);
}

/** Stops the load and waits for the oracle to agree; returns the seconds it took. */
async function settleEqual(what: string): Promise<number> {
  await workload?.stop();
  note(`${what}: workload stopped ${JSON.stringify(workload?.stats)}`);
  workload = undefined;
  const started = Date.now();
  await eventuallyEqual(source.url(), destination.url(), TABLE, { what, timeoutMs: 60_000, run, everyMs: 500 });
  const s = (Date.now() - started) / 1000;
  const n = (await destination.query(`SELECT count(*)::int AS n FROM ${TABLE}`)).rows[0].n;
  note(`${what}: destination equals source (${n} rows) ${s.toFixed(1)} s after the load stopped`);
  return s;
}

function startLoad(): void {
  workload = new Workload(source.url(), { ratePerSecond: 300 });
  workload.start();
}

/** Stops `cluster` for OUTAGE_MS and starts it again on the same port; `during` runs meanwhile. */
async function outage(cluster: Cluster, during: () => Promise<void>): Promise<void> {
  const stoppedAt = Date.now();
  await cluster.stop();
  note(`${cluster.name} stopped`);
  await during();
  await sleep(Math.max(0, OUTAGE_MS - (Date.now() - stoppedAt)));
  await cluster.start();
  note(`${cluster.name} started again on port ${cluster.port} after ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s`);
}

test('destination down 20 s during a backfill: capture goes on, the load resumes by itself, equal', { timeout: 150_000 }, async () => {
  startLoad();
  run = spawnSluice(['run'], { config: work!.config });
  await run.waitForOutput(/backfill started/, 60_000);
  await waitUntil('some chunks copied', async () => (await destination.query(`SELECT count(*)::int AS n FROM ${TABLE}`)).rows[0].n >= 3000, 60_000, 100);

  await outage(destination, async () => {
    // Capture does not need the destination: the slot keeps being acknowledged.
    await sleep(2000);
    const before = await confirmedLsn();
    const started = Date.now();
    const st = await sluice(['status', '--json'], { config: work!.config, timeoutMs: 60_000 });
    const took = (Date.now() - started) / 1000;
    note(`status during the outage: exit ${st.code} in ${took.toFixed(1)} s: ${st.stderr.trim()}`);
    assert.notEqual(st.code, 0);
    assert.match(st.stderr, /destination .*cannot connect/);
    assert.ok(took < 30, `status answered within 30 s (${took} s)`);
    await sleep(8000);
    const moved = await lsnDiff(await confirmedLsn(), before);
    note(`slot confirmed position moved ${moved} bytes in 8 s of the outage`);
    assert.ok(moved > 0, 'the slot is acknowledged while the destination is down');
  });
  const back = Date.now();
  await waitStreaming('the table to stream after the destination came back');
  note(`streaming ${((Date.now() - back) / 1000).toFixed(1)} s after the destination came back`);
  assert.ok(run.child.exitCode === null, 'sluice run still running');
  await settleEqual('destination outage during the backfill');
});

test('destination down 20 s while streaming: applies resume by themselves, equal', { timeout: 120_000 }, async () => {
  startLoad();
  await sleep(2000);
  await outage(destination, async () => {
    await sleep(3000);
    const before = await confirmedLsn();
    await sleep(8000);
    const moved = await lsnDiff(await confirmedLsn(), before);
    note(`slot confirmed position moved ${moved} bytes in 8 s of the outage`);
    assert.ok(moved > 0, 'the slot is acknowledged while the destination is down');
  });
  await settleEqual('destination outage while streaming');
  assert.equal((await tableStatus())?.state, 'streaming');
});

test('source down 20 s during a reload: capture resumes from the slot, chunks retry, equal', { timeout: 150_000 }, async () => {
  startLoad();
  const before = run!.output().match(/backfill started/g)?.length ?? 0;
  const req = await sluice(['backfill', TABLE, '--mode', 'upsert'], { config: work!.config, timeoutMs: 30_000 });
  assert.equal(req.code, 0, req.stdout + req.stderr);
  await waitUntil('the reload to start', async () => (run!.output().match(/backfill started/g)?.length ?? 0) > before, 60_000, 100);
  await waitUntil('some chunks of the reload', async () => ((await tableState())?.rowsCopied ?? 0) >= 3000, 60_000, 100);

  await outage(source, async () => undefined);
  const back = Date.now();
  await run!.waitForOutput(/replication connection re-established/, 60_000);
  note(`capture re-established ${((Date.now() - back) / 1000).toFixed(1)} s after the source came back`);
  await waitStreaming('the reload to finish after the source came back');
  note(`streaming ${((Date.now() - back) / 1000).toFixed(1)} s after the source came back`);
  await settleEqual('source outage during a reload');

  // A clean stop still works after all that.
  run!.kill('SIGTERM');
  const r = await run!.exited(30_000);
  assert.equal(r.code, 0, `exit after SIGTERM: ${r.code}\n${(r.stdout + r.stderr).slice(-3000)}`);
});
