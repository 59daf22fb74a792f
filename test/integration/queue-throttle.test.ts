/**
 * The backfill queue, the throttle and reading from a replica (docs/architecture.md, "Table lifecycle",
 * "Throttle", contracts 7 and 8), each with its own pipeline on one source, one hot standby of it
 * (startReplica) and one destination cluster (a database per pipeline):
 *
 * 1. FIFO and `pipeline.concurrency: 2`: five small tables, slowed by a shared rows/s ceiling;
 *    sampling `_sluice.tables` shows never more than two backfilling at once, and the tables start in
 *    config order (also by `_sluice.runs`).
 * 2. Every throttle condition pauses and resumes a running backfill, seen in `sluice status --json`
 *    (pipeline.throttle.state and the table's detail) and in progress (rows copied stand still for
 *    2.5 s while paused, and grow again after): the rows/s ceiling bounds the rate; more active
 *    sessions than maxActiveSessions (sessions sleeping in pg_sleep); slot lag over a limit set
 *    live with `sluice throttle --max-slot-lag-bytes 100000` while the slot retains megabytes (its
 *    walsender stopped with SIGSTOP while WAL is written: sluice otherwise confirms within moments),
 *    lifted live with `… 0` while the lag lasts; a throttle query that returns > 0
 *    while a flag row exists; the rows/s ceiling lowered and raised live applies to a chunk that is
 *    already waiting.
 * 3. Read replica: chunks are read from the replica (sluice-chunk sessions there, none on the
 *    primary) while the slot is consumed on the primary; a replica whose replay is paused (with a
 *    row inserted on the primary after the pause, before the backfill) makes the backfill wait
 *    (the table's detail says so, no chunk is committed) until replay resumes; then the destination
 *    equals the source, that row included. Replica lag pauses a backfill (maxReplicaLagSeconds set
 *    live) while replay is paused and writes go on, and resumes once replay resumes.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startClusters, startReplica, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let replica: Cluster | undefined;
let stopAll: (() => Promise<void>) | undefined;
const workdirs: Workdir[] = [];
const runs: Running[] = [];
const clients: pg.Client[] = [];
/** A walsender the slot-lag case stopped (SIGSTOP); continued in `after` should the case fail midway. */
let stoppedPid: number | null = null;
let failed = false;
const t0 = Date.now();
const note = (line: string) => console.log(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  replica = await startReplica(source, 'replica');
  for (const db of ['fifo', 'thr', 'rep']) await destination.createDatabase(db);
});

after(async () => {
  if (stoppedPid !== null) {
    try {
      process.kill(stoppedPid, 'SIGCONT');
    } catch {
      /* gone */
    }
  }
  for (const c of clients) await c.end().catch(() => undefined);
  for (const r of runs) {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      r.kill('SIGKILL');
      await r.exited(10_000).catch(() => undefined);
    }
  }
  await replica?.query('SELECT pg_wal_replay_resume()').catch(() => undefined);
  await replica?.destroy().catch(() => undefined);
  await stopAll?.();
  for (const w of workdirs) {
    if (failed) note(`work directory kept: ${w.dir}`);
    else w.remove();
  }
});

function start(work: Workdir): Running {
  const r = spawnSluice(['run'], { config: work.config });
  runs.push(r);
  return r;
}

/** Runs a test body; on failure keeps the work directories and appends the pipeline's output. */
async function guarded(run: () => Running | undefined, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    failed = true;
    const r = run();
    if (r) {
      (err as Error).message += `\n--- sluice output (tail):\n${r.output().slice(-5000)}`;
      // Stop it now: its sessions would confuse the tests that follow.
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.kill('SIGKILL');
        await r.exited(10_000).catch(() => undefined);
      }
    }
    throw err;
  }
}

interface TableStatus {
  name: string;
  state: string;
  rowsCopied: number;
  detail: string | null;
  error: string | null;
}
interface Status {
  pipeline: { running: boolean; throttle: ({ state: string } & Record<string, unknown>) | null };
  tables: TableStatus[];
}

async function status(work: Workdir): Promise<Status> {
  const r = await sluice(['status', '--json'], { config: work.config, timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout) as Status;
}

async function tableStatus(work: Workdir, table: string): Promise<TableStatus> {
  const t = (await status(work)).tables.find((x) => x.name === table);
  assert.ok(t, `status lists ${table}`);
  return t;
}

async function throttleCommand(work: Workdir, ...args: string[]): Promise<void> {
  const r = await sluice(['throttle', ...args], { config: work.config });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /throttle now/, 'the running pipeline answered');
}

/**
 * The throttle closes: status shows why (pipeline and table detail), and rows copied stand still
 * for 2.5 s (after a second for a chunk admitted just before to commit), and the pipeline's log
 * shows it stayed closed meanwhile. Returns rows copied.
 */
async function expectPaused(work: Workdir, run: Running, table: string, reason: RegExp, what: string): Promise<number> {
  let detailSeen: string | null = null;
  await waitUntil(
    `the throttle to pause for ${what}`,
    async () => {
      const s = await status(work);
      const t = s.tables.find((x) => x.name === table);
      if (t?.detail && reason.test(t.detail)) detailSeen = t.detail;
      return reason.test(String(s.pipeline.throttle?.state)) && detailSeen !== null;
    },
    20_000,
    200,
  );
  const s = await status(work);
  note(`${what}: paused: throttle.state "${s.pipeline.throttle?.state}", table detail "${detailSeen}"`);
  const mark = run.output().length;
  await sleep(1000);
  const a = await tableStatus(work, table);
  assert.equal(a.state, 'backfilling');
  await sleep(2500);
  const b = await tableStatus(work, table);
  const opened = /throttle open again[^\n]*/.exec(run.output().slice(mark));
  assert.equal(opened, null, `${what}: the throttle opened although the condition held`);
  assert.equal(b.rowsCopied, a.rowsCopied, `${what}: rows copied stand still while paused`);
  assert.ok(reason.test(String((await status(work)).pipeline.throttle?.state)), `${what}: still paused`);
  return b.rowsCopied;
}

/** The throttle opens again and rows copied grow. */
async function expectResumed(work: Workdir, table: string, from: number, what: string): Promise<void> {
  await waitUntil(
    `the throttle to open again after ${what}`,
    async () => {
      const s = await status(work);
      const t = s.tables.find((x) => x.name === table)!;
      return s.pipeline.throttle?.state === 'open' && t.rowsCopied > from;
    },
    20_000,
    200,
  );
  note(`${what}: resumed (${(await tableStatus(work, table)).rowsCopied - from} rows since)`);
}

async function waitStreaming(work: Workdir, run: Running, tables: string[], timeoutMs = 90_000): Promise<void> {
  await waitUntil(
    `${tables.join(', ')} to stream`,
    async () => {
      if (run.child.exitCode !== null) throw new Error(`sluice run exited (${run.child.exitCode})`);
      const s = await status(work);
      return tables.every((t) => s.tables.find((x) => x.name === t)?.state === 'streaming');
    },
    timeoutMs,
    300,
  );
}

async function stopClean(run: Running): Promise<void> {
  run.kill('SIGTERM');
  const r = await run.exited(30_000);
  assert.equal(r.code, 0, `exit code after SIGTERM ${r.code}:\n${(r.stdout + r.stderr).slice(-3000)}`);
}

// ---------------------------------------------------------------------------

test('FIFO queue: at most pipeline.concurrency (2) tables backfill at once, in config order', { timeout: 90_000 }, async () => {
  // Sizes differ so that tables finish, and the next ones start, at clearly different moments:
  // q2 runs throughout while q3, q4 and q5 take turns in the other slot. The rows/s ceiling's bucket
  // starts with one second of burst (2000 rows, shared), so every table has more rows than a burst
  // could load before the 40 ms sampler sees it backfilling.
  const sizes = [3000, 10000, 2000, 2000, 2000];
  const names = sizes.map((_, i) => `public.q${i + 1}`);
  for (const [i, n] of sizes.entries()) {
    await source.query(`CREATE TABLE ${names[i]} (id int PRIMARY KEY, v text); INSERT INTO ${names[i]} SELECT g, md5(g::text) FROM generate_series(1, ${n}) g; ANALYZE ${names[i]}`);
  }
  const work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url('fifo'),
    pipeline: 'fifo',
    pipelineExtra: 'concurrency: 2',
    tables: names.map((name) => ({ name, chunkRows: 200, chunkSeconds: 0 })),
    extra: 'throttle: { maxRowsPerSecond: 2000 }',
  });
  workdirs.push(work);
  let run: Running | undefined;
  await guarded(() => run, async () => {
    const dst = new pg.Client({ connectionString: destination.url('fifo') });
    clients.push(dst);
    await dst.connect();
    run = start(work);
    const firstSeen = new Map<string, number>();
    let maxBackfilling = 0;
    const samples: string[] = [];
    const began = Date.now();
    for (;;) {
      if (run.child.exitCode !== null) throw new Error(`sluice run exited (${run.child.exitCode})`);
      if (Date.now() - began > 60_000) throw new Error(`the five tables did not stream within 60 s; last: ${samples.slice(-3).join(' | ')}`);
      const r = await dst
        .query(`SELECT name, state FROM _sluice.tables WHERE pipeline = 'fifo' ORDER BY name`)
        .catch(() => ({ rows: [] as { name: string; state: string }[] }));
      const backfilling = r.rows.filter((x) => x.state === 'backfilling').map((x) => x.name);
      for (const n of backfilling) if (!firstSeen.has(n)) firstSeen.set(n, Date.now() - began);
      if (backfilling.length > maxBackfilling) maxBackfilling = backfilling.length;
      samples.push(r.rows.map((x) => `${x.name.slice(7)}:${x.state}`).join(','));
      assert.ok(backfilling.length <= 2, `never more than 2 tables backfilling at once: ${backfilling.join(', ')}`);
      if (r.rows.length === names.length && r.rows.every((x) => x.state === 'streaming')) break;
      await sleep(40);
    }
    note(`fifo: all streaming after ${Date.now() - began} ms; entered backfilling at ${names.map((n) => `${n.slice(7)}+${firstSeen.get(n)}ms`).join(', ')}`);
    assert.equal(maxBackfilling, 2, 'two tables did backfill at once');
    for (const n of names) assert.ok(firstSeen.has(n), `${n} was seen backfilling`);
    // FIFO: no table starts (noticeably) before one listed earlier.
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        assert.ok(firstSeen.get(names[i])! <= firstSeen.get(names[j])! + 150, `${names[i]} started before ${names[j]}`);
      }
    }
    // The audit rows agree: runs were started in config order (ties within 150 ms excepted: q1 and q2 start together).
    const audit = await dst.query(
      `SELECT table_name, (extract(epoch FROM started_at) * 1000)::float8 AS at FROM _sluice.runs WHERE pipeline = 'fifo' ORDER BY started_at`,
    );
    assert.equal(audit.rowCount, names.length);
    const at = new Map(audit.rows.map((x) => [x.table_name as string, Number(x.at)]));
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        assert.ok(at.get(names[i])! <= at.get(names[j])! + 150, `run of ${names[i]} started after the run of ${names[j]}`);
      }
    }
    // The process's own log: each table after the first two starts only once as many earlier ones
    // have finished copying (a free slot), and they start in config order (q1 and q2 start together).
    const events = [...run.output().matchAll(/(backfill started|backfill copied)[^\n]*table=(public\.q\d)/g)].map((m) => ({ kind: m[1], table: m[2] }));
    const startOrder = events.filter((e) => e.kind === 'backfill started').map((e) => e.table);
    assert.deepEqual([...startOrder.slice(0, 2)].sort(), names.slice(0, 2), `first two started: ${startOrder.join(', ')}`);
    assert.deepEqual(startOrder.slice(2), names.slice(2), `then in config order: ${startOrder.join(', ')}`);
    for (const [k, name] of names.entries()) {
      if (k < 2) continue;
      const i = events.findIndex((e) => e.kind === 'backfill started' && e.table === name);
      const copiedBefore = events.slice(0, i).filter((e) => e.kind === 'backfill copied').length;
      assert.ok(copiedBefore >= k - 1, `${name} started after ${copiedBefore} backfills finished (needs ${k - 1} for a free slot)`);
    }
    for (const n of names) await assertTablesEqual(source.url(), destination.url('fifo'), n);
    await stopClean(run);
  });
});

test('throttle: rows/s ceiling, active sessions, slot lag (changed live), user query: each pauses and resumes a running backfill', { timeout: 150_000 }, async () => {
  const table = 'public.big';
  await source.query(`
    CREATE TABLE ${table} (id int PRIMARY KEY, v text);
    INSERT INTO ${table} SELECT g, md5(g::text) FROM generate_series(1, 100000) g;
    ANALYZE ${table};
    CREATE TABLE public.throttle_flag (id int);
    CREATE TABLE public.walfill (id bigserial PRIMARY KEY, v text);
  `);
  const LIMIT = 2000;
  const work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url('thr'),
    pipeline: 'thr',
    tables: [{ name: table, chunkRows: 200, chunkSeconds: 0 }],
    extra: `throttle: { maxRowsPerSecond: ${LIMIT}, maxActiveSessions: 4, query: "SELECT count(*) FROM public.throttle_flag" }`,
  });
  workdirs.push(work);
  let run: Running | undefined;
  await guarded(() => run, async () => {
    run = start(work);
    await waitUntil('the backfill to copy rows', async () => (await tableStatus(work, table)).rowsCopied > 0, 30_000, 200);
    await waitUntil('status to show the throttle', async () => (await status(work)).pipeline.throttle !== null, 10_000, 200);

    // (a) the rows/s ceiling: rows copied over 4 s stay within 1.5× the limit (and the load moves).
    const s0 = await status(work);
    assert.equal(s0.pipeline.throttle?.state, 'open');
    assert.equal(s0.pipeline.throttle?.maxRowsPerSecond, LIMIT);
    const a0 = await tableStatus(work, table);
    const w0 = Date.now();
    await sleep(4000);
    const a1 = await tableStatus(work, table);
    const seconds = (Date.now() - w0) / 1000;
    const rate = (a1.rowsCopied - a0.rowsCopied) / seconds;
    note(`rows/s ceiling ${LIMIT}: ${a1.rowsCopied - a0.rowsCopied} rows in ${seconds.toFixed(1)} s = ${Math.round(rate)} rows/s`);
    assert.ok(a1.rowsCopied - a0.rowsCopied <= 1.5 * LIMIT * seconds, `rate ${Math.round(rate)} rows/s is bounded by the ceiling ${LIMIT}`);
    assert.ok(rate >= 0.5 * LIMIT, `rate ${Math.round(rate)} rows/s: the load moves`);

    // (b) more active sessions than maxActiveSessions (4): six sessions sleeping on the source.
    const sleepers: pg.Client[] = [];
    for (let i = 0; i < 6; i++) {
      const c = new pg.Client({ connectionString: source.url(), application_name: 'test-sleeper' });
      c.on('error', () => undefined);
      clients.push(c);
      await c.connect();
      sleepers.push(c);
      c.query('SELECT pg_sleep(30)').catch(() => undefined);
    }
    let at = await expectPaused(work, run, table, /active sessions on the source > 4/, 'active sessions');
    await source.query(`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'test-sleeper'`);
    await expectResumed(work, table, at, 'active sessions');
    for (const c of sleepers) await c.end().catch(() => undefined);

    // (c) slot lag: sluice confirms its slot within moments of any WAL, so to make the slot retain
    // WAL for sure its walsender is stopped (SIGSTOP, while it idles waiting for WAL), and WAL is
    // written: the slot retains megabytes. A limit of 100 kB set live pauses the backfill; lifting
    // it live (0) lets it go on although the slot still lags. Then the walsender continues.
    const walsender = (await source.query(`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = 'sluice_thr'`)).rows[0].pid as number;
    await waitUntil(
      'the walsender to idle',
      async () => /^WalSender(WaitForWal|Main)$/i.test((await source.query(`SELECT wait_event FROM pg_stat_activity WHERE pid = $1`, [walsender])).rows[0]?.wait_event ?? ''),
      10_000,
      10,
    );
    stoppedPid = walsender;
    process.kill(walsender, 'SIGSTOP');
    try {
      await source.query(`INSERT INTO public.walfill (v) SELECT md5(g::text) FROM generate_series(1, 20000) g`);
      await throttleCommand(work, '--max-slot-lag-bytes', '100000');
      at = await expectPaused(work, run, table, /slot retains \d+ bytes of WAL > 100000/, 'slot lag');
      await throttleCommand(work, '--max-slot-lag-bytes', '0');
      await expectResumed(work, table, at, 'slot lag');
      const lag = (await source.query(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS b FROM pg_replication_slots WHERE slot_name = 'sluice_thr'`)).rows[0].b;
      assert.ok(lag > 100_000, `the backfill went on because the limit was lifted, not because the lag went away (${lag} bytes)`);
    } finally {
      process.kill(walsender, 'SIGCONT');
      stoppedPid = null;
    }
    assert.equal((await status(work)).pipeline.throttle?.maxSlotLagBytes, 0);

    // (d) the user's throttle query: > 0 while a flag row exists.
    await source.query(`INSERT INTO public.throttle_flag VALUES (1)`);
    at = await expectPaused(work, run, table, /throttle query returned 1/, 'throttle query');
    await source.query(`DELETE FROM public.throttle_flag`);
    await expectResumed(work, table, at, 'throttle query');

    // The ceiling lowered live (20 rows/s: a 200-row chunk waits 10 s), then raised live: the chunk
    // already waiting goes on at the new ceiling, not after the 10 s it was told at first.
    await throttleCommand(work, '--max-rows-per-second', '20');
    await sleep(1500);
    const low0 = await tableStatus(work, table);
    await sleep(3000);
    const low1 = await tableStatus(work, table);
    note(`rows/s ceiling lowered to 20: ${low1.rowsCopied - low0.rowsCopied} rows in 3 s; detail "${low1.detail}"`);
    assert.ok(low1.rowsCopied - low0.rowsCopied <= 200, `at most one 200-row chunk in 3 s at 20 rows/s (${low1.rowsCopied - low0.rowsCopied})`);
    await throttleCommand(work, '--max-rows-per-second', String(LIMIT));
    const raised = Date.now();
    await waitUntil('the load to go on at the raised ceiling', async () => (await tableStatus(work, table)).rowsCopied >= low1.rowsCopied + 1000, 4000, 200);
    note(`rows/s ceiling raised back to ${LIMIT}: 1000 more rows after ${Date.now() - raised} ms`);

    // The ceiling lifted live: the rest loads at full speed; the table streams and is equal.
    const before = await tableStatus(work, table);
    await throttleCommand(work, '--max-rows-per-second', '0');
    const lifted = Date.now();
    await waitStreaming(work, run, [table], 60_000);
    note(`ceiling lifted: the remaining ${100_000 - before.rowsCopied} rows loaded in ${Date.now() - lifted} ms`);
    await assertTablesEqual(source.url(), destination.url('thr'), table);
    await stopClean(run);
  });
});

test('read replica: chunks come from the replica, a lagging replica holds the backfill until it has replayed past L0; replica lag pauses the throttle', { timeout: 150_000 }, async () => {
  const table = 'public.rep_t';
  const ROWS = 30_000;
  await source.query(`
    CREATE TABLE ${table} (id int PRIMARY KEY, v text);
    INSERT INTO ${table} SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g;
    ANALYZE ${table};
  `);
  await waitUntil('the replica to have the table', async () => {
    const r = await replica!.query(`SELECT count(*)::int AS n FROM ${table}`).catch(() => null);
    return r?.rows[0].n === ROWS;
  });
  const work = makeWorkdir({
    sourceUrl: source.url(),
    replicaUrl: replica!.url(),
    destinationUrl: destination.url('rep'),
    pipeline: 'rep',
    tables: [{ name: table, chunkRows: 300, chunkSeconds: 0, mode: 'truncate' }],
    extra: 'throttle: { maxRowsPerSecond: 2500 }',
  });
  workdirs.push(work);
  let run: Running | undefined;
  await guarded(() => run, async () => {
    // The replica stops replaying; then a row is written on the primary, before the backfill starts.
    await replica!.query(`SELECT pg_wal_replay_pause()`);
    await waitUntil('replay to pause', async () => (await replica!.query(`SELECT pg_get_wal_replay_pause_state() AS s`)).rows[0].s === 'paused');
    await source.query(`INSERT INTO ${table} VALUES (999999, 'written while the replica lags')`);

    run = start(work);
    await waitUntil(
      'the backfill to wait for the replica',
      async () => /waiting for the replica to replay past/.test((await tableStatus(work, table)).detail ?? ''),
      30_000,
      200,
    );
    note(`lagging replica: detail "${(await tableStatus(work, table)).detail}"`);
    await sleep(2500);
    const waiting = await destination.query(
      `SELECT state, chunks_done::int AS chunks, rows_copied::int AS rows FROM _sluice.tables WHERE pipeline = 'rep' AND name = $1`,
      [table],
      'rep',
    );
    assert.deepEqual(waiting.rows[0], { state: 'backfilling', chunks: 0, rows: 0 }, 'no chunk is committed while the replica lags');

    await replica!.query(`SELECT pg_wal_replay_resume()`);
    // During the load: chunk sessions on the replica, none on the primary; the slot is read on the primary.
    let onReplica = 0;
    let onPrimary = 0;
    let slotActive = false;
    const loadStarted = Date.now();
    while (Date.now() - loadStarted < 30_000) {
      const [r, p, s] = await Promise.all([
        replica!.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'sluice-chunk' AND query LIKE '%rep_t%'`),
        source.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'sluice-chunk' AND query LIKE '%rep_t%'`),
        source.query(`SELECT active FROM pg_replication_slots WHERE slot_name = 'sluice_rep'`),
      ]);
      onReplica = Math.max(onReplica, r.rows[0].n);
      onPrimary = Math.max(onPrimary, p.rows[0].n);
      slotActive ||= s.rows[0]?.active === true;
      if (onReplica > 0 && slotActive && (await tableStatus(work, table)).rowsCopied > 3000) break;
      await sleep(100);
    }
    note(`read replica: sluice-chunk sessions reading on the replica ${onReplica}, on the primary ${onPrimary}; slot active on the primary: ${slotActive}`);
    assert.ok(onReplica > 0, 'chunks are read on the replica');
    assert.equal(onPrimary, 0, 'no chunk is read on the primary');
    assert.ok(slotActive, 'CDC reads the slot on the primary');
    await waitStreaming(work, run, [table]);
    await assertTablesEqual(source.url(), destination.url('rep'), table);
    const row = await destination.query(`SELECT v FROM ${table} WHERE id = 999999`, [], 'rep');
    assert.equal(row.rows[0]?.v, 'written while the replica lags');
    assert.match(run.output(), /replica has replayed past L0; reading chunks from it/);

    // (e) replica lag: set live; a new backfill; replay paused while the primary is written → paused.
    await throttleCommand(work, '--max-replica-lag-seconds', '2');
    const req = await sluice(['backfill', table, '--mode', 'upsert'], { config: work.config });
    assert.equal(req.code, 0, req.stdout + req.stderr);
    await waitUntil(
      'the upsert backfill to copy rows',
      async () => {
        const t = await tableStatus(work, table);
        return t.state === 'backfilling' && t.rowsCopied > 0;
      },
      30_000,
      200,
    );
    await replica!.query(`SELECT pg_wal_replay_pause()`);
    await source.query(`INSERT INTO ${table} VALUES (1000000, 'written while replay is paused')`);
    const at = await expectPaused(work, run, table, /replica lag \d+ s > 2 s/, 'replica lag');
    await replica!.query(`SELECT pg_wal_replay_resume()`);
    await expectResumed(work, table, at, 'replica lag');
    await waitStreaming(work, run, [table]);
    await waitUntil('the destination to equal the source', async () =>
      assertTablesEqual(source.url(), destination.url('rep'), table).then(
        () => true,
        () => false,
      ),
    );
    await assertTablesEqual(source.url(), destination.url('rep'), table);
    await stopClean(run);
  });
});
