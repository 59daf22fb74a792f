/**
 * Executable hooks, gh-ost style, for sites without an HTTP receiver: for each event, the file
 * `<hooksDir>/sluice-on-<event>` (e.g. `sluice-on-backfill.completed`), when it exists and is
 * executable, runs with the event as JSON on stdin and in SLUICE_PAYLOAD, and with SLUICE_EVENT,
 * SLUICE_PIPELINE, SLUICE_TABLE, SLUICE_AT and one SLUICE_<DETAIL_KEY> per scalar detail
 * (rowsCopied → SLUICE_ROWS_COPIED). Unlike gh-ost's, hooks run beside the pipeline, never in its
 * way: a hook past its timeout is killed, and a failure is logged, not raised.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import type { SluiceEvent } from '../core/events.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/** Hooks running at once; an event that finds this many still running is logged and its hook skipped. */
const MAX_RUNNING = 16;
/** Output of a hook kept for the log line when it fails. */
const OUTPUT_BYTES = 2000;

export function hookFileName(event: SluiceEvent['name']): string {
  return `sluice-on-${event}`;
}

/** The environment a hook gets for an event (besides the inherited one). */
export function hookEnv(event: SluiceEvent): Record<string, string> {
  const env: Record<string, string> = {
    SLUICE_EVENT: event.name,
    SLUICE_PIPELINE: event.pipeline,
    SLUICE_TABLE: event.table ?? '',
    SLUICE_AT: event.at,
    SLUICE_PAYLOAD: JSON.stringify(event),
  };
  for (const [k, v] of Object.entries(event.detail)) {
    if (v === null || !['string', 'number', 'boolean'].includes(typeof v)) continue;
    env[`SLUICE_${k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`] = String(v);
  }
  return env;
}

export class HookRunner {
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly dir: string,
    private readonly timeoutMs: number,
    private readonly logger: Logger,
  ) {}

  /** Starts the event's hook if there is one; returns at once. */
  run(event: SluiceEvent): void {
    const file = join(this.dir, hookFileName(event.name));
    try {
      accessSync(file, constants.X_OK);
    } catch {
      return;
    }
    if (this.running.size >= MAX_RUNNING) {
      this.logger.warn('hook skipped: too many hooks still running', { hook: file, running: this.running.size });
      return;
    }
    const p = this.exec(file, event).finally(() => this.running.delete(p));
    this.running.add(p);
  }

  /** Waits for the hooks still running (each is bounded by its timeout). */
  async stop(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }

  private exec(file: string, event: SluiceEvent): Promise<void> {
    return new Promise<void>((resolve) => {
      const started = Date.now();
      let output = '';
      const keep = (b: Buffer) => {
        if (output.length < OUTPUT_BYTES) output += b.toString('utf8').slice(0, OUTPUT_BYTES - output.length);
      };
      const child = spawn(file, [], { env: { ...process.env, ...hookEnv(event) }, stdio: ['pipe', 'pipe', 'pipe'], cwd: this.dir });
      const timer = setTimeout(() => {
        this.logger.warn('hook timed out; killed', { hook: file, event: event.name, timeoutMs: this.timeoutMs });
        child.kill('SIGKILL');
      }, this.timeoutMs);
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      // A hook that does not read its stdin is fine: EPIPE is ignored.
      child.stdin.on('error', () => {});
      child.stdin.end(JSON.stringify(event) + '\n');
      child.on('error', (err) => {
        clearTimeout(timer);
        this.logger.warn('hook could not run', { hook: file, event: event.name, error: errorMessage(err) });
        resolve();
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const ms = Date.now() - started;
        if (code === 0) this.logger.debug('hook ran', { hook: file, event: event.name, ms });
        else this.logger.warn('hook failed', { hook: file, event: event.name, exitCode: code, signal, ms, output: output.trim() });
        resolve();
      });
    });
  }
}
