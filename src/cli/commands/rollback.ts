/**
 * `sluice rollback TABLE`: recorded in the destination like a backfill; the running `sluice run`
 * brings the table's newest kept archive current and swaps it back in (src/pipeline/rollback.ts).
 * What can be checked without the pipeline is checked here first: exit 2 before anything is recorded.
 */
import { SluiceError } from '../../core/errors.js';
import { Lsn } from '../../core/types.js';
import { destinationFor } from '../../engines.js';
import { makeLogger, readConfig, type GlobalOptions } from '../shared.js';
import { printAnswers, awaitAnswers } from './answers.js';
import { record, tablesIn, timeoutOf, waitFor } from './requests.js';

export interface RollbackFlags {
  keepArchive?: boolean;
  wait?: boolean;
  answerTimeout?: string;
}

export async function rollbackCommand(names: string[], flags: RollbackFlags, opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const tables = tablesIn(cfg, names);
  const timeoutS = timeoutOf(flags.answerTimeout);
  const destination = destinationFor(cfg);
  const control = await destination.openControl('sluice-cli');
  const archives: string[] = [];
  try {
    if (!control.rollbackArchive) throw new SluiceError('BAD_USAGE', `${destination.type} destinations cannot roll back a table yet`);
    for (const t of tables) {
      const a = await control.rollbackArchive(cfg.pipeline.name, t);
      if (!a) {
        throw new SluiceError(
          'BAD_USAGE',
          `${t} has no archive to roll back to: an online backfill keeps the table it replaced for online.archiveRetentionHours ` +
            `(or for good with --keep-archive), and only the newest one, while it is kept, can be swapped back (\`sluice archives list\` shows them)`,
        );
      }
      archives.push(`${t}: back to ${a.archive} (archived at ${Lsn.format(a.at.lsn)})`);
    }
  } finally {
    await control.close();
  }
  const ids = await record(cfg, 'rollback', tables, { keepArchive: Boolean(flags.keepArchive) }, makeLogger(opts));
  for (const line of archives) process.stdout.write(`rollback requested: ${line}\n`);
  const code = printAnswers(await awaitAnswers(cfg, ids, timeoutS), timeoutS);
  if (code !== 0 || !flags.wait) return code;
  return waitFor(cfg, tables, ids);
}
