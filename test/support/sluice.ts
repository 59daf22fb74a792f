/**
 * Runs the real sluice CLI (dist/src/cli/main.js) as a child process against test clusters:
 * writes a config into a fresh directory, starts `sluice run`, sends signals (SIGKILL for crash
 * tests), and runs one-shot commands with their exit code and output.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
/** dist/test/support → dist/src/cli/main.js */
export const CLI = resolve(here, '../../src/cli/main.js');

export interface TableSpec {
  name: string;
  mode?: string;
  chunkRows?: number;
  strategy?: string;
  /** chunks of the table read at once (interval, ctid) */
  parallelism?: number;
  /** target seconds per chunk; 0 keeps chunkRows fixed */
  chunkSeconds?: number;
  /** WHERE scope (written as a YAML double-quoted string) */
  where?: string;
  /** `source` | `none` */
  indexes?: string;
  /** daterange: the time column */
  dateColumn?: string;
}

export interface Workdir {
  dir: string;
  config: string;
  remove(): void;
}

/** A directory with a sluice.yaml (and room for the change log). */
export function makeWorkdir(opts: {
  sourceUrl: string;
  destinationUrl: string;
  tables: TableSpec[];
  pipeline?: string;
  /** more keys of the `pipeline:` mapping, e.g. `concurrency: 2, workers: 4` */
  pipelineExtra?: string;
  /** source.replicaUrl */
  replicaUrl?: string;
  /** more keys of the `source:` mapping, e.g. `replicationTimeoutMs: 10000` */
  sourceExtra?: string;
  extra?: string;
}): Workdir {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-work-'));
  const tables = opts.tables
    .map((t) => {
      const fields = [`name: ${t.name}`];
      if (t.mode) fields.push(`mode: ${t.mode}`);
      if (t.chunkRows) fields.push(`chunkRows: ${t.chunkRows}`);
      if (t.strategy) fields.push(`strategy: ${t.strategy}`);
      if (t.parallelism !== undefined) fields.push(`parallelism: ${t.parallelism}`);
      if (t.chunkSeconds !== undefined) fields.push(`chunkSeconds: ${t.chunkSeconds}`);
      if (t.where !== undefined) fields.push(`where: ${JSON.stringify(t.where)}`);
      if (t.indexes !== undefined) fields.push(`indexes: ${t.indexes}`);
      if (t.dateColumn !== undefined) fields.push(`dateColumn: ${t.dateColumn}`);
      return `  - { ${fields.join(', ')} }`;
    })
    .join('\n');
  const config = join(dir, 'sluice.yaml');
  writeFileSync(
    config,
    `pipeline: { name: ${opts.pipeline ?? 'test'}, heartbeatIntervalMs: 1000${opts.pipelineExtra ? `, ${opts.pipelineExtra}` : ''} }
source: { type: postgres, url: "${opts.sourceUrl}"${opts.replicaUrl ? `, replicaUrl: "${opts.replicaUrl}"` : ''}${opts.sourceExtra ? `, ${opts.sourceExtra}` : ''} }
destination: { type: postgres, url: "${opts.destinationUrl}" }
log: { type: embedded, path: "${join(dir, 'log')}" }
${opts.extra ?? ''}
tables:
${tables}
`,
  );
  return { dir, config, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a one-shot command (`status`, `verify`, `backfill`, ...) to completion. */
export function sluice(args: string[], opts: { config?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  const child = spawnSluice(args, opts);
  return child.exited(opts.timeoutMs ?? 120_000);
}

export interface Running {
  child: ChildProcess;
  /** Everything printed so far (stdout + stderr). */
  output(): string;
  exited(timeoutMs?: number): Promise<Result>;
  /** Resolves when the output matches (or rejects after the timeout, showing the output). */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
}

export function spawnSluice(args: string[], opts: { config?: string; env?: NodeJS.ProcessEnv } = {}): Running {
  const full = opts.config ? ['-c', opts.config, ...args] : args;
  const child = spawn(process.execPath, [CLI, ...full], {
    env: { ...process.env, SLUICE_LOG_FORMAT: 'pretty', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const exit = new Promise<Result>((resolve) => {
    child.on('exit', (code, signal) => {
      // Let the pipes drain.
      setTimeout(() => resolve({ code, signal, stdout, stderr }), 20);
    });
  });
  return {
    child,
    output: () => stdout + stderr,
    exited: (timeoutMs = 120_000) =>
      Promise.race([
        exit,
        new Promise<Result>((_, reject) =>
          setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`sluice ${full.join(' ')} did not exit within ${timeoutMs} ms; output:\n${stdout}${stderr}`));
          }, timeoutMs).unref(),
        ),
      ]),
    waitForOutput: async (pattern, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(stdout + stderr)) {
        if (child.exitCode !== null) throw new Error(`sluice exited (${child.exitCode}) before printing ${pattern}; output:\n${stdout}${stderr}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; output:\n${stdout}${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    kill: (signal = 'SIGKILL') => child.kill(signal),
  };
}

/** SIGKILLs a `sluice run` that is still running and waits for it (test teardown). */
export async function killIfRunning(run: Running | undefined): Promise<void> {
  if (!run || run.child.exitCode !== null) return;
  run.kill('SIGKILL');
  await run.exited(10_000).catch(() => undefined);
}

/** Polls `check` until it returns true. */
export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 60_000, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Polls the independent oracle until source and destination agree on `table`. On timeout it throws
 * the oracle's last difference with the tail of sluice's output; it fails at once if sluice exited.
 */
export async function eventuallyEqual(
  sourceUrl: string,
  destinationUrl: string,
  table: string,
  opts: { what?: string; timeoutMs?: number; everyMs?: number; run?: Running; columns?: string[] } = {},
): Promise<void> {
  const { assertTablesEqual } = await import('./oracle.js');
  const what = opts.what ?? table;
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  for (;;) {
    try {
      await assertTablesEqual(sourceUrl, destinationUrl, table, opts.columns);
      return;
    } catch (err) {
      const run = opts.run;
      if (run && run.child.exitCode !== null) throw new Error(`sluice exited (${run.child.exitCode}) during "${what}"; output:\n${run.output()}`);
      if (Date.now() > deadline) {
        (err as Error).message = `${what}: ${(err as Error).message}\n--- sluice output (tail):\n${run?.output().slice(-4000) ?? ''}`;
        throw err;
      }
      await new Promise((r) => setTimeout(r, opts.everyMs ?? 200));
    }
  }
}
