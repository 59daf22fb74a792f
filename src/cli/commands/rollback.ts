/**
 * `sluice rollback TABLE`: recorded in the destination like a backfill; the running `sluice run`
 * brings the table's newest kept archive current and swaps it back in (src/pipeline/rollback.ts).
 */
import { osUser } from '../../core/os-user.js';
import { awaitAnswers } from '../../control/answers.js';
import { tablesIn, recordRequests } from '../../control/requests.js';
import { checkRollback } from '../../control/rollback.js';
import { makeLogger, readConfig, type GlobalOptions } from '../shared.js';
import { printAnswers } from './answers.js';
import { timeoutOf, waitFor } from './requests.js';

export interface RollbackFlags {
  keepArchive?: boolean;
  wait?: boolean;
  reason?: string;
  answerTimeout?: string;
}

export async function rollbackCommand(names: string[], flags: RollbackFlags, opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const tables = tablesIn(cfg, names);
  const timeoutS = timeoutOf(flags.answerTimeout);
  const lines = await checkRollback(cfg, tables);
  const params: Record<string, unknown> = { keepArchive: Boolean(flags.keepArchive) };
  if (flags.reason) params.reason = flags.reason;
  const ids = await recordRequests(cfg, 'rollback', tables, params, osUser(), makeLogger(opts));
  for (const line of lines) process.stdout.write(`rollback requested: ${line}\n`);
  const code = printAnswers(await awaitAnswers(cfg, ids, timeoutS), timeoutS);
  if (code !== 0 || !flags.wait) return code;
  return waitFor(cfg, tables, ids);
}
