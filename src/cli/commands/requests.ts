/** `sluice backfill` and `sluice cancel`: recorded in the destination; a running `sluice run` acts at once. */
import { osUser } from '../../core/os-user.js';
import { SluiceError } from '../../core/errors.js';
import { sleep } from '../../core/retry.js';
import { answerTimeout, awaitAnswers, printAnswers } from './answers.js';
import { TableName, type BackfillMode } from '../../core/types.js';
import { destinationFor, sourceFor } from '../../engines.js';
import { capabilityRefusal } from '../../pipeline/capability-refusal.js';
import { makeLogger, readConfig, type GlobalOptions } from '../shared.js';
import type { Logger } from '../../core/logger.js';
import type { SluiceConfig } from '../../config/schema.js';

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

function timeoutOf(flag: string | undefined): number {
  const t = answerTimeout(flag);
  if (Number.isNaN(t)) throw new SluiceError('BAD_USAGE', `--answer-timeout ${flag}: expected seconds ≥ 0`);
  return t;
}

export const MODE_HELP: Record<BackfillMode, string> = {
  online: 'load a staging table beside the live one, replay, then swap it in atomically: readers never see a missing, empty or partial table (default)',
  upsert: 'load over the existing rows ("do nothing" first); rows deleted at the source before the run stay',
  truncate: 'empty the table first, keeping its schema, indexes and grants; it is partial until the load ends',
  drop: 'drop and recreate the table from the source schema; refused when other objects depend on it, unless --cascade',
};

function tablesIn(cfg: SluiceConfig, names: string[]): string[] {
  const known = new Set(cfg.tables.map((t) => TableName.format(TableName.parse(t.name))));
  return names.map((n) => {
    const q = TableName.format(TableName.parse(n));
    if (!known.has(q)) throw new SluiceError('BAD_USAGE', `table ${q} is not in the config's tables; add it to sluice.yaml first`);
    return q;
  });
}

export async function backfillCommand(names: string[], flags: BackfillFlags, opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const mode = (flags.mode ?? 'online') as BackfillMode;
  if (!(mode in MODE_HELP)) throw new SluiceError('BAD_USAGE', `--mode ${mode}: expected one of ${Object.keys(MODE_HELP).join('|')}`);
  if (flags.keepArchive && mode !== 'online') throw new SluiceError('BAD_USAGE', '--keep-archive applies to --mode online only');
  if (flags.cascade && mode !== 'drop') throw new SluiceError('BAD_USAGE', '--cascade applies to --mode drop only');
  if (flags.json && flags.wait) throw new SluiceError('BAD_USAGE', '--json prints the answers only: leave out --wait and follow the tables with sluice status --json');
  if (flags.strategy && !['keyset', 'interval', 'ctid', 'daterange'].includes(flags.strategy)) {
    throw new SluiceError('BAD_USAGE', `--strategy ${flags.strategy}: expected one of keyset|interval|ctid|daterange`);
  }
  const parallelism = flags.parallelism === undefined ? undefined : Number(flags.parallelism);
  if (parallelism !== undefined && (!Number.isInteger(parallelism) || parallelism < 1)) {
    throw new SluiceError('BAD_USAGE', `--parallelism ${flags.parallelism}: expected a whole number ≥ 1`);
  }
  const tables = tablesIn(cfg, names);
  const timeoutS = timeoutOf(flags.answerTimeout);
  await checkOptions(cfg, tables, { mode, strategy: flags.strategy, parallelism, where: flags.where });
  await refuseAtDestination(cfg, tables, { mode, cascade: Boolean(flags.cascade), where: flags.where });
  const params: Record<string, unknown> = { mode, keepArchive: Boolean(flags.keepArchive) };
  if (flags.cascade) params.cascade = true;
  if (flags.strategy) params.strategy = flags.strategy;
  if (parallelism !== undefined) params.parallelism = parallelism;
  if (flags.where !== undefined) params.where = flags.where;
  const ids = await record(cfg, 'backfill', tables, params, makeLogger(opts));
  if (!flags.json) for (const t of tables) process.stdout.write(`backfill of ${t} requested (mode ${mode})\n`);
  const code = printAnswers(await awaitAnswers(cfg, ids, timeoutS), timeoutS, undefined, flags.json);
  if (code !== 0 || !flags.wait) return code;
  return waitFor(cfg, tables, ids);
}

export async function cancelCommand(names: string[], opts: GlobalOptions, flags: { answerTimeout?: string; json?: boolean } = {}): Promise<number> {
  const cfg = readConfig(opts);
  const tables = tablesIn(cfg, names);
  const timeoutS = timeoutOf(flags.answerTimeout);
  const ids = await record(cfg, 'cancel', tables, {}, makeLogger(opts));
  if (!flags.json) for (const t of tables) process.stdout.write(`cancel of ${t} requested\n`);
  return printAnswers(await awaitAnswers(cfg, ids, timeoutS), timeoutS, undefined, flags.json);
}

/** Strategy, parallelism and scope checked against each source table now: bad input exits 2 before anything is recorded. */
async function checkOptions(
  cfg: SluiceConfig,
  tables: string[],
  o: { mode: string; strategy?: string; parallelism?: number; where?: string },
): Promise<void> {
  const inspection = await sourceFor(cfg).openInspection('sluice-cli');
  try {
    for (const t of tables) {
      const tc = cfg.tables.find((x) => TableName.format(TableName.parse(x.name)) === t)!;
      const info = await inspection.describeTable(TableName.parse(t));
      const strategy = o.strategy ?? tc.strategy;
      await inspection.checkBackfillOptions(
        info,
        { mode: o.mode, strategy, parallelism: o.parallelism ?? (o.strategy && o.strategy !== tc.strategy ? 1 : tc.parallelism), where: o.where ?? tc.where, dateColumn: tc.dateColumn },
        (key) => `--${key}`,
      );
    }
  } finally {
    await inspection.close();
  }
}

/** `sluice throttle`: change limits of the running pipeline; they are kept across restarts until `--reset`. */
export async function throttleCommand(flags: Record<string, string | undefined>, opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const params: Record<string, unknown> = {};
  const num = (flag: string, key: string) => {
    const v = flags[flag];
    if (v === undefined) return;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new SluiceError('BAD_USAGE', `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${v}: expected a number ≥ 0 (0 turns it off)`);
    params[key] = n;
  };
  num('maxRowsPerSecond', 'maxRowsPerSecond');
  num('maxChunksPerSecond', 'maxChunksPerSecond');
  num('maxActiveSessions', 'maxActiveSessions');
  num('maxReplicaLagSeconds', 'maxReplicaLagSeconds');
  num('maxSlotLagBytes', 'maxSlotLagBytes');
  if (flags.query !== undefined) params.query = flags.query;
  if (flags.reset) {
    if (Object.keys(params).length) throw new SluiceError('BAD_USAGE', 'sluice throttle --reset goes back to the config: give it no limits');
    params.reset = true;
  }
  if (Object.keys(params).length === 0) throw new SluiceError('BAD_USAGE', 'sluice throttle: give at least one limit, or --reset (see sluice throttle --help)');
  const timeoutS = timeoutOf(flags.answerTimeout);
  const ids = await record(cfg, 'throttle', ['*'], params, makeLogger(opts));
  return printAnswers(await awaitAnswers(cfg, ids, timeoutS), timeoutS, () => '', Boolean(flags.json));
}

/**
 * What the destination refuses (an online swap that could not carry a dependent, a drop that would
 * take other objects with it, a truncate past foreign keys): exit 2 now, before anything is recorded.
 * The running pipeline checks again with the same function when it accepts the request.
 */
async function refuseAtDestination(cfg: SluiceConfig, tables: string[], o: { mode: BackfillMode; cascade: boolean; where: string | undefined }): Promise<void> {
  const destination = destinationFor(cfg);
  const unable = capabilityRefusal(destination, o.mode);
  if (unable) throw new SluiceError('BAD_USAGE', unable);
  const control = await destination.openControl('sluice-cli');
  try {
    for (const t of tables) {
      const tc = cfg.tables.find((x) => TableName.format(TableName.parse(x.name)) === t)!;
      const target = { schema: cfg.destination.schema, name: TableName.parse(t).name };
      const refusal = await control.backfillRefusal(cfg.pipeline.name, t, target, { mode: o.mode, cascade: o.cascade, where: o.where ?? tc.where });
      if (refusal) throw new SluiceError('BAD_USAGE', refusal);
    }
  } finally {
    await control.close();
  }
}

/**
 * Records requests for the pipeline. Like `run`, it creates `_sluice`, migrates an older format (not
 * while a pipeline on the destination runs) and refuses a newer one.
 */
async function record(cfg: SluiceConfig, kind: string, tables: string[], params: Record<string, unknown>, log: Logger): Promise<number[]> {
  const control = await destinationFor(cfg).openControl('sluice-cli');
  try {
    return await control.recordRequests(cfg.pipeline.name, kind, tables, params, osUser(), log);
  } finally {
    await control.close();
  }
}

async function waitFor(cfg: SluiceConfig, tables: string[], ids: number[]): Promise<number> {
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
