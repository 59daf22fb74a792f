/**
 * What `sluice inplace status|verify` report, read from the ledger and the table (never from the
 * runner's memory: they work whether or not the job runs).
 */
import type pg from 'pg';
import { readTable, type TableFacts } from './catalog.js';
import type { InplaceJob } from './job.js';
import { lastRun, type RunRow } from './ledger.js';
import { JOB_LOCK_CLASS } from './runner.js';
import { rangeParams, remainingSql, type Key } from './statements.js';
import { windowSpec } from './windows.js';

export interface JobStatus {
  job: string;
  run: number | null;
  state: string;
  /** A process holds the job now. */
  running: boolean;
  rowsScanned: number;
  rowsAffected: number;
  rowsEstimated: number;
  percent: number | null;
  rowsPerSecond: number;
  etaSeconds: number | null;
  chunks: number;
  deadLetters: number;
  startedAt: string | null;
  endedAt: string | null;
  error: string | null;
}

export async function jobStatus(c: pg.ClientBase, job: InplaceJob, rowsEstimated: number): Promise<JobStatus> {
  const exists = (await c.query(`SELECT to_regclass('_sluice.inplace_runs') IS NOT NULL AS ok`)).rows[0].ok as boolean;
  const run: RunRow | undefined = exists ? await lastRun(c, job.job) : undefined;
  const running = (
    await c.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = hashtext($2)::oid AND objsubid = 2 AND granted`, [JOB_LOCK_CLASS, job.job])
  ).rows[0].n > 0;
  if (!run) {
    return { job: job.job, run: null, state: 'planned', running, rowsScanned: 0, rowsAffected: 0, rowsEstimated, percent: null, rowsPerSecond: 0, etaSeconds: null, chunks: 0, deadLetters: 0, startedAt: null, endedAt: null, error: null };
  }
  const recent = (
    await c.query(
      `SELECT coalesce(sum(rows_scanned), 0)::float8 AS rows, extract(epoch FROM max(committed_at) - min(committed_at))::float8 AS span, count(*)::int AS n
         FROM _sluice.inplace_chunks WHERE run_id = $1 AND committed_at > clock_timestamp() - interval '60 seconds'`,
      [run.id],
    )
  ).rows[0];
  const rowsPerSecond = running && recent.n > 1 && recent.span > 0 ? recent.rows / recent.span : 0;
  const done = run.state === 'done';
  const percent = done ? 100 : rowsEstimated > 0 ? Math.min(99.9, (100 * run.rows_scanned) / rowsEstimated) : null;
  const etaSeconds = !done && rowsPerSecond > 0 ? Math.max(0, rowsEstimated - run.rows_scanned) / rowsPerSecond : null;
  // A run the ledger calls running that no process holds: the process died (SIGKILL, power cut).
  const state = run.state === 'running' && !running ? 'stopped' : run.state;
  return {
    job: job.job,
    run: run.id,
    state,
    running,
    rowsScanned: run.rows_scanned,
    rowsAffected: run.rows_affected,
    rowsEstimated,
    percent,
    rowsPerSecond,
    etaSeconds,
    chunks: run.chunks,
    deadLetters: run.dead_letters,
    startedAt: run.started_at,
    endedAt: run.ended_at,
    error: run.error,
  };
}

export function renderStatus(s: JobStatus): string {
  if (s.run === null) return `${s.job}: not run yet (~${Math.round(s.rowsEstimated).toLocaleString('en-US')} rows in the table)`;
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  const pct = s.percent !== null ? ` (${s.percent.toFixed(1)}%)` : '';
  const rate = s.rowsPerSecond > 0 ? `, ${n(s.rowsPerSecond)} rows/s` : '';
  const eta = s.etaSeconds !== null ? `, ETA ${formatSeconds(s.etaSeconds)}` : '';
  const hint =
    s.state === 'stopped' ? ' — no process runs it: `sluice inplace run` resumes it' : s.state === 'failed' ? ' — `sluice inplace run` resumes it after the cause is fixed' : s.state === 'paused' && !s.running ? ' — `sluice inplace run` resumes it' : '';
  const lines = [
    `${s.job}: run ${s.run} ${s.state}${hint}`,
    `  ${n(s.rowsScanned)} of ~${n(s.rowsEstimated)} rows scanned${pct}, ${n(s.rowsAffected)} changed, ${n(s.chunks)} chunks${rate}${eta}`,
  ];
  if (s.deadLetters > 0) lines.push(`  ${n(s.deadLetters)} rows failed on their own: SELECT * FROM _sluice.inplace_dead_letters WHERE run_id = ${s.run}`);
  if (s.error) lines.push(`  error: ${s.error}`);
  lines.push(`  started ${s.startedAt}${s.endedAt ? `, ended ${s.endedAt}` : ''}`);
  return lines.join('\n');
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export interface VerifyRange {
  lo: Key | null;
  hi: Key | null;
  /** Day/hour chunks: the day (or hour, or days merged) the row is about, its planned rows. */
  span?: string;
  planned?: number | null;
  chunks: number;
  rowsAffected: number;
  /** Rows of the range that still match the job's where. */
  remaining: number;
}

export interface JobVerdict {
  job: string;
  run: number | null;
  state: string;
  /** The job's where, the condition the post-check counts (empty: nothing to count). */
  where: string;
  ranges: number;
  remaining: number;
  differing: VerifyRange[];
  ok: boolean;
  /** Day/hour chunks: every window's planned, changed and remaining rows. */
  windows?: VerifyRange[];
}

/**
 * Day/hour chunks, per window of the run (a day, an hour of a large day, or small days merged): the
 * rows planned for the job when the window was planned, the rows its chunks changed, and the rows that
 * still match where. A window disagrees when rows remain, or when it changed other than planned (the
 * application wrote there meanwhile).
 */
async function verifyWindows(c: pg.ClientBase, job: InplaceJob, facts: TableFacts, run: RunRow): Promise<JobVerdict> {
  const rows = (
    await c.query(
      `SELECT win_from, win_to, count(*)::int AS chunks, sum(planned)::float8 AS planned, sum(rows_affected)::float8 AS changed
         FROM _sluice.inplace_chunks WHERE run_id = $1 AND ${NOT_RETRY} GROUP BY 1, 2 ORDER BY 1`,
      [run.id],
    )
  ).rows as { win_from: string; win_to: string; chunks: number; planned: number | null; changed: number }[];
  const windows: VerifyRange[] = [];
  let remaining = 0;
  for (const w of rows) {
    const left = job.where.trim() ? Number((await c.query(remainingSql(job, facts, false, false), rangeParams(null, null, { from: w.win_from, to: w.win_to }))).rows[0].n) : 0;
    remaining += left;
    windows.push({ lo: null, hi: null, span: spanOf(w.win_from, w.win_to), chunks: w.chunks, planned: w.planned, rowsAffected: w.changed, remaining: left });
  }
  const differing = windows.filter((w) => w.remaining > 0 || (w.planned !== null && w.planned !== undefined && w.planned !== w.rowsAffected));
  return { job: job.job, run: run.id, state: run.state, where: job.where, ranges: windows.length, remaining, differing, ok: run.state === 'done' && remaining === 0, windows };
}

/** '2024-03-01' for a day, '2024-03-01 14:00' for an hour, '2024-03-01 … 2024-03-04' for days merged. */
function spanOf(from: string, to: string): string {
  const f = from.slice(0, 10);
  const last = new Date(Date.parse(to.replace(' ', 'T') + 'Z') - 1).toISOString().slice(0, 10);
  if (from.endsWith('00:00:00') && to.endsWith('00:00:00')) return f === last ? f : `${f} … ${last}`;
  return `${from.slice(0, 16)} … ${to.slice(0, 16)}`;
}

const RANGE_ROWS = 100_000;
/** The one-row chunks of retry-failed, (key, key], cover no range. */
const NOT_RETRY = `(lo IS NULL OR hi IS NULL OR lo <> hi)`;

/**
 * The post-check: over the key ranges the run committed, grouped into ranges of about 100,000 rows,
 * how many rows still match the job's `where` (a fill leaves none; a delete leaves none). Ranges where
 * some remain are named — rows the application wrote there since, or rows the job could not change.
 */
export async function verifyJob(c: pg.ClientBase, job: InplaceJob): Promise<JobVerdict> {
  const table = await readTable(c, job.table);
  const window = await windowSpec(c, job, table);
  const facts: TableFacts = window ? { ...table, window } : table;
  const run = await lastRun(c, job.job);
  if (!run) return { job: job.job, run: null, state: 'planned', where: job.where, ranges: 0, remaining: 0, differing: [], ok: false };
  if (window) return verifyWindows(c, job, facts, run);
  const chunks = (await c.query(`SELECT lo, hi, rows_scanned::float8 AS s, rows_affected::float8 AS a FROM _sluice.inplace_chunks WHERE run_id = $1 AND ${NOT_RETRY} ORDER BY seq`, [run.id])).rows as {
    lo: Key | null;
    hi: Key | null;
    s: number;
    a: number;
  }[];
  const groups: VerifyRange[] = [];
  let cur: (VerifyRange & { rows: number }) | null = null;
  for (const k of chunks) {
    if (!cur || cur.rows >= RANGE_ROWS) {
      if (cur) groups.push(cur);
      cur = { lo: k.lo, hi: k.hi, chunks: 0, rowsAffected: 0, remaining: 0, rows: 0 };
    }
    cur.hi = k.hi;
    cur.chunks++;
    cur.rowsAffected += k.a;
    cur.rows += k.s;
  }
  if (cur) groups.push(cur);
  let remaining = 0;
  const differing: VerifyRange[] = [];
  if (job.where.trim()) {
    for (const g of groups) {
      const r = await c.query(remainingSql(job, facts, g.lo !== null, g.hi !== null), rangeParams(g.lo, g.hi));
      g.remaining = Number(r.rows[0].n);
      remaining += g.remaining;
      if (g.remaining > 0) differing.push({ lo: g.lo, hi: g.hi, chunks: g.chunks, rowsAffected: g.rowsAffected, remaining: g.remaining });
    }
  }
  return { job: job.job, run: run.id, state: run.state, where: job.where, ranges: groups.length, remaining, differing, ok: run.state === 'done' && remaining === 0 };
}

export function renderVerdict(v: JobVerdict): string {
  if (v.run === null) return `${v.job}: not run yet: nothing to verify`;
  const head = v.where.trim()
    ? `${v.ok ? 'OK       ' : 'NOT DONE '} ${v.job} (run ${v.run}, ${v.state}): ${v.remaining.toLocaleString('en-US')} rows in ${v.ranges} checked ${v.windows ? 'time windows' : 'key ranges'} still match where ${v.where}`
    : `${v.ok ? 'OK       ' : 'NOT DONE '} ${v.job} (run ${v.run}, ${v.state}): no where: to count; ${v.ranges} key ranges committed`;
  const line = (d: VerifyRange) =>
    d.span !== undefined
      ? `  ${d.span}: planned ${d.planned ?? '?'}, changed ${d.rowsAffected}, ${d.remaining} still match`
      : `  keys (${JSON.stringify(d.lo)}, ${JSON.stringify(d.hi)}]: ${d.remaining} rows still match (${d.rowsAffected} changed by the job)`;
  return [head, ...v.differing.map(line)].join('\n');
}
