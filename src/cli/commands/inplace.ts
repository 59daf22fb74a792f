/** `sluice inplace …`: in-place jobs (docs/inplace.md). */
import { existsSync } from 'node:fs';
import type pg from 'pg';
import { SluiceError } from '../../core/errors.js';
import { readTable } from '../../inplace/catalog.js';
import { loadJob, type InplaceJob, type InplaceThrottle, type JobSource } from '../../inplace/job.js';
import { checkLedger, ensureLedger, lastRun, revertOf, setRunState } from '../../inplace/ledger.js';
import { retryFailed } from '../../inplace/retry-failed.js';
import { revertJob } from '../../inplace/revert.js';
import { planJob, type JobPlan } from '../../inplace/plan.js';
import { formatSeconds, jobStatus, renderStatus, renderVerdict, verifyJob } from '../../inplace/report.js';
import { connect, runJob, type RunProgress } from '../../inplace/runner.js';
import { VERSION } from '../../pipeline/orchestrator.js';
import { makeLogger, readConfig, type GlobalOptions } from '../shared.js';

/** The job's database: its own `database:`, else the source of the sluice config. */
function databaseOf(job: InplaceJob, opts: GlobalOptions): string {
  if (job.database) return job.database;
  if (existsSync(opts.config)) return readConfig(opts).source.url;
  throw new SluiceError('CONFIG_INVALID', `job ${job.job} names no database: add database: postgres://… to the job (or run it beside a sluice.yaml whose source it changes)`);
}

async function withJob<T>(src: JobSource, opts: GlobalOptions, fn: (job: InplaceJob, c: pg.Client) => Promise<T>): Promise<T> {
  const job = loadJob(src);
  const c = await connect(databaseOf(job, opts), job, 'cli');
  try {
    return await fn(job, c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function inplacePlanCommand(src: JobSource, flags: { json?: boolean; allowScan?: boolean }, opts: GlobalOptions): Promise<number> {
  return withJob(src, opts, async (job, c) => {
    const p = await planJob(c, job, { allowScan: flags.allowScan ?? false });
    process.stdout.write(flags.json ? JSON.stringify(p, null, 2) + '\n' : renderPlan(p) + '\n');
    return 0;
  });
}

function renderPlan(p: JobPlan): string {
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;
  const list = (xs: string[]) => (xs.length ? xs.map((x) => `\n    ${x}`).join('') : ' none');
  return [
    `job ${p.job} on ${p.table} (~${n(p.rowsEstimated)} rows)`,
    `  chunk statement: ${p.statement}`,
    `  plan of the first chunk${p.scans ? ' (reads the whole table: allowed by --allow-scan, or the table is small)' : ''}:`,
    ...p.planSummary.split('\n').map((l) => `    ${l}`),
    `  triggers that fire:${list(p.triggers)}`,
    `  rules:${list(p.rules)}`,
    `  foreign keys that cascade from it:${list(p.cascades)}`,
    ...(p.indexedSetColumns.length ? [`  indexed columns it sets (no HOT updates: each changed row writes those indexes too): ${p.indexedSetColumns.join(', ')}`] : []),
    p.sample
      ? `  sample: ${p.sample.chunks} chunks run and rolled back: ${n(p.sample.rowsScanned)} rows scanned, ${n(p.sample.rowsAffected)} changed, ${p.sample.seconds.toFixed(2)} s, ${mib(p.sample.walBytes)} WAL`
      : '  sample: the table is empty',
    p.estimate
      ? `  estimate for the whole table, unthrottled: ~${n(p.estimate.rowsAffected)} rows changed, ~${mib(p.estimate.walBytes)} WAL, ~${formatSeconds(p.estimate.seconds)}`
      : '',
    ...bucketLines(p),
  ]
    .filter(Boolean)
    .join('\n');
}

/** SIGINT/SIGTERM: stop after the chunk in flight; a second one quits at once. */
function stopOnSignal(): () => boolean {
  let stop = false;
  const onSignal = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write('stopping after the chunk in flight (again to quit at once)\n');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => stop;
}

/** Day/hour chunks: the rows each bucket holds and the rows the job is for (the first and last 10 when many). */
function bucketLines(p: JobPlan): string[] {
  if (!p.scope || !p.buckets) return [];
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  const rows = p.buckets.map((b) => `    ${b.start}  ${n(b.rows).padStart(12)} rows  ${n(b.planned).padStart(12)} for the job`);
  const shown = rows.length > 20 ? [...rows.slice(0, 10), `    … ${rows.length - 20} more …`, ...rows.slice(-10)] : rows;
  const total = p.buckets.reduce((s, b) => s + b.planned, 0);
  return [`  scope ${p.scope.from} to ${p.scope.to}: ${p.buckets.length} buckets with rows, ${n(total)} rows for the job:`, ...shown];
}

export async function inplaceRunCommand(src: JobSource, flags: { again?: boolean; allowScan?: boolean; reason?: string }, opts: GlobalOptions): Promise<number> {
  const job = loadJob(src);
  const logger = makeLogger(opts);
  const stopRequested = stopOnSignal();
  let shown = 0;
  const onProgress = (p: RunProgress) => {
    if (Date.now() - shown < 2000 && !p.held) return;
    shown = Date.now();
    process.stderr.write(progressLine(p) + '\n');
  };
  const r = await runJob(job, { databaseUrl: databaseOf(job, opts), version: VERSION, logger, again: flags.again, allowScan: flags.allowScan, reason: flags.reason, stopRequested, onProgress });
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  if (r.outcome === 'already-done') {
    process.stdout.write(`${job.job}: already done (run ${r.run.id}, ended ${r.run.ended_at}, ${n(r.run.rows_affected)} rows changed); --again starts a new run\n`);
    return 0;
  }
  process.stdout.write(`${job.job}: run ${r.run.id} ${r.outcome}: ${n(r.run.rows_affected)} rows changed in ${n(r.run.chunks)} chunks${r.run.dead_letters ? `, ${r.run.dead_letters} rows in _sluice.inplace_dead_letters` : ''}\n`);
  return r.outcome === 'done' || r.outcome === 'paused' ? 0 : 1;
}

export function progressLine(p: RunProgress): string {
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  const pct = p.rowsEstimated > 0 ? ` (${Math.min(99.9, (100 * p.rowsScanned) / p.rowsEstimated).toFixed(1)}%)` : '';
  const eta = p.rowsPerSecond > 0 ? `, ETA ${formatSeconds(Math.max(0, p.rowsEstimated - p.rowsScanned) / p.rowsPerSecond)}` : '';
  const held = p.held ? `, held: ${p.held}` : '';
  return `${p.job}: ${n(p.rowsScanned)} of ~${n(p.rowsEstimated)} rows${pct}, ${n(p.rowsAffected)} changed, ${n(p.rowsPerSecond)} rows/s${eta}, chunk ${n(p.chunkRows)} rows${held}`;
}

export async function inplaceStatusCommand(src: JobSource, flags: { json?: boolean }, opts: GlobalOptions): Promise<number> {
  return withJob(src, opts, async (job, c) => {
    const s = await jobStatus(c, job, (await readTable(c, job.table)).rowsEstimated);
    process.stdout.write(flags.json ? JSON.stringify(s, null, 2) + '\n' : renderStatus(s) + '\n');
    return 0;
  });
}

/** pause | resume | cancel: recorded on the run; a running job acts on it between chunks. */
export async function inplaceRequestCommand(what: 'pause' | 'resume' | 'cancel', src: JobSource, opts: GlobalOptions): Promise<number> {
  return withJob(src, opts, async (job, c) => {
    await ensureLedger(c);
    const run = await lastRun(c, job.job);
    if (!run || run.state === 'done' || run.state === 'cancelled') {
      throw new SluiceError('BAD_USAGE', `job ${job.job} has no run in progress${run ? ` (run ${run.id} is ${run.state})` : ''}: nothing to ${what}`);
    }
    if (what === 'cancel' || run.state === 'failed') {
      // A cancel takes effect now when no process runs the job; a running one stops at its next chunk.
      const s = await jobStatus(c, job, 0);
      if (!s.running) {
        if (what !== 'cancel') throw new SluiceError('BAD_USAGE', `job ${job.job}: run ${run.id} is ${run.state}; \`sluice inplace run\` resumes it`);
        await c.query(`UPDATE _sluice.inplace_runs SET requested = 'cancel' WHERE id = $1`, [run.id]);
        await setRunState(c, run.id, 'cancelled', 'cancelled by request');
        process.stdout.write(`${job.job}: run ${run.id} cancelled (its committed chunks stay; the rows they changed are not restored)\n`);
        return 0;
      }
    }
    await c.query(`UPDATE _sluice.inplace_runs SET requested = $2 WHERE id = $1`, [run.id, what]);
    process.stdout.write(`${job.job}: ${what} requested for run ${run.id}; the running job acts on it after its chunk in flight\n`);
    return 0;
  });
}

export async function inplaceThrottleCommand(src: JobSource, flags: Record<string, string | boolean | undefined>, opts: GlobalOptions): Promise<number> {
  const change: Partial<InplaceThrottle> = {};
  const num = (flag: string, key: keyof InplaceThrottle) => {
    const v = flags[flag];
    if (v === undefined) return;
    const x = Number(v);
    if (!Number.isFinite(x) || x < 0) throw new SluiceError('BAD_USAGE', `--${flag.replace(/[A-Z]/g, (m) => '-' + m.toLowerCase())} ${v}: expected a number ≥ 0`);
    (change as Record<string, number>)[key] = x;
  };
  num('maxRowsPerSecond', 'maxRowsPerSecond');
  num('maxWalBytesPerSecond', 'maxWalBytesPerSecond');
  num('maxActiveSessions', 'maxActiveSessions');
  num('maxReplicaLagSeconds', 'maxReplicaLagSeconds');
  num('maxSlotRetainedBytes', 'maxSlotRetainedBytes');
  if (typeof flags.query === 'string') change.query = flags.query;
  if (Object.keys(change).length === 0 && !flags.reset) throw new SluiceError('BAD_USAGE', 'nothing to change: give a limit (e.g. --max-rows-per-second 5000) or --reset');
  return withJob(src, opts, async (job, c) => {
    await ensureLedger(c);
    const run = await lastRun(c, job.job);
    if (!run || run.state === 'done' || run.state === 'cancelled') throw new SluiceError('BAD_USAGE', `job ${job.job} has no run in progress: change throttle: in the job file instead`);
    await c.query(
      flags.reset ? `UPDATE _sluice.inplace_runs SET throttle_override = NULL WHERE id = $1` : `UPDATE _sluice.inplace_runs SET throttle_override = coalesce(throttle_override, '{}'::jsonb) || $2::jsonb WHERE id = $1`,
      flags.reset ? [run.id] : [run.id, JSON.stringify(change)],
    );
    process.stdout.write(`${job.job}: throttle ${flags.reset ? 'back to the job file' : JSON.stringify(change)} for run ${run.id}; applied before the next chunk\n`);
    return 0;
  });
}

export async function inplaceVerifyCommand(src: JobSource, flags: { json?: boolean }, opts: GlobalOptions): Promise<number> {
  return withJob(src, opts, async (job, c) => {
    const v = await verifyJob(c, job);
    process.stdout.write(flags.json ? JSON.stringify(v, null, 2) + '\n' : renderVerdict(v) + '\n');
    return v.ok ? 0 : 1;
  });
}

/** Exit 0 only when the job's last run is done: for deploy pipelines that depend on it. */
export async function inplaceEnsureFinishedCommand(src: JobSource, opts: GlobalOptions): Promise<number> {
  return withJob(src, opts, async (job, c) => {
    const exists = (await c.query(`SELECT to_regclass('_sluice.inplace_runs') IS NOT NULL AS ok`)).rows[0].ok as boolean;
    const run = exists ? await lastRun(c, job.job) : undefined;
    const reverted = run?.state === 'done' ? await revertOf(c, run.id) : undefined;
    if (run?.state === 'done' && !reverted) {
      process.stdout.write(`${job.job}: done (run ${run.id}, ended ${run.ended_at})\n`);
      return 0;
    }
    if (reverted) {
      process.stdout.write(`${job.job}: not finished: run ${run!.id} was reverted by run ${reverted.id} (${reverted.state}); \`sluice inplace run ${src.file ?? '…'} --again\` runs it anew\n`);
      return 1;
    }
    process.stdout.write(`${job.job}: not finished (${run ? `run ${run.id} is ${run.state}` : 'never run'}): run \`sluice inplace run ${src.file ?? '…'}\` and wait for it\n`);
    return 1;
  });
}

export async function inplaceAuditCommand(src: JobSource, flags: { check?: boolean; json?: boolean }, opts: GlobalOptions): Promise<number> {
  return withJob(src, opts, async (job, c) => {
    await ensureLedger(c);
    if (flags.check) {
      const r = await checkLedger(c);
      if (flags.json) process.stdout.write(JSON.stringify({ intact: r.problems.length === 0, ...r }, null, 2) + '\n');
      else if (r.problems.length === 0) process.stdout.write(`ledger intact: ${r.runs} runs, each chained to the one before\n`);
      else process.stdout.write(`LEDGER EDITED: ${r.problems.length} problems in ${r.runs} runs\n${r.problems.map((p) => `  run ${p.run}: ${p.problem}`).join('\n')}\n`);
      return r.problems.length === 0 ? 0 : 1;
    }
    const runs = (await c.query(`SELECT id, job, table_name, kind, state, actor, host, reason, started_at::text AS started, ended_at::text AS ended, rows_affected::float8 AS rows, statement_sha256 FROM _sluice.inplace_runs WHERE job = $1 ORDER BY id`, [job.job])).rows;
    if (flags.json) process.stdout.write(JSON.stringify(runs, null, 2) + '\n');
    else for (const r of runs) process.stdout.write(`run ${r.id} ${r.state}: ${r.kind} ${r.table_name}, ${Math.round(r.rows).toLocaleString('en-US')} rows, by ${r.actor}@${r.host}, "${r.reason}", ${r.started} → ${r.ended ?? '…'}, sql sha256 ${String(r.statement_sha256).slice(0, 12)}\n`);
    return 0;
  });
}

export async function inplaceRevertCommand(src: JobSource, flags: { run?: string; reason?: string }, opts: GlobalOptions): Promise<number> {
  const job = loadJob(src);
  const runId = flags.run === undefined ? undefined : Number(flags.run);
  if (runId !== undefined && !Number.isInteger(runId)) throw new SluiceError('BAD_USAGE', `--run ${flags.run}: expected a run id (sluice inplace audit lists them)`);
  const stopRequested = stopOnSignal();
  const r = await revertJob(job, { databaseUrl: databaseOf(job, opts), version: VERSION, logger: makeLogger(opts), runId, reason: flags.reason, stopRequested });
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  process.stdout.write(
    `${job.job}: revert of run ${r.of.id} (run ${r.revert.id}) ${r.revert.state}: ${n(r.restored)} rows restored` +
      (r.skipped ? `, ${n(r.skipped)} left as they are because they changed since (keys: ${r.skippedKeys.map((k) => JSON.stringify(k)).join(' ')}${r.skipped > r.skippedKeys.length ? ' …' : ''}; all in _sluice.inplace_dead_letters, run_id ${r.revert.id})` : '') +
      '\n',
  );
  return r.revert.state === 'done' || r.revert.state === 'paused' ? 0 : 1;
}

export async function inplaceRetryFailedCommand(src: JobSource, opts: GlobalOptions): Promise<number> {
  const job = loadJob(src);
  const r = await retryFailed(job, { databaseUrl: databaseOf(job, opts), logger: makeLogger(opts) });
  process.stdout.write(
    `${job.job}: run ${r.run.id}: ${r.resolved} failed rows done now` +
      (r.failing.length ? `; ${r.failing.length} fail again: ${r.failing.slice(0, 10).map((f) => `${JSON.stringify(f.key)} ${f.error}`).join('; ')}${r.failing.length > 10 ? ' …' : ''}` : '') +
      '\n',
  );
  return r.failing.length === 0 ? 0 : 1;
}
