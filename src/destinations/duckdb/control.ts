/**
 * The CLI's side of a DuckDB destination's state (DestinationControl of destinations/destination.ts).
 * DuckDB lets one process have the file (connection.ts): while `sluice run` holds it, another process
 * cannot open it at all and gets exit 2 naming the holder (errors.ts, lockConflictError); inside the
 * running process the control shares the pipeline's file (held-file.ts).
 */
import { hostname } from 'node:os';
import { SluiceError } from '../../core/errors.js';
import { Lsn, type BackfillMode, type TableName, type TableState } from '../../core/types.js';
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
import { dropTableSql } from './dialect.js';
import type { HeldFile } from './held-file.js';
import { DUCKDB_STATE_FORMAT, ensureStateSchema, readStateFormat, setRunStatus, setTableState } from './state.js';
import { tableColumns } from './catalog.js';

const json = (v: unknown): unknown => (v === null || v === undefined ? null : JSON.parse(String(v)));
const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

function toRow(r: Record<string, unknown>): TableRow {
  return {
    name: r.name as string,
    target: r.target as string,
    state: r.state as TableState,
    mode: (r.mode as BackfillMode | null) ?? null,
    chunkRows: num(r.chunk_rows),
    runId: num(r.run_id),
    l0: r.l0_lsn === null ? null : Lsn.of(BigInt(r.l0_lsn as bigint)),
    lastKey: json(r.last_key) as TableRow['lastKey'],
    chunksDone: Number(r.chunks_done),
    rowsCopied: Number(r.rows_copied),
    rowsEstimated: Number(r.rows_estimated),
    rowsPerSecond: Number(r.rows_per_second),
    pendingLsn: r.pending_lsn === null ? null : Lsn.of(BigInt(r.pending_lsn as bigint)),
    lagSeconds: num(r.lag_seconds),
    error: (r.error as string | null) ?? null,
    staging: (r.staging as string | null) ?? null,
    keepArchive: Boolean(r.keep_archive),
    plan: json(r.plan) as Record<string, unknown> | null,
    detail: (r.detail as string | null) ?? null,
    updatedAt: new Date(String(r.updated_at)),
  };
}

export class DuckDbControl implements DestinationControl {
  private closed = false;

  constructor(
    private readonly held: HeldFile,
    private readonly runningHere: (pipeline: string) => boolean,
  ) {}

  async assertStateReadable(): Promise<void> {
    const format = await this.held.exclusive((file) => readStateFormat(file));
    if (format !== null && format > DUCKDB_STATE_FORMAT) {
      throw new SluiceError('STATE_FORMAT', `the _sluice state in DuckDB file ${this.held.path} is format ${format}, this sluice reads formats up to ${DUCKDB_STATE_FORMAT}: upgrade sluice`);
    }
  }

  /**
   * Refused: no process can reach the file while `sluice run` holds it, and the running pipeline reads
   * requests only from a PostgreSQL destination for now; a request written while it is stopped would
   * wait unread. The way through is the table's config (tables[].mode) and a restart.
   */
  async recordRequests(pipeline: string, kind: string): Promise<number[]> {
    throw new SluiceError(
      'BAD_USAGE',
      `sluice ${kind} is not available for a DuckDB destination yet (pipeline ${pipeline}, file ${this.held.path}): the running pipeline does not read requests from it; ` +
        `to reload a table, stop sluice run, drop the table in the DuckDB file (DELETE its rows from _sluice.tables and _sluice.cursors too), and start it again`,
    );
  }

  /** None: no foreign keys or dependent objects hold a DuckDB table, and a missing live table is created (load.ts). */
  async backfillRefusal(_pipeline: string, _name: string, _target: TableName, _load: RequestedLoad): Promise<string | null> {
    return null;
  }

  async answers(ids: readonly number[]): Promise<RequestAnswer[]> {
    if (ids.length === 0) return [];
    const r = await this.held.exclusive((file) =>
      file.all(`SELECT table_name, outcome FROM _sluice.requests WHERE id IN (${ids.map((id) => String(Math.trunc(id))).join(', ')}) AND handled_at IS NOT NULL ORDER BY id`),
    );
    return r.map((x) => ({ table: x.table_name as string, outcome: x.outcome as string }));
  }

  async tableState(pipeline: string, name: string): Promise<TableRow | null> {
    const r = await this.held.exclusive(async (file) => ((await readStateFormat(file)) === null ? [] : file.all(`SELECT * FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [pipeline, name])));
    return r.length ? toRow(r[0]) : null;
  }

  async pipelineRunning(pipeline: string): Promise<boolean> {
    // Another process running it would hold the file: this one could not have opened it.
    return this.runningHere(pipeline);
  }

  /** DuckDB views over a table are kept by name and re-resolve after a drop and re-create: nothing to drop first. */
  async dropDependents(_target: TableName): Promise<string[]> {
    return [];
  }

  async listRuns(pipeline: string, table: string | null, limit: number): Promise<RunRow[]> {
    const r = await this.held.exclusive(async (file) =>
      (await readStateFormat(file)) === null
        ? []
        : file.all(
            `SELECT * FROM _sluice.runs WHERE pipeline = $1 AND ($2::VARCHAR IS NULL OR table_name = $2) ORDER BY id DESC LIMIT ${Math.max(1, Math.trunc(limit))}`,
            [pipeline, table],
          ),
    );
    return r.map((x) => ({
      id: Number(x.id),
      table: x.table_name as string,
      mode: x.mode as string,
      strategy: x.strategy as string,
      where: (x.where_sql as string) ?? '',
      params: jsonOf(x.params),
      osUser: (x.os_user as string | null) ?? null,
      host: (x.host as string | null) ?? null,
      l0: x.l0_lsn === null || x.l0_lsn === undefined ? null : Lsn.format(BigInt(String(x.l0_lsn)) as Lsn),
      startedAt: new Date(String(x.started_at)),
      endedAt: x.ended_at === null ? null : new Date(String(x.ended_at)),
      status: x.status as string,
      rowsCopied: Number(x.rows_copied),
      chunks: Number(x.chunks),
      error: (x.error as string | null) ?? null,
    }));
  }

  async listRequests(pipeline: string, limit: number): Promise<RequestRow[]> {
    const r = await this.held.exclusive(async (file) =>
      (await readStateFormat(file)) === null
        ? []
        : file.all(`SELECT * FROM _sluice.requests WHERE pipeline = $1 ORDER BY id DESC LIMIT ${Math.max(1, Math.trunc(limit))}`, [pipeline]),
    );
    return r.map((x) => ({
      id: Number(x.id),
      kind: x.kind as string,
      table: x.table_name as string,
      params: jsonOf(x.params),
      requestedBy: (x.requested_by as string | null) ?? null,
      requestedAt: new Date(String(x.requested_at)),
      handledAt: x.handled_at === null ? null : new Date(String(x.handled_at)),
      outcome: (x.outcome as string | null) ?? null,
    }));
  }

  async listArchives(pipeline: string): Promise<ArchiveRow[]> {
    const r = await this.held.exclusive(async (file) =>
      (await readStateFormat(file)) === null
        ? []
        : file.all(
            `SELECT a.*, (SELECT estimated_size FROM duckdb_tables() t WHERE t.schema_name || '.' || t.table_name = a.archive) AS est
               FROM _sluice.archives a WHERE pipeline = $1 AND dropped_at IS NULL ORDER BY created_at`,
            [pipeline],
          ),
    );
    return r.map((x) => ({
      pipeline,
      table: x.table_name as string,
      archive: x.archive as string,
      runId: num(x.run_id),
      createdAt: new Date(String(x.created_at)),
      dropAfter: x.drop_after === null ? null : new Date(String(x.drop_after)),
      // DuckDB tells rows, not bytes, of a table: unknown.
      bytes: null,
    }));
  }

  async dropArchive(pipeline: string, archive: string, _lockTimeoutMs: number): Promise<DropOutcome> {
    return this.held.exclusive((file) =>
      file.transaction(async () => {
        const r = await file.all(`SELECT dropped_at FROM _sluice.archives WHERE pipeline = $1 AND archive = $2`, [pipeline, archive]);
        if (r.length && r[0].dropped_at !== null) return 'already dropped';
        const [schema, ...rest] = archive.split('.');
        const table = { schema, name: rest.join('.') };
        const existed = (await tableColumns(file, table)) !== null;
        await file.run(dropTableSql(table));
        await file.run(`UPDATE _sluice.archives SET dropped_at = now() WHERE pipeline = $1 AND archive = $2`, [pipeline, archive]);
        return existed ? 'dropped' : 'table was gone';
      }),
    );
  }

  async ensureState(): Promise<void> {
    await this.held.exclusive((file) => ensureStateSchema(file));
  }

  async tables(pipeline: string): Promise<TableRow[]> {
    const r = await this.held.exclusive((file) => file.all(`SELECT * FROM _sluice.tables WHERE pipeline = $1 ORDER BY name`, [pipeline]));
    return r.map(toRow);
  }

  async cursors(pipeline: string): Promise<CursorState[]> {
    const r = await this.held.exclusive((file) =>
      file.all(`SELECT name, target, lsn, idx, epoch_ms(commit_time) AS commit_ms, changes_applied FROM _sluice.cursors WHERE pipeline = $1 ORDER BY name, target`, [pipeline]),
    );
    return r.map((x) => ({
      name: x.name as string,
      target: x.target as string,
      position: { lsn: Lsn.of(BigInt(x.lsn as bigint)), idx: Number(x.idx) },
      commitTime: x.commit_ms === null ? null : new Date(Number(x.commit_ms)),
      changesApplied: Number(x.changes_applied),
    }));
  }

  async knownLogId(pipeline: string): Promise<string | null> {
    const r = await this.held.exclusive((file) => file.all(`SELECT log_id FROM _sluice.pipelines WHERE name = $1`, [pipeline]));
    return (r[0]?.log_id as string | null | undefined) ?? null;
  }

  async registerPipeline(run: PipelineRun): Promise<void> {
    const params = [run.pipeline, run.slot, run.publication, run.logId, process.pid, hostname(), run.version];
    await this.held.exclusive((file) =>
      file.transaction(async () => {
        await file.run(`DELETE FROM _sluice.pipelines WHERE name = $1`, [run.pipeline]);
        await file.run(
          `INSERT INTO _sluice.pipelines (name, slot, publication, log_id, pid, host, version, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now())`,
          params,
        );
      }),
    );
  }

  async recordTableState(pipeline: string, name: string, state: TableState, fields: TableStateFields, run?: RunOutcome): Promise<void> {
    await this.held.exclusive((file) =>
      file.transaction(async () => {
        await setTableState(file, pipeline, name, state, fields);
        if (run) await setRunStatus(file, pipeline, name, run.status, run.error);
      }),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.held.release();
  }
}

/** A JSON column as DuckDB hands it over (text), as an object. */
function jsonOf(v: unknown): Record<string, unknown> {
  if (v === null || v === undefined) return {};
  if (typeof v === 'object') return v as Record<string, unknown>;
  try {
    return JSON.parse(String(v)) as Record<string, unknown>;
  } catch {
    return {};
  }
}
