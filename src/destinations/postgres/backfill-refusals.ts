/**
 * What the destination refuses of a requested backfill, checked before anything is loaded: the
 * online swap could not carry the live table's dependents, a drop would take other objects with it
 * (unless `--cascade`), an unscoped truncate meets foreign keys PostgreSQL will not truncate past.
 * One function for both sides: `sluice backfill` refuses it at once (exit 2), and the running
 * pipeline checks again when it accepts the request (the destination may have changed meanwhile).
 */
import type pg from 'pg';
import { TableName } from '../../core/types.js';
import type { RequestedLoad } from '../destination.js';
import { qualified } from './dialect.js';
import { dropDependents, dropRefusal } from './foreign-keys.js';
import { onlineAlternative, referencingKeys, truncateBlockers, truncateRefusal } from './references.js';
import { firstLoadInPlace, uncarriable } from './swap.js';

/** Why the destination cannot take this load (a sentence naming the way through), or null. */
export async function destinationRefusal(c: pg.ClientBase, pipeline: string, name: string, target: TableName, req: RequestedLoad): Promise<string | null> {
  const exists = (await c.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [qualified(target)])).rows[0].ok as boolean;
  if (!exists) return null;
  if (req.mode === 'online' && !(await firstLoadInPlace(c, pipeline, name, target))) {
    const blockers = await uncarriable(c, target);
    if (blockers.length) {
      const referenced = (await referencingKeys(c, target)).length > 0;
      return `the online swap of ${TableName.format(target)} cannot carry ${blockers.join('; ')}; ${onlineAlternative(referenced)}`;
    }
  }
  if (req.mode === 'drop' && !req.cascade) {
    const deps = await dropDependents(c, target);
    if (deps.length) return dropRefusal(target, deps);
  }
  if (req.mode === 'truncate' && req.where.trim() === '') {
    const refs = await truncateBlockers(c, target);
    if (refs.length) return truncateRefusal(target, refs);
  }
  return null;
}
