/**
 * Fault matrix, network paths and locks, under a write load, each ending equal (independent oracle):
 *
 * 3. sluice reaches the source and the destination through TCP proxies (test/support/tcp-proxy.ts)
 *    that stop carrying packets without closing anything. sluice must notice within
 *    source.replicationTimeoutMs (10 s here) plus a status interval on the replication connection,
 *    and within pipeline.deadConnectionCheckMs (5 s here) plus the check on a statement waiting for the
 *    destination, and recover by itself: (a) when only the old flows died (new connections pass) it
 *    ends the sessions left behind (the walsender that still holds the slot, the idle destination
 *    sessions) and resumes at once; (b) when nothing passes, it keeps trying with bounded connect
 *    attempts and resumes once the paths are reset.
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
const DEAD_CONNECTION_CHECK_MS = 5000;
/** Detection bound: the timeout, one status interval (1 s), and slack for a loaded machine. */
/**
 * Longer than the detection bounds: on the destination, with new connections held too, the check's
 * own connect attempt must time out (15 s) before the path is called dead.
 */
const BLACKHOLE_MS = 25_000;
const DETECT_BOUND_S = REPLICATION_TIMEOUT_MS / 1000 + 1 + 4;
/** The statement's silence, the check interval, the check itself (its connect timeout when nothing passes), slack. */
const DST_DETECT_BOUND_S = (held: boolean) => DEAD_CONNECTION_CHECK_MS / 1000 + 2 + (held ? 15 : 1) + 4;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let proxy: TcpProxy;
let proxyDst: TcpProxy;
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
  proxyDst = new TcpProxy(destination.port);
  await proxyDst.start();
  work = makeWorkdir({
    sourceUrl: proxy.url(source.url()),
    destinationUrl: proxyDst.url(destination.url()),
    sourceExtra: `replicationTimeoutMs: ${REPLICATION_TIMEOUT_MS}`,
    pipelineExtra: `deadConnectionCheckMs: ${DEAD_CONNECTION_CHECK_MS}`,
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
  await proxyDst?.stop();
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
const DST_DEAD = /dead path: no reply/;
const BACK = /replication connection re-established/;

test('old flows to both servers die silently, new ones pass: noticed within the bounds, resumes at once', { timeout: 90_000 }, async () => {
  startLoad();
  await sleep(2000);
  const dead = count(DEAD);
  const dstDead = count(DST_DEAD);
  const back = count(BACK);
  const at = Date.now();
  proxy.blackhole({ newConnections: 'forward' });
  proxyDst.blackhole({ newConnections: 'forward' });
  note('existing flows to the source and the destination blackholed; new connections pass');
  const [dstDetect, detect] = await Promise.all([secondsUntil(DST_DEAD, dstDead, at, 60_000), secondsUntil(DEAD, dead, at, 60_000)]);
  note(`dead destination connection noticed after ${dstDetect.toFixed(1)} s (bound ${DST_DETECT_BOUND_S(false)} s)`);
  note(`dead replication connection noticed after ${detect.toFixed(1)} s (bound ${DETECT_BOUND_S} s)`);
  assert.ok(detect <= DETECT_BOUND_S, `noticed within ${DETECT_BOUND_S} s (${detect} s)`);
  assert.ok(dstDetect <= DST_DETECT_BOUND_S(false), `noticed within ${DST_DETECT_BOUND_S(false)} s (${dstDetect} s)`);
  const recovered = await secondsUntil(BACK, back, at, 60_000);
  note(`capture resumed ${recovered.toFixed(1)} s after the flows died (the old walsender ended: ${/ended the walsender/.test(run!.output())})`);
  await settleEqual('after dead flows');
  const st = await status();
  assert.equal(st.json.pipeline.running, true, 'the status heartbeat goes on');
  // The dead flows stay as they are (the heartbeat's is dropped by its own timeout); the next test resets them.
});

test('the paths to both servers blackholed for 25 s, then reset: noticed within the bounds, resumes by itself', { timeout: 120_000 }, async () => {
  startLoad();
  await sleep(2000);
  const dead = count(DEAD);
  const dstDead = count(DST_DEAD);
  const back = count(BACK);
  const at = Date.now();
  proxy.blackhole();
  proxyDst.blackhole();
  note('paths blackholed (new connections held too)');
  // status does not hang on an unreachable destination: it gives up after the connect timeout.
  const startedStatus = Date.now();
  const during = sluice(['status', '--json'], { config: work!.config, timeoutMs: 60_000 });
  const dstDetecting = secondsUntil(DST_DEAD, dstDead, at, 60_000);
  const detect = await secondsUntil(DEAD, dead, at, 60_000);
  note(`dead replication connection noticed after ${detect.toFixed(1)} s (bound ${DETECT_BOUND_S} s)`);
  assert.ok(detect <= DETECT_BOUND_S, `noticed within ${DETECT_BOUND_S} s (${detect} s)`);
  const st = await during;
  const statusSeconds = (Date.now() - startedStatus) / 1000;
  note(`status during the blackhole: exit ${st.code} after ${statusSeconds.toFixed(1)} s: ${st.stderr.trim()}`);
  assert.equal(st.code, 2);
  assert.match(st.stderr, /destination .*cannot connect: timeout expired/);
  assert.ok(statusSeconds < 45, `status answered in ${statusSeconds} s`);
  const dstDetect = await dstDetecting;
  note(`dead destination connection noticed after ${dstDetect.toFixed(1)} s (bound ${DST_DETECT_BOUND_S(true)} s)`);
  assert.ok(dstDetect <= DST_DETECT_BOUND_S(true), `noticed within ${DST_DETECT_BOUND_S(true)} s (${dstDetect} s)`);

  await sleep(Math.max(0, BLACKHOLE_MS - (Date.now() - at)));
  assert.equal(count(BACK), back, 'nothing got through while blackholed');
  const resetAt = Date.now();
  proxy.reset();
  proxyDst.reset();
  note('paths reset');
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
