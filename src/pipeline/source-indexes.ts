/**
 * After the load into a table sluice created: the source's secondary indexes on it, before the
 * replay from L0 (docs/architecture.md, "Secondary indexes"). What could not be built is logged per
 * index and recorded in the run's params (`_sluice.runs.params->'indexes'`).
 */
import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import { TableName } from '../core/types.js';
import { createSourceIndexes } from '../destinations/postgres/indexes.js';
import { sourceIndexes } from '../sources/postgres/indexes.js';
import type { TableRuntime } from './runtime.js';

export async function buildSourceIndexes(src: pg.ClientBase, dst: pg.ClientBase, rt: TableRuntime, runId: number, log: Logger): Promise<void> {
  const indexes = await sourceIndexes(src, rt.source);
  if (indexes.length === 0) return;
  const started = Date.now();
  const report = await createSourceIndexes(dst, indexes, rt.target, (message, fields) => log.warn(message, fields));
  await dst.query(`UPDATE _sluice.runs SET params = coalesce(params, '{}'::jsonb) || jsonb_build_object('indexes', $2::jsonb) WHERE id = $1`, [
    runId,
    JSON.stringify(report),
  ]);
  log.info('source indexes built', {
    target: TableName.format(rt.target),
    created: report.created,
    withoutUnique: report.notUnique.length ? report.notUnique : undefined,
    skipped: report.skipped.length ? report.skipped.map((s) => s.name) : undefined,
    seconds: (Date.now() - started) / 1000,
  });
}
