/**
 * Fault matrix, network paths and locks, under a write load, each ending equal (independent oracle):
 *
 * 3. sluice reaches the source through a TCP proxy (test/support/tcp-proxy.ts) that stops carrying
 *    packets without closing anything. sluice must notice within source.replicationTimeoutMs (10 s
 *    here) plus a status interval, and recover by itself: (a) when only the old flows died (new
 *    connections pass) it ends the walsender that still holds the slot and resumes at once; (b) when
 *    nothing passes, it keeps trying with bounded connect attempts and resumes once the path is reset.
 * 4. A user session holds ACCESS EXCLUSIVE on the destination table for 20 s: `sluice status` says
 *    what the table waits for and who holds the lock; nothing times out into a wrong state; after the
 *    lock is released the table streams on and is equal.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createDemoTable, Workload } from '../../src/demo/workload.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { eventuallyEqual, makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';
import { TcpProxy } from '../support/tcp-proxy.js';

const TABLE = 'public.orders';
const ROWS = 20_000;
const REPLICATION_TIMEOUT_MS = 10_000;
/** Detection bound: the timeout, one status interval (1 s), and slack for a loaded machine. */
/** Longer than the detection bound: the blackhole outlasts the dead connection and the reconnects that follow. */
const BLACKHOLE_MS = 20_000;
const DETECT_BOUND_S = REPLICATION_TIMEOUT_MS / 1000 + 1 + 4;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let proxy: TcpProxy;
let work: Workdir | undefined;
let run: Running | undefined;
let workload: Workload | undefined;
const t0 = Date.now();
const note = (line: string) => console.log(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const count = (re: RegExp) => run!.output().match(new RegExp(re.source, 'g'))?.length ?? 0;

interface StatusJson {
  pipeline: { running: boolean; sourceError?: string };
  tables: {
    name: string;
    state: string;
    error: string | null;
    detail: string | null;
    lockWaits: { relation: string | null; applicationName: string; blockers: { pid: number; applicationName: string; query: string }[] }[];
  }[];
}

before(async () => {
  const c = await startClusters();
  source = c.source;
  destination = c.destination;
  stopAll = c.stopAll;
  await createDemoTable(source.url(), { rows: ROWS });
  proxy = new TcpProxy(source.port);
  await proxy.start();
  work = makeWorkdir({
    sourceUrl: proxy.url(source.url()),
    destinationUrl: destination.url(),
    sourceExtra: `replicationTimeoutMs: ${REPLICATION_TIMEOUT_MS}`,
    tables: [{ name: TABLE, chunkRows: 5000 }],
  });
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 90_000);
  note('streaming');
});

after(async () => {
  await workload?.stop().catch(() => undefined);
  if (run && run.child.exitCode === null && run.child.signalCode === null) {
    run.kill('SIGKILL');
    await run.exited(10_000).catch(() => undefined);
  }
  if (process.env.SLUICE_TEST_DUMP && run) (await import('node:fs')).writeFileSync(process.env.SLUICE_TEST_DUMP, run.output());
  await proxy?.stop();
  await stopAll?.();
  work?.remove();
});

async function status(): Promise<{ json: StatusJson; seconds: number }> {
  const started = Date.now();
  const r = await sluice(['status', '--json'], { config: work!.config, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return { json: JSON.parse(r.stdout) as StatusJson, seconds: (Date.now() - started) / 1000 };
}

function startLoad(): void {
  workload = new Workload(source.url(), { ratePerSecond: 200 });
  workload.start();
}

async function settleEqual(what: string): Promise<void> {
  await workload?.stop();
  workload = undefined;
  const started = Date.now();
  await eventuallyEqual(source.url(), destination.url(), TABLE, { what, timeoutMs: 60_000, run, everyMs: 500 });
  const n = (await destination.query(`SELECT count(*)::int AS n FROM ${TABLE}`)).rows[0].n;
  note(`${what}: destination equals source (${n} rows), ${((Date.now() - started) / 1000).toFixed(1)} s after the load stopped`);
}

/** Seconds from `since` until the output has more than `before` matches of `re`. */
async function secondsUntil(re: RegExp, before: number, since: number, timeoutMs: number): Promise<number> {
  await waitUntil(`sluice to print ${re}`, async () => {
    if (run!.child.exitCode !== null) throw new Error(`sluice run exited (${run!.child.exitCode}):\n${run!.output()}`);
    return count(re) > before;
  }, timeoutMs, 100);
  return (Date.now() - since) / 1000;
}

const DEAD = /no data from the source for/;
const BACK = /replication connection re-established/;

test('old flows to the source die silently, new ones pass: noticed within the bound, resumes at once', { timeout: 90_000 }, async () => {
  startLoad();
  await sleep(2000);
  const dead = count(DEAD);
  const back = count(BACK);
  const at = Date.now();
  proxy.blackhole({ newConnections: 'forward' });
  note('existing flows blackholed; new connections pass');
  const detect = await secondsUntil(DEAD, dead, at, 60_000);
  note(`dead replication connection noticed after ${detect.toFixed(1)} s (bound ${DETECT_BOUND_S} s)`);
  assert.ok(detect <= DETECT_BOUND_S, `noticed within ${DETECT_BOUND_S} s (${detect} s)`);
  const recovered = await secondsUntil(BACK, back, at, 60_000);
  note(`capture resumed ${recovered.toFixed(1)} s after the flows died (the old walsender ended: ${/ended the walsender/.test(run!.output())})`);
  await settleEqual('after dead flows');
  // The dead flows stay as they are (the heartbeat's is dropped by its own timeout); the next test resets them.
});

test('the path to the source blackholed for 20 s, then reset: noticed within the bound, resumes by itself', { timeout: 120_000 }, async () => {
  startLoad();
  await sleep(2000);
  const dead = count(DEAD);
  const back = count(BACK);
  const at = Date.now();
  proxy.blackhole();
  note('path blackholed (new connections held too)');
  // status does not hang on the unreachable source: it reports it after the connect timeout.
  const during = status();
  const detect = await secondsUntil(DEAD, dead, at, 60_000);
  note(`dead replication connection noticed after ${detect.toFixed(1)} s (bound ${DETECT_BOUND_S} s)`);
  assert.ok(detect <= DETECT_BOUND_S, `noticed within ${DETECT_BOUND_S} s (${detect} s)`);
  const st = await during;
  note(`status during the blackhole took ${st.seconds.toFixed(1)} s; source: ${st.json.pipeline.sourceError}`);
  assert.ok(st.json.pipeline.sourceError, 'status reports the source unreachable');
  assert.ok(st.seconds < 45, `status answered in ${st.seconds} s`);

  await sleep(Math.max(0, BLACKHOLE_MS - (Date.now() - at)));
  assert.equal(count(BACK), back, 'nothing got through while blackholed');
  const resetAt = Date.now();
  proxy.reset();
  note('path reset');
  const recovered = await secondsUntil(BACK, back, resetAt, 60_000);
  note(`capture resumed ${recovered.toFixed(1)} s after the reset`);
  await settleEqual('after the blackhole');
  assert.equal(run!.child.exitCode, null, 'sluice run still running');
});

test('a user holds ACCESS EXCLUSIVE on the destination table for 20 s: status names the lock and its holder; equal after', { timeout: 120_000 }, async () => {
  startLoad();
  await sleep(1000);
  const locker = new pg.Client({ connectionString: destination.url(), application_name: 'faults-test-locker' });
  locker.on('error', () => undefined);
  await locker.connect();
  const pid = (await locker.query(`SELECT pg_backend_pid() AS pid`)).rows[0].pid as number;
  const lockedAt = Date.now();
  await locker.query(`BEGIN; LOCK TABLE ${TABLE} IN ACCESS EXCLUSIVE MODE`);
  note(`lock taken by pid ${pid}`);
  try {
    let seen: StatusJson['tables'][number] | undefined;
    await waitUntil(
      'status to name the lock',
      async () => {
        const { json } = await status();
        seen = json.tables.find((t) => t.name === TABLE);
        assert.equal(json.pipeline.running, true, 'the pipeline is still running');
        return (seen?.lockWaits.length ?? 0) > 0;
      },
      15_000,
      500,
    );
    note(`status detail after ${((Date.now() - lockedAt) / 1000).toFixed(1)} s: ${seen!.detail}`);
    assert.match(seen!.detail ?? '', new RegExp(`waiting \\d+ s for a lock on public\\.orders .*held by pid ${pid} \\(application_name faults-test-locker`));
    assert.equal(seen!.lockWaits[0].blockers[0].pid, pid);
    assert.match(seen!.lockWaits[0].blockers[0].query, /LOCK TABLE/);
    assert.equal(seen!.error, null);
    await sleep(Math.max(0, 20_000 - (Date.now() - lockedAt)));
    const { json } = await status();
    const t = json.tables.find((x) => x.name === TABLE)!;
    note(`after 20 s: state ${t.state}, error ${t.error}, still waiting: ${t.lockWaits.length > 0}`);
    assert.equal(t.error, null);
    assert.equal(t.state, 'streaming');
  } finally {
    await locker.query('COMMIT').catch(() => undefined);
    await locker.end().catch(() => undefined);
  }
  note('lock released');
  await settleEqual('after the lock');
  const { json } = await status();
  const t = json.tables.find((x) => x.name === TABLE)!;
  assert.equal(t.state, 'streaming');
  assert.equal(t.lockWaits.length, 0);
  assert.equal(t.error, null);
});
