/**
 * CDC against pg_recvlogical: the rate of one burst of updates, and the cost of an idle sluice on a
 * busy source. A script that prints figures; it asserts only that the destination equals the source
 * after a burst.
 *
 *   node dist/bench/cdc-footprint.js burst [--rows 1000000] [--updates 300000] [--txns 30] [--runs 3] [--batch-rows N] [--batch-bytes N]
 *   node dist/bench/cdc-footprint.js idle [--seconds 15] [--runs 3] [--clients 2]
 *
 * SLUICE_PG_BIN_DIR=/usr/lib/postgresql/15/bin runs the clusters on that PostgreSQL build (its
 * pg_recvlogical and pgbench are used as well; without it they are looked up in the embedded
 * binaries, then /usr/lib/postgresql/15/bin).
 *
 * burst: a 1M-row demo table is backfilled, then each run writes `updates` single-row-changing
 * updates in `txns` transactions. sluice's clock runs from the first commit until the change log
 * holds every change (capture) and until the destination has committed them (capture + apply); CPU
 * seconds of this process (sluice: both threads) and peak RSS are recorded. A second slot
 * (pgoutput, same table), created before the burst, is then drained by pg_recvlogical to
 * /dev/null up to the WAL position after the burst: its wall time is the reference rate. A third
 * slot, made at the same time, is drained the same way by sluice's capture alone (its thread, a
 * change log of its own with fsync, as in a pipeline; in a child process): the like-for-like
 * figure (the two drains alternate which goes first).
 *
 * idle: pgbench (-c C -j C -T S, its own tables) alone; beside pg_recvlogical streaming pgoutput
 * for a publication of a one-row table; beside a sluice pipeline replicating that one-row table.
 * Rounds interleave the three. For sluice: CPU seconds and write calls/bytes of this process
 * (/proc/self/io) during the pgbench run.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { parseConfig } from '../src/config/load.js';
import { silentLogger } from '../src/core/logger.js';
import { createDemoTable } from '../src/demo/workload.js';
import { postgresBinDir, startCluster, type Cluster } from '../src/embedded/clusters.js';
import { createPipeline, type Pipeline } from '../src/pipeline/orchestrator.js';
import { Capture } from '../src/pipeline/capture.js';
import { EmbeddedChangeLog } from '../src/changelog/embedded/embedded-change-log.js';
import { tableChecksum } from '../test/support/oracle.js';
import { RssSampler, intOption, withClient } from './support.js';

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rows: { type: 'string' },
    updates: { type: 'string' },
    txns: { type: 'string' },
    runs: { type: 'string' },
    seconds: { type: 'string' },
    clients: { type: 'string' },
    'batch-rows': { type: 'string' },
    'batch-bytes': { type: 'string' },
  },
});
const MODE = positionals[0] ?? 'burst';

/** The config's apply section for --batch-rows / --batch-bytes (experiments), or nothing: the defaults. */
function applyConfig(): string {
  const a: string[] = [];
  if (flags['batch-rows']) a.push(`batchRows: ${intOption(flags['batch-rows'], 20_000)}`);
  if (flags['batch-bytes']) a.push(`batchBytes: ${intOption(flags['batch-bytes'], 4 << 20)}`);
  return a.length ? `apply: { ${a.join(', ')} }\n` : '';
}
const RUNS = Math.max(1, intOption(flags.runs, 3));
const DB = 'bench';
const TABLE = 'public.orders';

const out = (line = '') => process.stdout.write(line + '\n');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function tool(name: string): Promise<string> {
  for (const dir of [process.env.SLUICE_PG_BIN_DIR, await postgresBinDir(), '/usr/lib/postgresql/15/bin']) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  throw new Error(`${name} not found`);
}

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

function connArgs(c: Cluster): string[] {
  return ['-h', '127.0.0.1', '-p', String(c.port), '-U', 'postgres'];
}

function selfIo(): { syscw: number; wchar: number } {
  const m = new Map(
    readFileSync('/proc/self/io', 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(': ') as [string, string]),
  );
  return { syscw: Number(m.get('syscw')), wchar: Number(m.get('wchar')) };
}

const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

let seq = 0;
async function startSluice(source: Cluster, destination: Cluster, table: string): Promise<{ p: Pipeline; dstUrl: string; done: () => Promise<void> }> {
  const name = `fp_${++seq}`;
  const dstDb = `fp_dst_${seq}`;
  await destination.createDatabase(dstDb);
  const logDir = mkdtempSync(join(tmpdir(), 'sluice-fp-log-'));
  const cfg = parseConfig(
    `pipeline: { name: ${name} }
source: { type: postgres, url: "${source.url(DB)}" }
destination: { type: postgres, url: "${destination.url(dstDb)}" }
log: { type: embedded, path: "${logDir}" }
tables:
  - { name: ${table}, mode: drop }
${applyConfig()}`,
    { env: {} },
  );
  const p = createPipeline(cfg, { logger: silentLogger });
  let failure: unknown = null;
  p.done.catch((e) => (failure = e));
  await p.start();
  for (;;) {
    if (failure) throw failure;
    const rt = p.tables.get(table)!;
    if (rt.state === 'streaming') break;
    if (rt.state === 'failed') throw new Error(`backfill failed: ${rt.error}`);
    await sleep(20);
  }
  return {
    p,
    dstUrl: destination.url(dstDb),
    done: async () => {
      await p.stop().catch(() => {});
      for (let i = 0; i < 100; i++) {
        try {
          await source.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [`sluice_${name}`], DB);
          break;
        } catch {
          await sleep(100);
        }
      }
      await source.query(`DROP PUBLICATION IF EXISTS "sluice_${name}"`, undefined, DB);
      await destination.query(`DROP DATABASE IF EXISTS ${dstDb} WITH (FORCE)`);
      rmSync(logDir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// burst

async function burst(source: Cluster, destination: Cluster): Promise<void> {
  const rows = intOption(flags.rows, 1_000_000);
  const updates = Math.min(rows, intOption(flags.updates, 300_000));
  const txns = Math.max(1, intOption(flags.txns, 30));
  const per = Math.ceil(updates / txns);
  const srcUrl = source.url(DB);
  out(`creating ${TABLE} with ${fmt(rows)} rows`);
  await createDemoTable(srcUrl, { rows });
  await withClient(srcUrl, async (c) => {
    await c.query(`VACUUM ANALYZE ${TABLE}`);
    await c.query(`CHECKPOINT`);
    await c.query(`CREATE PUBLICATION recv_pub FOR TABLE ${TABLE}`);
  });
  const recv = await tool('pg_recvlogical');
  const rss = new RssSampler();
  // What the main thread holds when RSS peaks (the rest is the capture thread's heap and native memory).
  let atPeak = { rss: 0, heap: 0, external: 0 };
  const mem = setInterval(() => {
    const m = process.memoryUsage();
    if (m.rss > atPeak.rss) atPeak = { rss: m.rss, heap: m.heapTotal, external: m.external };
  }, 100);
  const s = await startSluice(source, destination, TABLE);
  const results: { capture: number; apply: number; cpu: number; rss: number; recv: number; drain: number; drainCpu: number; write: number }[] = [];
  try {
    for (let r = 0; r < RUNS; r++) {
      await sleep(1500);
      await source.query(`SELECT pg_create_logical_replication_slot('recv_slot', 'pgoutput')`, undefined, DB);
      await source.query(`SELECT pg_create_logical_replication_slot('drain_slot', 'pgoutput')`, undefined, DB);
      const base = s.p.counters();
      let capturedAt = 0;
      let appliedAt = 0;
      let firstCommit = 0;
      const watch = setInterval(() => {
        const c = s.p.counters();
        if (!capturedAt && c.captured - base.captured >= updates) capturedAt = performance.now();
        if (!appliedAt && c.applied - base.applied >= updates) appliedAt = performance.now();
      }, 5);
      const rssStart = rss.reset() / 2 ** 20;
      atPeak = { rss: 0, heap: 0, external: 0 };
      const cpu0 = cpuSeconds();
      const t0 = performance.now();
      let written = 0;
      await withClient(srcUrl, async (c) => {
        for (let a = 1; a <= updates; a += per) {
          const b = Math.min(updates, a + per - 1);
          const res = await c.query(`UPDATE ${TABLE} SET amount = coalesce(amount, 0) + 1 WHERE id BETWEEN ${a} AND ${b}`);
          written += res.rowCount ?? 0;
          if (!firstCommit) firstCommit = performance.now();
        }
      });
      const write = (performance.now() - t0) / 1000;
      if (written !== updates) throw new Error(`burst changed ${written} rows, expected ${updates}`);
      while (!capturedAt || !appliedAt) await sleep(10);
      clearInterval(watch);
      const cpu = cpuSeconds() - cpu0;
      const peak = rss.peakBytes;
      const [x, y] = await Promise.all([tableChecksum(srcUrl, TABLE), tableChecksum(s.dstUrl, TABLE)]);
      if (x.md5 !== y.md5 || x.rows !== y.rows) throw new Error('destination differs from source');
      const end = (await source.query(`SELECT pg_current_wal_lsn()::text AS l`, undefined, DB)).rows[0].l as string;
      const recvDrain = async () => {
        const tr = performance.now();
        const rr = await run(recv, [
          ...connArgs(source),
          '-d',
          DB,
          '--slot',
          'recv_slot',
          '--start',
          '--no-loop',
          '-E',
          end,
          '-o',
          'proto_version=1',
          '-o',
          'publication_names=recv_pub',
          '-f',
          '/dev/null',
        ]);
        if (rr.code !== 0) throw new Error(`pg_recvlogical failed: ${rr.stderr}`);
        return (performance.now() - tr) / 1000;
      };
      let recvSeconds: number;
      let drain: { seconds: number; cpu: number };
      if (r % 2 === 0) {
        recvSeconds = await recvDrain();
        drain = await sluiceDrain(source, 'drain_slot', updates);
      } else {
        drain = await sluiceDrain(source, 'drain_slot', updates);
        recvSeconds = await recvDrain();
      }
      await source.query(`SELECT pg_drop_replication_slot('recv_slot')`, undefined, DB);
      await source.query(`SELECT pg_drop_replication_slot('drain_slot')`, undefined, DB);
      const res = {
        capture: updates / ((capturedAt - firstCommit) / 1000),
        apply: updates / ((appliedAt - firstCommit) / 1000),
        cpu,
        rss: peak / 2 ** 20,
        recv: updates / recvSeconds,
        drain: updates / drain.seconds,
        drainCpu: drain.cpu,
        write,
      };
      results.push(res);
      out(
        `run ${r + 1}: ${fmt(updates)} updates in ${txns} txns written in ${res.write.toFixed(2)} s; sluice capture ${fmt(res.capture)}/s, ` +
          `capture+apply ${fmt(res.apply)}/s, CPU ${cpu.toFixed(2)} s (${((cpu / updates) * 1e6).toFixed(1)} µs/change), peak RSS ${fmt(res.rss)} MiB (${fmt(rssStart)} at the start; at the peak main heap ${fmt(atPeak.heap / 2 ** 20)}, external ${fmt(atPeak.external / 2 ** 20)}); ` +
          `pg_recvlogical drain ${fmt(res.recv)}/s; sluice capture drain ${fmt(res.drain)}/s (${(res.drain / res.recv).toFixed(2)}×), ` +
          `CPU ${res.drainCpu.toFixed(2)} s (${((res.drainCpu / updates) * 1e6).toFixed(1)} µs/change)`,
      );
    }
  } finally {
    rss.stop();
    clearInterval(mem);
    await s.done();
  }
  out(
    `median of ${RUNS}: capture ${fmt(median(results.map((r) => r.capture)))}/s, capture+apply ${fmt(median(results.map((r) => r.apply)))}/s, ` +
      `CPU ${median(results.map((r) => r.cpu)).toFixed(2)} s, peak RSS ${fmt(median(results.map((r) => r.rss)))} MiB, ` +
      `pg_recvlogical ${fmt(median(results.map((r) => r.recv)))}/s; sluice capture drain ${fmt(median(results.map((r) => r.drain)))}/s ` +
      `(${median(results.map((r) => r.drain / r.recv)).toFixed(2)}× of pg_recvlogical in the same run), CPU ${median(results.map((r) => r.drainCpu)).toFixed(2)} s`,
  );
}

/**
 * sluice's capture alone draining `slot` until it holds `changes` changes, as pg_recvlogical drains
 * its slot: in a child process (this script's `drain` mode), so that neither its memory nor its CPU
 * mixes with the pipeline's. Wall seconds and CPU seconds, both measured in the child from the
 * moment it starts capture (its thread, a new change log with fsync) to the flush that holds them all.
 */
async function sluiceDrain(source: Cluster, slot: string, changes: number): Promise<{ seconds: number; cpu: number }> {
  const r = await run(process.execPath, [process.argv[1], 'drain', source.url(DB), slot, String(changes)]);
  if (r.code !== 0) throw new Error(`sluice drain failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; cpu: number };
}

async function drainMode(url: string, slot: string, changes: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-fp-drain-'));
  const log = new EmbeddedChangeLog(join(dir, 'changes.db'), { role: 'reader' });
  let failure: unknown = null;
  let finish = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const capture: Capture = new Capture({
    url,
    slot,
    publication: 'recv_pub',
    log,
    fsync: true,
    logger: silentLogger,
    heartbeatIntervalMs: 10_000,
    replicationTimeoutMs: 60_000,
    onFatal: (err) => {
      failure = err;
      finish();
    },
    onDurable: () => {
      if (capture.captured >= changes) finish();
    },
  });
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  try {
    await capture.start();
    await finished;
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds() - cpu0;
    if (failure) throw failure;
    out(JSON.stringify({ seconds, cpu }));
  } finally {
    await capture.stop();
    log.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// idle

async function pgbench(source: Cluster, seconds: number, clients: number): Promise<number> {
  const r = await run(await tool('pgbench'), [...connArgs(source), '-c', String(clients), '-j', String(clients), '-T', String(seconds), DB]);
  const m = /tps = ([\d.]+) \(without initial/.exec(r.stdout);
  if (!m) throw new Error(`pgbench: ${r.stdout}\n${r.stderr}`);
  return Number(m[1]);
}

async function idle(source: Cluster, destination: Cluster): Promise<void> {
  const seconds = intOption(flags.seconds, 15);
  const clients = Math.max(1, intOption(flags.clients, 2));
  const pgb = await tool('pgbench');
  const recv = await tool('pg_recvlogical');
  const init = await run(pgb, [...connArgs(source), '-i', '-s', '10', '-q', DB]);
  if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
  await source.query(`CREATE TABLE public.one (id int PRIMARY KEY, v text); INSERT INTO public.one VALUES (1, 'x');`, undefined, DB);
  await source.query(`CREATE PUBLICATION recv_pub FOR TABLE public.one`, undefined, DB);
  await source.query(`VACUUM ANALYZE`, undefined, DB);
  await source.query(`CHECKPOINT`, undefined, DB);
  const rows: { alone: number; recv: number; sluice: number; cpu: number; syscw: number; wchar: number }[] = [];
  for (let r = 0; r < RUNS; r++) {
    const alone = await pgbench(source, seconds, clients);

    await source.query(`SELECT pg_create_logical_replication_slot('recv_slot', 'pgoutput')`, undefined, DB);
    const child = spawn(
      recv,
      [...connArgs(source), '-d', DB, '--slot', 'recv_slot', '--start', '-o', 'proto_version=1', '-o', 'publication_names=recv_pub', '-f', '/dev/null'],
      { stdio: 'ignore' },
    );
    await sleep(1000);
    const withRecv = await pgbench(source, seconds, clients);
    child.kill('SIGINT');
    await new Promise((res) => child.on('exit', res));
    await sleep(300);
    await source.query(`SELECT pg_drop_replication_slot('recv_slot')`, undefined, DB);

    const s = await startSluice(source, destination, 'public.one');
    await sleep(2000);
    const io0 = selfIo();
    const cpu0 = cpuSeconds();
    const withSluice = await pgbench(source, seconds, clients);
    const cpu = cpuSeconds() - cpu0;
    const io1 = selfIo();
    await s.done();
    const row = { alone, recv: withRecv, sluice: withSluice, cpu, syscw: io1.syscw - io0.syscw, wchar: io1.wchar - io0.wchar };
    rows.push(row);
    out(
      `round ${r + 1}: pgbench alone ${fmt(alone)} TPS; beside pg_recvlogical ${fmt(withRecv)} (${(withRecv / alone).toFixed(2)}); ` +
        `beside idle sluice ${fmt(withSluice)} (${(withSluice / withRecv).toFixed(2)} of pg_recvlogical); sluice CPU ${cpu.toFixed(2)} s, ` +
        `${fmt(row.syscw)} write calls, ${fmt(row.wchar / 2 ** 20, 1)} MiB written`,
    );
  }
  const m = (f: (r: (typeof rows)[number]) => number) => median(rows.map(f));
  out(
    `median of ${RUNS} (pgbench -c ${clients} -j ${clients} -T ${seconds}): alone ${fmt(m((r) => r.alone))} TPS, pg_recvlogical ${fmt(m((r) => r.recv))}, ` +
      `sluice ${fmt(m((r) => r.sluice))} (ratio to pg_recvlogical per round, median ${m((r) => r.sluice / r.recv).toFixed(2)}); ` +
      `sluice CPU ${m((r) => r.cpu).toFixed(2)} s, ${fmt(m((r) => r.syscw))} write calls, ${fmt(m((r) => r.wchar) / 2 ** 20, 1)} MiB`,
  );
}

async function main(): Promise<void> {
  if (MODE === 'drain') return drainMode(positionals[1], positionals[2], Number(positionals[3]));
  // The idle measure commits as a production source does (synchronous_commit on): each commit wakes
  // the walsender, as it does there; with it off, WAL is flushed (and decoded) in 200 ms groups.
  const syncCommit = MODE === 'idle' ? 'on' : 'off';
  const [source, destination] = await Promise.all([
    startCluster({ name: 'source', logical: true, settings: { synchronous_commit: syncCommit } }),
    startCluster({ name: 'destination', logical: false }),
  ]);
  const stopAll = () => Promise.all([source.destroy(), destination.destroy()]);
  try {
    await source.createDatabase(DB);
    const v = (await source.query(`SELECT current_setting('server_version') AS v`)).rows[0].v as string;
    out(`PostgreSQL ${v}; node ${process.version}; mode ${MODE}`);
    if (MODE === 'idle') await idle(source, destination);
    else await burst(source, destination);
  } finally {
    await stopAll();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
