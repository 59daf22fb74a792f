/**
 * The CLI's side of a PostgreSQL destination's state (DestinationControl of destinations/destination.ts):
 * `_sluice.requests` and their answers, table states, the pipeline lock, archives, the runs' audit. One connection.
 */
import type pg from 'pg';
import type { Logger } from '../../core/logger.js';
import { closeClient } from '../../postgres/connection.js';
import { withTransaction } from '../../postgres/session.js';
import type { Position, TableName, TableState } from '../../core/types.js';
import type {
  ArchiveRow,
  CursorState,
  DestinationControl,
  DropOutcome,
  PipelineRun,
  RequestAnswer,
  RequestedLoad,
  RequestRow,
  RunOutcome,
  RunRow,
  TableRow,
  TableStateFields,
} from '../destination.js';
import { dropArchive, listArchives } from './archives.js';
import { rollbackArchive } from './restore.js';
import { destinationRefusal } from './backfill-refusals.js';
import { pipelineLockHolder } from './pipeline-lock.js';
import { dropDependents } from './foreign-keys.js';
import { readRequests, readRuns } from './audit.js';
import { assertStateReadable, ensureStateSchema, readStateFormat } from './state-format.js';
import { knownLogId, readCursors, readTable, readTables, registerPipeline, setRunStatus, setTableState } from './state.js';

export class PostgresControl implements DestinationControl {
  constructor(private readonly dst: pg.Client) {}

  async assertStateReadable(): Promise<void> {
    assertStateReadable(await readStateFormat(this.dst));
  }

  async recordRequests(pipeline: string, kind: string, tables: readonly string[], params: Record<string, unknown>, requestedBy: string | null, log: Logger): Promise<number[]> {
    const dst = this.dst;
    await ensureStateSchema(dst, log);
    return withTransaction(dst, async () => {
      const ids: number[] = [];
      for (const t of tables) {
        const r = await dst.query(
          `INSERT INTO _sluice.requests (pipeline, kind, table_name, params, requested_by) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
          [pipeline, kind, t, JSON.stringify(params), requestedBy],
        );
        ids.push(Number(r.rows[0].id));
      }
      await dst.query(`NOTIFY sluice_requests`);
      return ids;
    });
  }

  backfillRefusal(pipeline: string, name: string, target: TableName, load: RequestedLoad): Promise<string | null> {
    return destinationRefusal(this.dst, pipeline, name, target, load);
  }

  async answers(ids: readonly number[]): Promise<RequestAnswer[]> {
    const r = await this.dst.query(`SELECT table_name, outcome FROM _sluice.requests WHERE id = ANY($1) AND handled_at IS NOT NULL ORDER BY id`, [ids]);
    return r.rows.map((x) => ({ table: x.table_name as string, outcome: x.outcome as string }));
  }

  tableState(pipeline: string, name: string): Promise<TableRow | null> {
    return readTable(this.dst, pipeline, name);
  }

  async pipelineRunning(pipeline: string): Promise<boolean> {
    return (await pipelineLockHolder(this.dst, pipeline)) !== null;
  }

  listArchives(pipeline: string): Promise<ArchiveRow[]> {
    return listArchives(this.dst, pipeline);
  }

  dropArchive(pipeline: string, archive: string, lockTimeoutMs: number): Promise<DropOutcome> {
    return dropArchive(this.dst, pipeline, archive, lockTimeoutMs);
  }

  async rollbackArchive(pipeline: string, name: string): Promise<{ archive: string; at: Position } | null> {
    if (!(await this.dst.query(`SELECT to_regclass('_sluice.archives') IS NOT NULL AS ok`)).rows[0].ok) return null;
    return rollbackArchive(this.dst, pipeline, name);
  }

  dropDependents(target: TableName): Promise<string[]> {
    return dropDependents(this.dst, target);
  }

  listRuns(pipeline: string, table: string | null, limit: number): Promise<RunRow[]> {
    return readRuns(this.dst, pipeline, table, limit);
  }

  listRequests(pipeline: string, limit: number): Promise<RequestRow[]> {
    return readRequests(this.dst, pipeline, limit);
  }

  async ensureState(log: Logger): Promise<void> {
    await ensureStateSchema(this.dst, log);
  }

  tables(pipeline: string): Promise<TableRow[]> {
    return readTables(this.dst, pipeline);
  }

  async cursors(pipeline: string): Promise<CursorState[]> {
    return [...(await readCursors(this.dst, pipeline)).values()];
  }

  knownLogId(pipeline: string): Promise<string | null> {
    return knownLogId(this.dst, pipeline);
  }

  registerPipeline(run: PipelineRun): Promise<void> {
    return registerPipeline(this.dst, run);
  }

  async recordTableState(pipeline: string, name: string, state: TableState, fields: TableStateFields, run?: RunOutcome): Promise<void> {
    await withTransaction(this.dst, async () => {
      await setTableState(this.dst, pipeline, name, state, fields);
      if (run) await setRunStatus(this.dst, pipeline, name, run.status, run.error);
    });
  }

  async close(): Promise<void> {
    await closeClient(this.dst);
  }
}
