/**
 * Requests to the running pipeline (`_sluice.requests`), shared by the CLI (`sluice backfill`,
 * `cancel`, `throttle`, `pause`, `resume`) and the HTTP API: the same validation, the same checks at
 * the source and destination before anything is recorded, the same record with actor and reason.
 * Bad input is a SluiceError BAD_USAGE naming the fix (the CLI exits 2, the API answers 422).
 */
import { SluiceError } from '../core/errors.js';
import { TableName, type BackfillMode } from '../core/types.js';
import { destinationFor, sourceFor } from '../engines.js';
import { capabilityRefusal } from '../pipeline/capability-refusal.js';
import { BACKFILL_STRATEGIES, type SluiceConfig } from '../config/schema.js';
import type { Logger } from '../core/logger.js';

export const MODE_HELP: Record<BackfillMode, string> = {
  online: 'load a staging table beside the live one, replay, then swap it in atomically: readers never see a missing, empty or partial table (default)',
  upsert: 'load over the existing rows ("do nothing" first); rows deleted at the source before the run stay',
  truncate: 'empty the table first, keeping its schema, indexes and grants; it is partial until the load ends',
  drop: 'drop and recreate the table from the source schema; refused when other objects depend on it, unless --cascade',
};

/** How an option is named to the person who gave it: `--where` on the command line, `where` in JSON. */
export type OptionName = (key: string) => string;

export interface BackfillInput {
  mode?: string;
  strategy?: string;
  where?: string;
  parallelism?: number | string;
  keepArchive?: boolean;
  cascade?: boolean;
  reason?: string;
}

/** The configured tables among `names`, as schema.name; an unknown one is refused naming the fix. */
export function tablesIn(cfg: SluiceConfig, names: readonly string[]): string[] {
  const known = new Set(cfg.tables.map((t) => TableName.format(TableName.parse(t.name))));
  if (names.length === 0) throw new SluiceError('BAD_USAGE', 'no tables given: name at least one of the configured tables');
  return names.map((n) => {
    const q = TableName.format(TableName.parse(n));
    if (!known.has(q)) throw new SluiceError('BAD_USAGE', `table ${q} is not in the config's tables; add it to sluice.yaml first`);
    return q;
  });
}

/** Checks a backfill request's options on their own and returns the params recorded with it. */
export function backfillParams(input: BackfillInput, name: OptionName): { mode: BackfillMode; params: Record<string, unknown> } {
  const mode = (input.mode ?? 'online') as BackfillMode;
  if (!(mode in MODE_HELP)) throw new SluiceError('BAD_USAGE', `${name('mode')} ${mode}: expected one of ${Object.keys(MODE_HELP).join('|')}`);
  if (input.keepArchive && mode !== 'online') throw new SluiceError('BAD_USAGE', `${name('keepArchive')} applies to ${name('mode')} online only`);
  if (input.cascade && mode !== 'drop') throw new SluiceError('BAD_USAGE', `${name('cascade')} applies to ${name('mode')} drop only`);
  if (input.strategy && !(BACKFILL_STRATEGIES as readonly string[]).includes(input.strategy)) {
    throw new SluiceError('BAD_USAGE', `${name('strategy')} ${input.strategy}: expected one of ${BACKFILL_STRATEGIES.join('|')}`);
  }
  const parallelism = input.parallelism === undefined || input.parallelism === '' ? undefined : Number(input.parallelism);
  if (parallelism !== undefined && (!Number.isInteger(parallelism) || parallelism < 1)) {
    throw new SluiceError('BAD_USAGE', `${name('parallelism')} ${input.parallelism}: expected a whole number ≥ 1`);
  }
  const params: Record<string, unknown> = { mode, keepArchive: Boolean(input.keepArchive) };
  if (input.cascade) params.cascade = true;
  if (input.strategy) params.strategy = input.strategy;
  if (parallelism !== undefined) params.parallelism = parallelism;
  if (input.where !== undefined && input.where !== '') params.where = input.where;
  if (input.reason) params.reason = input.reason;
  return { mode, params };
}

/**
 * Strategy, parallelism and scope checked against each source table, then what the destination
 * refuses (a swap that could not carry a dependent, a drop that would take other objects with it, a
 * truncate past foreign keys): refused now, before anything is recorded. The running pipeline checks
 * again with the same functions when it accepts the request.
 */
export async function checkBackfill(cfg: SluiceConfig, tables: readonly string[], params: Record<string, unknown>, name: OptionName): Promise<void> {
  const mode = params.mode as BackfillMode;
  const strategy = params.strategy as string | undefined;
  const where = params.where as string | undefined;
  const inspection = await sourceFor(cfg).openInspection('sluice-cli');
  try {
    for (const t of tables) {
      const tc = configOf(cfg, t);
      const info = await inspection.describeTable(TableName.parse(t));
      const parallelism = (params.parallelism as number | undefined) ?? (strategy && strategy !== tc.strategy ? 1 : tc.parallelism);
      await inspection.checkBackfillOptions(info, { mode, strategy: strategy ?? tc.strategy, parallelism, where: where ?? tc.where, dateColumn: tc.dateColumn }, name);
    }
  } finally {
    await inspection.close();
  }
  const destination = destinationFor(cfg);
  const unable = capabilityRefusal(destination, mode);
  if (unable) throw new SluiceError('BAD_USAGE', unable);
  const control = await destination.openControl('sluice-cli');
  try {
    for (const t of tables) {
      const target = { schema: cfg.destination.schema, name: TableName.parse(t).name };
      const refusal = await control.backfillRefusal(cfg.pipeline.name, t, target, { mode, cascade: Boolean(params.cascade), where: where ?? configOf(cfg, t).where });
      if (refusal) throw new SluiceError('BAD_USAGE', refusal);
    }
  } finally {
    await control.close();
  }
}

function configOf(cfg: SluiceConfig, table: string) {
  return cfg.tables.find((x) => TableName.format(TableName.parse(x.name)) === table)!;
}

/** The limits a throttle request changes (0 turns one off); none given is refused. */
export function throttleParams(input: Record<string, unknown>, name: OptionName): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const key of ['maxRowsPerSecond', 'maxChunksPerSecond', 'maxActiveSessions', 'maxReplicaLagSeconds', 'maxSlotLagBytes']) {
    const v = input[key];
    if (v === undefined || v === null || v === '') continue;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new SluiceError('BAD_USAGE', `${name(key)} ${String(v)}: expected a number ≥ 0 (0 turns it off)`);
    params[key] = n;
  }
  if (typeof input.query === 'string') params.query = input.query;
  if (input.reset) {
    if (Object.keys(params).length) throw new SluiceError('BAD_USAGE', 'a throttle reset goes back to the config: give it no limits');
    params.reset = true;
  }
  if (Object.keys(params).length === 0) throw new SluiceError('BAD_USAGE', 'give at least one throttle limit, or reset');
  if (typeof input.reason === 'string' && input.reason) params.reason = input.reason;
  return params;
}

/** What pause and resume act on: copying (capture and apply go on) or applying (capture goes on into the change log). */
export const PAUSE_SCOPES = ['backfills', 'apply'] as const;
export type PauseScope = (typeof PAUSE_SCOPES)[number];

export function pauseScope(scope: unknown, name: OptionName): PauseScope {
  const s = scope ?? 'backfills';
  if (!(PAUSE_SCOPES as readonly unknown[]).includes(s)) throw new SluiceError('BAD_USAGE', `${name('scope')} ${String(s)}: expected one of ${PAUSE_SCOPES.join('|')}`);
  return s as PauseScope;
}

/**
 * Records requests (one per table, `*` for the pipeline as a whole) with who asked. Like `run`, it
 * creates `_sluice`, migrates an older format (not while a pipeline on the destination runs) and
 * refuses a newer one.
 */
export async function recordRequests(
  cfg: SluiceConfig,
  kind: string,
  tables: readonly string[],
  params: Record<string, unknown>,
  actor: string | null,
  log: Logger,
): Promise<number[]> {
  const control = await destinationFor(cfg).openControl('sluice-cli');
  try {
    return await control.recordRequests(cfg.pipeline.name, kind, tables, params, actor, log);
  } finally {
    await control.close();
  }
}
