/**
 * Applying changes to a DuckDB destination (ApplySession of destinations/destination.ts): each batch
 * and its cursor in one DuckDB transaction. A segment's last images and delete markers are appended to
 * a temp batch table and applied by one MERGE (writer.ts applyBatchRows); left-out TOASTed values keep
 * the destination's value where it holds the row's own history, and are read from the source by key
 * otherwise. A TRUNCATE empties the table; a column the source gained is added first.
 *
 * The target's column types are read from the file (catalog.ts) for each batch, so the session keeps
 * nothing that a swap or a crash could make stale.
 */
import { performance } from 'node:perf_hooks';
import { crashPoint } from '../../core/crash.js';
import { SluiceError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { SourceLookups } from '../../core/source-lookups.js';
import { TableName, type Position, type TableState } from '../../core/types.js';
import type {
  ApplySegment,
  ApplySession,
  ApplySessionOptions,
  ApplyTable,
  BatchCursor,
  CancelStagingRequest,
  SwapRequest,
  SwapResult,
} from '../destination.js';
import { tableColumns } from './catalog.js';
import type { DuckDbFile } from './connection.js';
import { dropTableSql, setColumnSql, truncateSql } from './dialect.js';
import { classifyDuckDb } from './errors.js';
import type { HeldFile } from './held-file.js';
import { deleteCursor, ensureStateSchema, setRunStatus, setTableState, writeCursor } from './state.js';
import { duckColumns, toDuckValue, type DuckColumn } from './types.js';
import { addColumn, applyBatchRows, swap, type FillFromSource } from './writer.js';
import { literalDefault } from './defaults.js';

type RowsSegment = Extract<ApplySegment, { kind: 'rows' }>;

export class DuckDbApplySession implements ApplySession {
  private opened = false;
  private readonly pipeline: string;
  private readonly logger: Logger;
  private readonly source: SourceLookups;

  constructor(
    private readonly held: HeldFile,
    options: ApplySessionOptions,
    private readonly onOpenChange: (open: boolean) => void,
  ) {
    this.pipeline = options.pipeline;
    this.logger = options.logger;
    this.source = options.source;
  }

  async open(): Promise<void> {
    if (this.opened) return;
    await this.held.acquire();
    this.opened = true;
    this.onOpenChange(true);
    await this.held.exclusive((file) => ensureStateSchema(file));
  }

  private async work<T>(fn: (file: DuckDbFile) => Promise<T>): Promise<T> {
    await this.open();
    return this.held.exclusive(fn);
  }

  async applyBatch(table: ApplyTable, target: TableName, segments: readonly ApplySegment[], cursor: BatchCursor, whileWriting?: () => void): Promise<void> {
    await this.work(async (file) => {
      const have = await tableColumns(file, target);
      if (!have) throw new SluiceError('DESTINATION_ERROR', `destination DuckDB file ${file.path}: table ${TableName.format(target)} is not there (dropped by hand?); reload it with sluice backfill`);
      const gained = await this.gainedColumns(table, have, segments);
      const byName = new Map([...have, ...[...gained.values()].map((g) => g.column)].map((c) => [c.name, c]));
      await file.transaction(async () => {
        // DuckDB refuses to commit a transaction that wrote a table's rows and then altered it: every
        // column the batch needs is added first. Rows the table held before the source added it get the
        // source's DEFAULT at the turn of the first segment that carries it (later rows carry their own).
        for (const g of gained.values()) {
          this.logger.info('adding a column the source gained', { table: table.name, column: g.column.name, type: g.column.type.sql });
          await addColumn(file, target, g.column, null);
        }
        const filled = new Set<string>();
        for (let i = 0; i < segments.length; i++) {
          const s = segments[i];
          if (i === segments.length - 1) whileWriting?.();
          if (s.kind === 'truncate') {
            await file.run(truncateSql(target));
            continue;
          }
          for (const n of s.columns.names) {
            const g = gained.get(n);
            if (!g || filled.has(n)) continue;
            filled.add(n);
            if (g.existing !== null) await file.run(setColumnSql(target, n), [toDuckValue(n, g.column.type, g.existing)]);
          }
          await this.applyRows(table, file, target, s, s.columns.names.map((n) => byName.get(n)!));
        }
        await writeCursor(file, this.pipeline, table.name, TableName.format(target), cursor.position, cursor.commitTimeMs, cursor.changes);
      });
    });
  }

  private async applyRows(table: ApplyTable, file: DuckDbFile, target: TableName, segment: RowsSegment, columns: DuckColumn[]): Promise<void> {
    const key = segment.keyIdx.map((i) => segment.columns.names[i]);
    const fill: FillFromSource = async (keys, wanted) => {
      const perColumn = key.map((_, j) => keys.map((k) => k[j]));
      return this.source.rowsByKey(table.source, table.info, perColumn, wanted);
    };
    await applyBatchRows(file, target, { columns, key }, { upserts: [...segment.upserts.values()], deletes: [...segment.deletes.values()] }, fill);
  }

  /**
   * Columns the segments carry that the target lacks, as the source describes them now (nullable in
   * DuckDB: rows are only ever written with the source's values), with the value the source gave the
   * rows it had (its constant DEFAULT; defaults.ts).
   */
  private async gainedColumns(table: ApplyTable, have: readonly DuckColumn[], segments: readonly ApplySegment[]): Promise<Map<string, { column: DuckColumn; existing: string | null }>> {
    const gained = new Map<string, { column: DuckColumn; existing: string | null }>();
    const missing = new Set(segments.flatMap((s) => (s.kind === 'rows' ? s.columns.names.filter((n) => !have.some((c) => c.name === n)) : [])));
    if (missing.size === 0) return gained;
    const info = await this.source.describeTable(table.source);
    table.info = info;
    const wanted = duckColumns(info);
    for (const name of missing) {
      const column = wanted.find((c) => c.name === name);
      const col = info.columns.find((c) => c.name === name);
      if (!column || !col) throw new SluiceError('SOURCE_ERROR', `source ${table.name}: column ${name} is in the change stream but not in the catalog`);
      gained.set(name, { column: { ...column, notNull: false }, existing: literalDefault(col.defaultSql) });
    }
    return gained;
  }

  async advanceCursor(name: string, target: TableName, at: Position): Promise<void> {
    await this.work((file) => writeCursor(file, this.pipeline, name, TableName.format(target), at, null, 0));
  }

  async markCaughtUp(name: string): Promise<void> {
    await this.work((file) =>
      file.transaction(async () => {
        await setTableState(file, this.pipeline, name, 'streaming', { error: null, detail: null });
        await setRunStatus(file, this.pipeline, name, 'done');
      }),
    );
  }

  async setTableState(name: string, state: TableState): Promise<void> {
    await this.work((file) => setTableState(file, this.pipeline, name, state, {}));
  }

  /**
   * live → archive (a table beside it, `<name>__archive_<run>`; dropped instead when the retention is
   * 0 and it is not kept), staging → live, the cursors and state, in one DuckDB transaction. DuckDB
   * binds a view to its table by name at query time: views over the live table read the new one.
   */
  async swap(req: SwapRequest): Promise<SwapResult> {
    return this.work(async (file) => {
      const runId = Number((await file.all(`SELECT run_id FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [this.pipeline, req.name]))[0]?.run_id ?? 0);
      const archive: TableName = { schema: req.live.schema, name: `${req.live.name}__archive_${runId}` };
      const keep = req.keepArchive || req.archiveRetentionHours > 0;
      const started = performance.now();
      await swap(file, req.live, req.staging, keep ? archive.name : null, async () => {
        await deleteCursor(file, this.pipeline, req.name, TableName.format(req.staging));
        await writeCursor(file, this.pipeline, req.name, TableName.format(req.live), req.at, null, 0);
        if (keep) {
          await file.run(
            `INSERT INTO _sluice.archives (pipeline, table_name, archive, run_id, drop_after)
             VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN NULL ELSE now() + to_seconds(CAST($6 AS DOUBLE) * 3600) END)`,
            [this.pipeline, req.name, TableName.format(archive), runId, req.keepArchive, req.archiveRetentionHours],
          );
        }
        await setTableState(file, this.pipeline, req.name, 'streaming', { staging: null, detail: null, error: null, l0: null });
        await file.run(`UPDATE _sluice.runs SET status = 'done', ended_at = now() WHERE id = $1`, [runId]);
        crashPoint('online:in-swap');
      });
      return { archive, lockHeldMs: performance.now() - started, runId, validateLater: [], lowSpace: null };
    });
  }

  async cancelStaging(req: CancelStagingRequest): Promise<number> {
    return this.work((file) =>
      file.transaction(async () => {
        await file.run(dropTableSql(req.staging));
        await deleteCursor(file, this.pipeline, req.name, TableName.format(req.staging));
        await setTableState(file, this.pipeline, req.name, req.state, { l0: null, lastKey: null, staging: null, detail: null });
        await setRunStatus(file, this.pipeline, req.name, 'cancelled');
        const r = await file.all(`SELECT rows_copied FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [this.pipeline, req.name]);
        return Number(r[0]?.rows_copied ?? req.rowsCopiedIfUnknown);
      }),
    );
  }

  batchFailure(what: string, err: unknown): SluiceError {
    return classifyDuckDb(this.held.path, what, err);
  }

  forget(): void {
    // Nothing is cached: each batch reads the target's columns from the file.
  }

  async close(): Promise<void> {
    if (!this.opened) return;
    this.opened = false;
    this.onOpenChange(false);
    await this.held.release();
  }
}
