/**
 * What `run` and `plan` know before a row changes: the table (and the time window spec of day/hour
 * chunks), the tables the statement writes beyond it, the scope of day/hour chunks, and the checked
 * plan of a first chunk.
 */
import type pg from 'pg';
import { readTable, type TableFacts } from './catalog.js';
import type { InplaceJob } from './job.js';
import { checkPlan, type PlanCheck } from './plan-check.js';
import type { ChunkTargets, TimeWindow } from './statements.js';
import { resolveTargets } from './targets.js';
import { addUnits, scopeOf, windowSpec } from './windows.js';

export interface PreparedJob {
  facts: TableFacts;
  targets: ChunkTargets;
  /** Day/hour chunks: the scope [from, to) in local time; null when no row has a value. */
  scope?: TimeWindow | null;
  check: PlanCheck;
}

/** An empty scope still runs one (empty) final chunk, so that the run ends like any other. */
export const EMPTY_SCOPE: TimeWindow = { from: '1970-01-01 00:00:00', to: '1970-01-01 00:00:00' };

export async function prepareJob(c: pg.ClientBase, job: InplaceJob, o: { allowScan: boolean; scope?: TimeWindow | null }): Promise<PreparedJob> {
  const table = await readTable(c, job.table);
  const window = await windowSpec(c, job, table);
  const facts: TableFacts = window ? { ...table, window } : table;
  const targets = await resolveTargets(c, job, facts);
  let scope: TimeWindow | null | undefined;
  let first: TimeWindow | undefined;
  if (window) {
    scope = o.scope !== undefined ? o.scope : await scopeOf(c, job, { ...facts, window });
    const s = scope ?? EMPTY_SCOPE;
    const next = addUnits(s.from, job.chunk.by as 'day' | 'hour');
    first = { from: s.from, to: next < s.to ? next : s.to };
  }
  const check = await checkPlan(c, job, facts, targets, { allowScan: o.allowScan, window: first });
  return { facts, targets, scope, check };
}
