/**
 * The check made before any row changes (by `plan` and by `run`): the chunk statement is planned on
 * a real key range with EXPLAIN, which proves that `set` and `where` parse and name real columns; a
 * plan that reads the whole table for each chunk is refused unless allowed.
 */
import type pg from 'pg';
import { SluiceError } from '../core/errors.js';
import type { TableFacts } from './catalog.js';
import { boundary } from './chunk.js';
import type { InplaceJob } from './job.js';
import { chunkSql, rangeParams, type ChunkTargets, type Key, type TimeWindow } from './statements.js';

/** Below this many rows a sequential scan is what PostgreSQL rightly prefers, and costs nothing. */
export const SCAN_REFUSED_ABOVE_ROWS = 10_000;

export interface PlanCheck {
  /** The EXPLAIN (FORMAT JSON) of the first chunk. */
  plan: unknown;
  lo: Key | null;
  hi: Key | null;
  /** The plan reads the whole table for each chunk. */
  scans: boolean;
  window?: TimeWindow;
}

/** `window`: day/hour chunks are planned on their first window. */
export async function checkPlan(c: pg.ClientBase, job: InplaceJob, facts: TableFacts, targets: ChunkTargets, o: { allowScan: boolean; window?: TimeWindow }): Promise<PlanCheck> {
  const lo = await boundary(c, facts, null, 1, o.window);
  const hi = lo ? await boundary(c, facts, lo, job.chunk.rows, o.window) : null;
  const sql = chunkSql(job, facts, lo !== null, hi !== null, targets).text;
  const values = targets.imageColumns ? [...rangeParams(lo, hi, o.window), '0', '0'] : rangeParams(lo, hi, o.window);
  let plan: unknown;
  try {
    plan = (await c.query(`EXPLAIN (FORMAT JSON) ${sql}`, values)).rows[0]['QUERY PLAN'];
  } catch (err) {
    const e = err as pg.DatabaseError;
    throw new SluiceError(
      'BAD_USAGE',
      `job ${job.job}: the chunk statement does not work on ${facts.schema}.${facts.name}: ${e.message}${e.hint ? ` (${e.hint})` : ''} — check set: and where: (statement: ${sql})`,
      { cause: err },
    );
  }
  const scans = seqScanOf(plan, facts.name);
  if (scans && facts.rowsEstimated > SCAN_REFUSED_ABOVE_ROWS && !o.allowScan) {
    throw new SluiceError(
      'BAD_USAGE',
      `job ${job.job}: each chunk would read all of ${facts.schema}.${facts.name} (~${Math.round(facts.rowsEstimated).toLocaleString('en-US')} rows: a Seq Scan in the plan of ${sql}); ` +
        `make the key range usable (a where: that PostgreSQL cannot combine with the key, a function on the key?), or pass --allow-scan if you mean it`,
    );
  }
  return { plan, lo, hi, scans, window: o.window };
}

/** Whether an EXPLAIN (FORMAT JSON) plan has a Seq Scan of `relation` anywhere. */
export function seqScanOf(plan: unknown, relation: string): boolean {
  let found = false;
  const walk = (n: unknown) => {
    if (!n || typeof n !== 'object') return;
    if (Array.isArray(n)) return n.forEach(walk);
    const o = n as Record<string, unknown>;
    if (o['Node Type'] === 'Seq Scan' && o['Relation Name'] === relation) found = true;
    for (const v of Object.values(o)) if (typeof v === 'object') walk(v);
  };
  walk(plan);
  return found;
}
