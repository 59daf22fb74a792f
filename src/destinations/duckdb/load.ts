/**
 * A backfill run at a DuckDB destination (LoadLifecycle of destinations/destination.ts): append, then
 * deduplicate once. begin() makes the load table, `_sluice."load_<schema.name>"` (the target's columns
 * and `_sluice_seq`, no key: keys make DuckDB's loading several times slower), and records the run;
 * chunk-writer.ts appends to it; finish() runs the one dedupe (dialect.ts, dedupedSelectSql, says
 * which copy of a key it keeps and why that is right) into the table the replay then applies to.
 * Each is one DuckDB transaction with the state that describes it.
 */
import { Position, TableName, type Lsn } from '../../core/types.js';
import type { DuckDbFile } from './connection.js';
import type { LoadFinish, LoadLifecycle, LoadStart, LoadStarted } from '../destination.js';
import { tableColumns } from './catalog.js';
import type { HeldFile } from './held-file.js';
import { ensureStateSchema, readStateFormat, readTable, setRunStatus, setTableState, startRun, writeCursor } from './state.js';
import { duckColumns } from './types.js';
import { createLoadTable, createTarget, finishLoad } from './writer.js';
import { crashPoint } from '../../core/crash.js';
import { SluiceError } from '../../core/errors.js';
import type { TableInfo } from '../../core/columns.js';

/** The load table of a source table's backfill runs. */
export function loadTableOf(name: string): TableName {
  return { schema: '_sluice', name: `load_${name}` };
}

/** The staging table of an online run: beside the live table, which it later replaces. */
export function stagingOf(target: TableName): TableName {
  return { schema: target.schema, name: `${target.name}__sluice_staging` };
}

export class DuckDbLoads implements LoadLifecycle {
  constructor(
    private readonly held: HeldFile,
    private readonly pipeline: string,
  ) {}

  check(info: TableInfo): void {
    duckColumns(info);
  }

  async underway(name: string): Promise<LoadStarted | null> {
    await this.held.acquire();
    try {
      return await this.held.exclusive(async (file) => ((await readStateFormat(file)) === null ? null : this.resumable(file, name)));
    } finally {
      await this.held.release();
    }
  }

  async begin(load: LoadStart): Promise<LoadStarted> {
    // Refused here, before the file is written: no key, columns DuckDB would merge into one, sluice's own names.
    const columns = duckColumns(load.info);
    const shape = { columns, key: load.info.primaryKey };
    await this.held.acquire();
    try {
      return await this.held.exclusive(async (file) => {
        await ensureStateSchema(file);
        return file.transaction(async () => {
          const resumed = await this.resumable(file, load.name);
          if (resumed) return resumed;
          if (!(await tableColumns(file, load.target))) await createTarget(file, load.target, shape);
          await createLoadTable(file, loadTableOf(load.name), shape);
          await setTableState(file, this.pipeline, load.name, 'backfilling', {
            target: TableName.format(load.target),
            mode: load.mode,
            l0: load.l0,
            lastKey: null,
            error: null,
            staging: null,
            detail: null,
            plan: { strategy: load.strategy, where: load.where },
          });
          const runId = await startRun(file, { pipeline: this.pipeline, table: load.name, mode: load.mode, strategy: load.strategy, l0: load.l0, where: load.where, version: load.version });
          await file.run(`UPDATE _sluice.tables SET run_id = $3, chunks_done = 0, rows_copied = 0 WHERE pipeline = $1 AND name = $2`, [this.pipeline, load.name, runId]);
          return { runId, resumed: false, l0: load.l0, lastKey: null, where: load.where };
        });
      });
    } finally {
      await this.held.release();
    }
  }

  /** The run under way for `name`, when the state says one is and its load table is there. */
  private async resumable(file: DuckDbFile, name: string): Promise<LoadStarted | null> {
    const row = await readTable(file, this.pipeline, name);
    if (!row || row.state !== 'backfilling' || row.runId === null || row.l0 === null) return null;
    if (!(await tableColumns(file, loadTableOf(name)))) return null;
    return { runId: row.runId, resumed: true, l0: row.l0, lastKey: row.lastKey, where: String(row.plan?.where ?? '') };
  }

  async finish(load: LoadFinish): Promise<TableName> {
    await this.held.acquire();
    try {
      return await this.held.exclusive(async (file) => {
        const table = loadTableOf(load.name);
        const columns = await tableColumns(file, table);
        const row = await readTable(file, this.pipeline, load.name);
        if (!columns || !row || row.l0 === null) {
          throw new SluiceError('INTERNAL', `finishing the load of ${load.name}: no run under way (its load table or state is missing)`);
        }
        const l0: Lsn = row.l0;
        const into = load.mode === 'online' ? stagingOf(load.target) : load.target;
        await finishLoad(file, load.mode, table, into, { columns, key: load.key }, async () => {
          await writeCursor(file, this.pipeline, load.name, TableName.format(into), Position.before(l0), null, 0);
          await setTableState(file, this.pipeline, load.name, 'catching_up', { lastKey: 'done', staging: load.mode === 'online' ? TableName.format(into) : null });
          await setRunStatus(file, this.pipeline, load.name, 'catching_up');
        });
        crashPoint('duckdb:dedupe');
        return into;
      });
    } finally {
      await this.held.release();
    }
  }
}
