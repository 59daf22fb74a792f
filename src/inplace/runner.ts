/**
 * Runs an in-place job: checks everything before a row changes, opens (or resumes) its run in the
 * ledger, then chunk after chunk — requests, health gate, the chunk, its size adapted to
 * chunk.targetSeconds, pacing — until the last key range is committed. A crash anywhere is resumed by
 * running the job again: the ledger's last chunk is where it goes on, and no chunk is done twice.
 */
import pg from 'pg';
import { SluiceError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { backoffMs, sleep } from '../core/retry.js';
import { gitCommit } from '../core/code-version.js';
import { systemIdentifier, type TableFacts } from './catalog.js';
import { runChunk, type ChunkPlan } from './chunk.js';
import { finishNotNull } from './finish.js';
import { HealthGate } from './health.js';
import type { InplaceJob, InplaceThrottle } from './job.js';
import { ensureLedger, lastChunk, lastRun, openRun, runById, setRunState, statementSha, type LastChunk, type RunRow } from './ledger.js';
import { EMPTY_SCOPE, prepareJob } from './prepare.js';
import { statementText, type ChunkTargets, type TimeWindow } from './statements.js';
import { planWindows, type Window } from './windows.js';

/** The advisory lock a running job holds for its whole run: (JOB_LOCK_CLASS, hashtext(job)). */
export const JOB_LOCK_CLASS = 7451;

export interface RunOptions {
  databaseUrl: string;
  version: string;
  logger: Logger;
  /** Start a new run of a job whose last run is done. */
  again?: boolean;
  allowScan?: boolean;
  reason?: string;
  /** Asked before each chunk: stop after the chunk in flight (SIGINT/SIGTERM). */
  stopRequested?: () => boolean;
  onProgress?: (p: RunProgress) => void;
}

export interface RunProgress {
  job: string;
  runId: number;
  rowsScanned: number;
  rowsAffected: number;
  rowsEstimated: number;
  chunks: number;
  chunkRows: number;
  rowsPerSecond: number;
  held: string | null;
  deadLetters: number;
}

export interface RunResult {
  run: RunRow;
  /** How the process left the run: done, failed, cancelled, paused (stopped by a signal), or already done before. */
  outcome: 'done' | 'failed' | 'cancelled' | 'paused' | 'already-done';
}

/** Opens a session for the job, named so that other sessions (and sluice's throttles) can tell it. */
export async function connect(url: string, job: InplaceJob, role: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: `sluice inplace ${job.job} ${role}`.slice(0, 63) });
  c.on('error', () => undefined);
  try {
    await c.connect();
  } catch (err) {
    throw new SluiceError('SOURCE_UNREACHABLE', `cannot connect to the job's database: ${errorMessage(err)} (check database: in the job)`, { cause: err });
  }
  await c.query(`SET lock_timeout = ${job.lockTimeoutMs}; SET statement_timeout = ${job.statementTimeoutMs}`);
  pids.set(c, (await c.query(`SELECT pg_backend_pid() AS pid`)).rows[0].pid as number);
  return c;
}

const pids = new WeakMap<pg.Client, number>();

export async function runJob(job: InplaceJob, o: RunOptions): Promise<RunResult> {
  const reason = o.reason ?? job.reason;
  if (!reason) throw new SluiceError('CONFIG_INVALID', `job ${job.job}: say why it runs — reason: "OPS-1234 …" in the job, or --reason — it is kept in the audit ledger`);
  let c = await connect(o.databaseUrl, job, 'chunks');
  const h = await connect(o.databaseUrl, job, 'health');
  try {
    await ensureLedger(c);
    const prev = await lastRun(c, job.job);
    const resumable = prev && (prev.state === 'running' || prev.state === 'paused' || prev.state === 'failed');
    // A resumed run keeps the scope it was opened with.
    const { facts, targets, scope } = await prepareJob(c, job, {
      allowScan: o.allowScan ?? false,
      scope: resumable ? (prev.params as { scope?: TimeWindow | null }).scope : undefined,
    });
    const locked = (await c.query(`SELECT pg_try_advisory_lock(${JOB_LOCK_CLASS}, hashtext($1)) AS ok`, [job.job])).rows[0].ok as boolean;
    if (!locked) throw new SluiceError('BAD_USAGE', `job ${job.job} is already running in another process (see \`sluice inplace status\`)`);
    const statement = statementText(job, facts, targets);
    let run: RunRow;
    if (resumable) {
      if (prev.statement_sha256 !== statementSha(statement)) {
        throw new SluiceError(
          'BAD_USAGE',
          `job ${job.job}: its statement changed since run ${prev.id} started (${prev.statement}); finish that run with the job as it was, or \`sluice inplace cancel ${job.job}\` and run again`,
        );
      }
      run = prev;
      o.logger.info('resuming run', { job: job.job, run: run.id, chunks: run.chunks, rowsAffected: run.rows_affected });
    } else if (prev && prev.state === 'done' && !o.again) {
      return { run: prev, outcome: 'already-done' };
    } else {
      run = await openRun(c, {
        job: job.job,
        table: `${facts.schema}.${facts.name}`,
        kind: job.kind,
        statement,
        params: { ...job, database: undefined, ...(scope !== undefined ? { scope } : {}) },
        reason,
        version: o.version,
        gitCommit: gitCommit(),
        systemIdentifier: await systemIdentifier(c),
      });
      o.logger.info('run started', { job: job.job, run: run.id, table: run.table_name, kind: job.kind, rowsEstimated: facts.rowsEstimated });
    }
    await setRunState(c, run.id, 'running');
    const gate = new HealthGate(h, facts.oid, job.throttle, o.logger);
    return await loop(job, facts, targets, scope === undefined ? undefined : (scope ?? EMPTY_SCOPE), run, gate, o, () => c, async () => {
      await c.end().catch(() => undefined);
      c = await reconnect(o.databaseUrl, job, o.logger);
      await c.query(`SELECT pg_advisory_lock(${JOB_LOCK_CLASS}, hashtext($1))`, [job.job]);
    });
  } finally {
    await c.end().catch(() => undefined);
    await h.end().catch(() => undefined);
  }
}

async function reconnect(url: string, job: InplaceJob, logger: Logger): Promise<pg.Client> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await connect(url, job, 'chunks');
    } catch (err) {
      if (attempt >= 12) throw err;
      const wait = backoffMs(attempt, 500, 10_000);
      logger.warn('database unreachable; retrying', { attempt, waitMs: wait, error: errorMessage(err) });
      await sleep(wait);
    }
  }
}

async function loop(
  job: InplaceJob,
  facts: TableFacts,
  targets: ChunkTargets,
  scope: TimeWindow | undefined,
  start: RunRow,
  gate: HealthGate,
  o: RunOptions,
  client: () => pg.Client,
  renew: () => Promise<void>,
): Promise<RunResult> {
  let rows = Math.min(job.chunk.rows, job.chunk.maxRows);
  let attempts = 0;
  let throttle: InplaceThrottle = job.throttle;
  const rate: { at: number; rows: number }[] = [];
  let held: string | null = null;
  let windows: Window[] = [];
  /** The chunk after the last committed one: the next key range, within its window for day/hour chunks. */
  const nextChunk = async (last: LastChunk | undefined, rows: number): Promise<ChunkPlan> => {
    const seq = (last?.seq ?? 0) + 1;
    if (!scope) return { seq, lo: last?.hi ?? null, rows };
    if (last && last.hi !== null) return { seq, lo: last.hi, rows, window: { from: last.winFrom!, to: last.winTo!, planned: null, last: last.winTo === scope.to } };
    const start = last ? last.winTo! : scope.from;
    let w = windows.find((x) => x.from === start);
    if (!w) {
      windows = await planWindows(client(), job, { ...facts, window: facts.window! }, { from: start, to: scope.to }, rows);
      w = windows[0];
    }
    if (w.from >= w.to && w.to !== scope.to) throw new SluiceError('INTERNAL', `job ${job.job}: an empty time window [${w.from}, ${w.to}) was planned before the end of the scope; please report this`);
    return { seq, lo: null, rows, window: { from: w.from, to: w.to, planned: w.planned, last: w.to === scope.to } };
  };
  for (;;) {
    const c = client();
    let run: RunRow;
    let last: LastChunk | undefined;
    try {
      run = (await runById(c, start.id))!;
      last = await lastChunk(c, run.id);
    } catch (err) {
      if (!isConnectionError(err)) throw err;
      await renew();
      continue;
    }
    if (last?.final) {
      if (job.finish.notNull.length) {
        try {
          await finishNotNull(c, job, facts, o.logger);
        } catch (err) {
          await setRunState(c, run.id, 'failed', errorMessage(err)).catch(() => undefined);
          throw err;
        }
      }
      await setRunState(c, run.id, 'done');
      o.logger.info('run done', { job: job.job, run: run.id, rowsAffected: run.rows_affected, chunks: run.chunks, deadLetters: run.dead_letters });
      return { run: (await runById(c, run.id))!, outcome: 'done' };
    }
    // Requests from `sluice inplace pause|resume|cancel|throttle`, read between chunks.
    if (run.throttle_override) {
      const next = { ...job.throttle, ...(run.throttle_override as Partial<InplaceThrottle>) };
      if (JSON.stringify(next) !== JSON.stringify(throttle)) {
        throttle = next;
        gate.setLimits(throttle);
        o.logger.info('throttle changed', { ...throttle });
      }
    }
    if (run.requested === 'cancel') {
      await setRunState(c, run.id, 'cancelled', 'cancelled by request');
      o.logger.info('run cancelled', { job: job.job, run: run.id, chunks: run.chunks });
      return { run: (await runById(c, run.id))!, outcome: 'cancelled' };
    }
    if (run.requested === 'pause' || (run.state === 'paused' && run.requested !== 'resume')) {
      if (run.state !== 'paused') {
        await c.query(`UPDATE _sluice.inplace_runs SET state = 'paused', requested = NULL WHERE id = $1`, [run.id]);
        o.logger.info('run paused by request', { job: job.job, run: run.id });
      }
      if (o.stopRequested?.()) return { run, outcome: 'paused' };
      o.onProgress?.(progress(job, run, facts, rows, 0, 'paused by request (sluice inplace resume)'));
      await sleep(1000);
      continue;
    }
    if (run.requested === 'resume' || run.state !== 'running') {
      await setRunState(c, run.id, 'running');
      if (run.requested === 'resume') o.logger.info('run resumed by request', { job: job.job, run: run.id });
    }
    if (o.stopRequested?.()) {
      await setRunState(c, run.id, 'paused', null);
      o.logger.info('stopped after the chunk in flight; run the job again to resume', { job: job.job, run: run.id, chunks: run.chunks });
      return { run: (await runById(c, run.id))!, outcome: 'paused' };
    }
    if (run.dead_letters > Math.max(10, job.failures.maxDeadLetterRatio * run.rows_scanned)) {
      const msg = `${run.dead_letters} rows failed on their own (see _sluice.inplace_dead_letters), more than failures.maxDeadLetterRatio ${job.failures.maxDeadLetterRatio} of ${run.rows_scanned} rows allows`;
      await setRunState(c, run.id, 'failed', msg);
      throw new SluiceError('SOURCE_ERROR', `job ${job.job} failed: ${msg}`);
    }

    const waited = await gate.waitOpen(() => o.stopRequested?.() ?? false, (reason) => {
      if (reason !== held) o.onProgress?.(progress(job, run, facts, rows, 0, reason));
      held = reason;
    });
    held = null;
    if (o.stopRequested?.()) continue;
    rows = Math.max(1, Math.min(rows, job.chunk.maxRows, gate.ceiling()));
    const watch = gate.watchBlocked(pids.get(c) ?? 0);
    let outcome;
    try {
      outcome = await runChunk(c, job, facts, run.id, await nextChunk(last, rows), { retries: attempts, throttleWaitMs: waited }, targets);
    } catch (err) {
      await watch.stop();
      if (isConnectionError(err)) {
        // The commit may or may not have happened: the ledger says, after the reconnect.
        o.logger.warn('lost the connection during a chunk; reading the ledger to see whether it committed', { error: errorMessage(err) });
        await renew();
        continue;
      }
      const msg = `chunk ${(last?.seq ?? 0) + 1} after key ${JSON.stringify(last?.hi ?? null)}: ${errorMessage(err)}`;
      await setRunState(c, run.id, 'failed', msg).catch(() => undefined);
      throw new SluiceError('SOURCE_ERROR', `job ${job.job} failed: ${msg}`, { cause: err });
    }
    const blocked = await watch.stop();
    if (outcome.kind === 'retry') {
      attempts++;
      if (attempts > job.failures.retries) {
        rows = Math.max(1, Math.floor(rows / 2));
        attempts = 0;
        o.logger.warn('chunk kept failing; halving it', { rows, error: outcome.error.message });
      } else {
        const wait = backoffMs(attempts, 100, 5000);
        o.logger.info('chunk retried', { attempt: attempts, waitMs: wait, error: outcome.error.message });
        await sleep(wait);
      }
      continue;
    }
    if (outcome.kind === 'split') {
      rows = Math.max(1, Math.floor(rows / 2));
      o.logger.info('chunk failed; halving it', { rows, sqlstate: outcome.error.code, error: outcome.error.message });
      continue;
    }
    attempts = 0;
    const k = outcome.record;
    if (outcome.deadLetter) o.logger.warn('a row failed on its own; kept in _sluice.inplace_dead_letters', { key: k.hi });
    // Adapt: towards targetSeconds, at most ×1.5 up and ÷2 down a chunk; halve after blocking others.
    const seconds = k.durationMs / 1000;
    if (blocked > throttle.maxBlockedSessions) {
      rows = Math.max(1, Math.floor(rows / 2));
      o.logger.info('sessions waited on the chunk; halving the next', { blocked, rows });
    } else if (!outcome.deadLetter && k.rowsScanned >= rows / 2) {
      rows = Math.round(rows * Math.min(1.5, Math.max(0.5, job.chunk.targetSeconds / Math.max(seconds, 0.001))));
    }
    rows = Math.max(1, Math.min(rows, job.chunk.maxRows));
    const now = Date.now();
    rate.push({ at: now, rows: k.rowsScanned });
    while (rate.length > 1 && now - rate[0].at > 10_000) rate.shift();
    const pace = gate.paceMs(k.rowsAffected, k.walBytes, k.durationMs);
    const after = { ...run, rows_scanned: run.rows_scanned + k.rowsScanned, rows_affected: run.rows_affected + k.rowsAffected, chunks: run.chunks + 1 };
    o.onProgress?.(progress(job, after, facts, rows, rateOf(rate), null));
    if (pace > 0) await sleep(pace);
  }
}

function rateOf(w: { at: number; rows: number }[]): number {
  if (w.length < 2) return 0;
  const span = (w[w.length - 1].at - w[0].at) / 1000;
  return span > 0 ? w.slice(1).reduce((s, x) => s + x.rows, 0) / span : 0;
}

function progress(job: InplaceJob, run: RunRow, facts: TableFacts, chunkRows: number, rowsPerSecond: number, held: string | null): RunProgress {
  return {
    job: job.job,
    runId: run.id,
    rowsScanned: run.rows_scanned,
    rowsAffected: run.rows_affected,
    rowsEstimated: facts.rowsEstimated,
    chunks: run.chunks,
    chunkRows,
    rowsPerSecond,
    held,
    deadLetters: run.dead_letters,
  };
}

function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (e.code && (e.code.startsWith('08') || e.code === '57P01' || e.code === '57P02' || e.code === '57P03')) return true;
  return /Connection terminated|ECONNRESET|ECONNREFUSED|not queryable|EPIPE/.test(e.message ?? '');
}
