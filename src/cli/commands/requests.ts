/** `sluice backfill`, `cancel`, `throttle`, `pause` and `resume`: recorded in the destination; a running `sluice run` acts at once. */
import { osUser } from '../../core/os-user.js';
import { SluiceError } from '../../core/errors.js';
import { sleep } from '../../core/retry.js';
import { answerTimeout, awaitAnswers, printAnswers } from './answers.js';
import { destinationFor } from '../../engines.js';
import { backfillParams, checkBackfill, MODE_HELP, recordRequests, tablesIn, throttleParams } from '../../control/requests.js';
import { makeLogger, readConfig, type GlobalOptions } from '../shared.js';
import type { SluiceConfig } from '../../config/schema.js';

export { MODE_HELP };

/** Options are named as on the command line: --keep-archive. */
const flagName = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

export interface BackfillFlags {
  mode?: string;
  strategy?: string;
  where?: string;
  parallelism?: string;
  wait?: boolean;
  keepArchive?: boolean;
  cascade?: boolean;
  answerTimeout?: string;
  json?: boolean;
}

export function timeoutOf(flag: string | undefined): number {
  const t = answerTimeout(flag);
  if (Number.isNaN(t)) throw new SluiceError('BAD_USAGE', `--answer-timeout ${flag}: expected seconds ≥ 0`);
  return t;
}

export async function backfillCommand(names: string[], flags: BackfillFlags, opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const { mode, params } = backfillParams(flags, flagName);
  if (flags.json && flags.wait) throw new SluiceError('BAD_USAGE', '--json prints the answers only: leave out --wait and follow the tables with sluice status --json');
  const tables = tablesIn(cfg, names);
  const timeoutS = timeoutOf(flags.answerTimeout);
  await checkBackfill(cfg, tables, params, flagName);
  const ids = await recordRequests(cfg, 'backfill', tables, params, osUser(), makeLogger(opts));
  if (!flags.json) for (const t of tables) process.stdout.write(`backfill of ${t} requested (mode ${mode})\n`);
  const code = printAnswers(await awaitAnswers(cfg, ids, timeoutS), timeoutS, undefined, flags.json);
  if (code !== 0 || !flags.wait) return code;
  return waitFor(cfg, tables, ids);
}

export async function cancelCommand(names: string[], opts: GlobalOptions, flags: { answerTimeout?: string; reason?: string; json?: boolean } = {}): Promise<number> {
  const cfg = readConfig(opts);
  const tables = tablesIn(cfg, names);
  const timeoutS = timeoutOf(flags.answerTimeout);
  const ids = await recordRequests(cfg, 'cancel', tables, flags.reason ? { reason: flags.reason } : {}, osUser(), makeLogger(opts));
  if (!flags.json) for (const t of tables) process.stdout.write(`cancel of ${t} requested\n`);
  return printAnswers(await awaitAnswers(cfg, ids, timeoutS), timeoutS, undefined, flags.json);
}

/** `sluice throttle`: change limits of the running pipeline; they are kept across restarts until `--reset`. */
export async function throttleCommand(flags: Record<string, string | undefined>, opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const params = throttleParams({ ...flags, reset: Boolean(flags.reset) }, flagName);
  const timeoutS = timeoutOf(flags.answerTimeout);
  const ids = await recordRequests(cfg, 'throttle', ['*'], params, osUser(), makeLogger(opts));
  return printAnswers(await awaitAnswers(cfg, ids, timeoutS), timeoutS, () => '', Boolean(flags.json));
}

/** `sluice pause` / `sluice resume`: hold or let go on copying (`--apply`: applying) in the running pipeline. */
export async function pauseCommand(kind: 'pause' | 'resume', flags: { apply?: boolean; reason?: string; answerTimeout?: string }, opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const timeoutS = timeoutOf(flags.answerTimeout);
  const params: Record<string, unknown> = { scope: flags.apply ? 'apply' : 'backfills' };
  if (flags.reason) params.reason = flags.reason;
  const ids = await recordRequests(cfg, kind, ['*'], params, osUser(), makeLogger(opts));
  return printAnswers(await awaitAnswers(cfg, ids, timeoutS), timeoutS, () => '');
}

export async function waitFor(cfg: SluiceConfig, tables: string[], ids: number[]): Promise<number> {
  const control = await destinationFor(cfg).openControl('sluice-cli');
  try {
    for (;;) {
      const handled = await control.answers(ids);
      const refused = handled.filter((r) => /^(refused|unknown)/.test(r.outcome));
      if (refused.length) {
        for (const r of refused) process.stderr.write(`${r.table}: ${r.outcome}\n`);
        return 2;
      }
      if (handled.length === ids.length) {
        const states = await Promise.all(tables.map((t) => control.tableState(cfg.pipeline.name, t)));
        const failed = states.filter((s) => s?.state === 'failed');
        if (failed.length) {
          for (const s of failed) process.stderr.write(`${s!.name}: failed: ${s!.error}\n`);
          return 1;
        }
        // Refused by the pipeline's own check before anything changed: the table streams on as it was.
        const refusedLater = states.filter((s) => s?.error?.startsWith('backfill refused'));
        if (refusedLater.length) {
          for (const s of refusedLater) process.stderr.write(`${s!.name}: ${s!.error}\n`);
          return 2;
        }
        if (states.every((s) => s?.state === 'streaming')) {
          for (const s of states) process.stdout.write(`${s!.name}: streaming (${s!.rowsCopied.toLocaleString('en-US')} rows copied)\n`);
          return 0;
        }
      }
      await sleep(500);
    }
  } finally {
    await control.close();
  }
}
