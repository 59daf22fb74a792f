/**
 * The Copier: one backfill run of one table, keyset strategy (contract 3 and 4).
 *
 * 1. T is in the publication, then L0 = pg_current_wal_lsn() is read together with the xmax of
 *    the current snapshot; the first chunk is read only after every transaction in flight at L0
 *    has ended (a transaction that wrote T before T joined the publication is not decoded; the
 *    chunks must see its rows instead).
 * 2. Each chunk `(last, hi]` is piped source COPY → destination COPY (binary when every column
 *    allows), and its progress is committed in the same destination transaction.
 * 3. After the last chunk the live cursor is set (or rewound, in upsert mode) to just before L0:
 *    the Applier replays every change since L0, and the table is caught up when it reaches the head.
 *
 * Chunk reads are single READ COMMITTED statements: no snapshot is held across the backfill.
 */
import type pg from 'pg';
import { postgresDestinationUrl } from '../config/schema.js';
import { crashPoint } from '../core/crash.js';
import { osUser } from '../core/os-user.js';
import type { Logger } from '../core/logger.js';
import { referencingKeys, truncateBlockers, truncateRefusal } from '../destinations/postgres/references.js';
import { firstLoadInPlace } from '../destinations/postgres/swap.js';
import { addForeignKeySql, dropDependents, dropRefusal, foreignKeysOf, setReplicaRole, type ForeignKey } from '../destinations/postgres/foreign-keys.js';
import { dependentViews, recreateViews, type DependentView } from '../destinations/postgres/dependent-views.js';
import { recreateForeignKeys } from '../destinations/postgres/foreign-key-validation.js';
import { addStagingPrimaryKey, checkTarget, createStaging, createTarget, dropStaging, finishStaging } from './target-tables.js';
import { to as copyTo } from 'pg-copy-streams';
import { SluiceError } from '../core/errors.js';
import type { BackfillStrategy } from '../core/types.js';
import type { AppendChunk, LoadLifecycle } from '../destinations/destination.js';
import { ChunkQueue, type TableLoad } from './chunk-queue.js';
import { ChunkSizer, CtidPlanner, ceilingCap, DaterangePlanner, IntervalPlanner, KeysetPlanner, chunkSelectSql, rangeKey, type Chunk, type ChunkRange, type Planner, type TimeColumnType } from './chunking.js';
import type { BackfillRequest } from './runtime.js';
import { sleep } from '../core/retry.js';
import { Lsn, Position, TableName } from '../core/types.js';
import { qualified, quoteIdent, type KeysetTable } from '../destinations/postgres/dialect.js';
import { readRangeChunks, setRunStatus, setTableState, writeCursor, readTable } from '../destinations/postgres/state.js';
import { classify } from '../postgres/errors.js';
import { introspectTable, type TableInfo } from '../sources/postgres/introspect.js';
import { connect, enginesOf, withTransaction, type PipelineContext } from './context.js';
import type { TableRuntime } from './runtime.js';
import { columnTypes } from '../destinations/postgres/type-sync.js';
import { buildSourceIndexes } from './source-indexes.js';
import { keyBuiltAfterLoad, keysetInFlight } from './load-shape.js';
import { OrderedCommits } from './ordered-commits.js';

/** How a run loads (stored with the run in `_sluice.tables.plan`; a resume follows it). */
export interface LoadPlan {
  strategy: BackfillStrategy;
  parallelism: number;
  /** WHERE scope; '' for the whole table. */
  scope: string;
  /** Scoped truncate: matching destination rows already deleted. */
  scopeDeleted: boolean;
  /** ctid and keyset loads into a table of ours: the primary key is built after the load (load-shape.ts). */
  pkDeferred: boolean;
  /** Chunks go through a temp table and INSERT … ON CONFLICT (upsert, scoped truncate, ctid into a kept table). */
  viaTemp: boolean;
  /** sluice created the table (`indexes: source`): the source's secondary indexes are built after the load. */
  sourceIndexes?: boolean;
  /** The table loaded into has column types other than the source's (a schema created first): COPY as text. */
  textCopy?: boolean;
  /** interval: the key's range when planned; daterange: the column's, in seconds since the epoch (UTC). */
  min?: string;
  max?: string;
  /** daterange: the time column and its type. */
  dateColumn?: string;
  dateType?: TimeColumnType;
  /** ctid: heap pages when planned, heap rows per page, heap+TOAST bytes per page. */
  pages?: number;
  rowsPerPage?: number;
  bytesPerPage?: number;
}

export interface CopierHooks {
  /** Called when the backfill changes the table's state, for the status line. */
  onProgress?(rt: TableRuntime): void;
}

export class Copier {
  private readonly queue: ChunkQueue;

  constructor(
    private readonly ctx: PipelineContext,
    private readonly hooks: CopierHooks = {},
  ) {
    const cfg = ctx.cfg;
    this.queue = new ChunkQueue(
      cfg.pipeline.workers,
      async () => {
        const src = await connect('source', cfg.source.replicaUrl ?? cfg.source.url, 'sluice-chunk');
        try {
          const writer = await enginesOf(ctx).destination.openChunkWriter({ pipeline: ctx.pipeline });
          return { src, writer };
        } catch (err) {
          await src.end().catch(() => {});
          throw err;
        }
      },
      ctx.logger,
    );
  }

  /** Stops the chunk workers (after the backfills have returned). */
  async stop(): Promise<void> {
    await this.queue.stop();
  }

  /**
   * Runs (or resumes) the backfill of `rt` until its last chunk is committed and the replay is
   * armed. Returns false when aborted (cancel or shutdown) before that.
   */
  async backfill(rt: TableRuntime, signal: AbortSignal): Promise<boolean> {
    const loads = enginesOf(this.ctx).destination.loads;
    if (loads) return this.backfillAppended(rt, signal, loads);
    const log = this.ctx.logger.child({ table: rt.name });
    const src = await connect('source', this.ctx.cfg.source.url, 'sluice-backfill');
    const dst = await connect('destination', postgresDestinationUrl(this.ctx.cfg.destination, 'sluice run'), 'sluice-backfill');
    try {
      // A scoped truncate deletes rows other tables may reference: no foreign-key action for sluice's writes.
      await setReplicaRole(dst).catch(() => false);
      rt.info = await introspectTable(src, rt.source);
      const state = await readTable(dst, this.ctx.pipeline, rt.name);
      let l0: Lsn;
      let plan: LoadPlan;
      let runId: number;
      const resumable =
        state && state.l0 !== null && state.mode && state.plan && state.runId !== null &&
        (state.state === 'backfilling' || state.state === 'failed') && !rt.pending?.requestId;
      if (resumable) {
        l0 = state.l0!;
        plan = state.plan as unknown as LoadPlan;
        runId = state.runId!;
        rt.mode = state.mode;
        rt.rowsCopied = state.rowsCopied;
        rt.rowsEstimated = state.rowsEstimated;
        if (state.staging && !rt.staging) rt.staging = { target: TableName.parse(state.staging), cursor: null };
        log.info('resuming backfill', { mode: rt.mode, strategy: plan.strategy, l0: Lsn.format(l0), rowsCopied: state.rowsCopied });
      } else {
        const req = this.requestOf(rt);
        await validateScope(src, rt.source, req.where, 'source');
        l0 = await this.fixL0(src, rt, signal);
        if (signal.aborted) return false;
        plan = await this.planLoad(src, rt, req);
        runId = await this.prepareTarget(dst, rt, req, l0, plan);
        log.info('backfill started', {
          mode: req.mode,
          strategy: plan.strategy,
          parallelism: plan.parallelism,
          scope: plan.scope || undefined,
          l0: Lsn.format(l0),
          rowsEstimated: rt.info.rowsEstimated,
          binary: rt.info.binarySafe,
        });
      }
      rt.l0 = l0;
      this.hooks.onProgress?.(rt);
      await this.waitForReplica(src, rt, signal);
      if (plan.scope && rt.mode === 'truncate' && !plan.scopeDeleted) {
        plan = await this.deleteScope(dst, rt, plan, signal);
        if (signal.aborted) return false;
      }

      const planner = await this.plannerFor(dst, rt, plan, state?.lastKey ?? null, runId, resumable === true);
      rt.progressUnits = planner.progress ? () => ({ ...planner.progress!(), strategy: planner.strategy }) : null;
      // Keyset chunks two at a time commit in key order (ordered-commits.ts).
      const ordered = planner.strategy === 'keyset' && planner.parallelism > 1 ? new OrderedCommits() : null;
      const finished = await this.queue.run(this.tableLoad(rt, plan, ordered ? ordered.plan(planner) : planner, runId, signal, ordered));
      if (!finished) return false;
      await this.finishLoad(dst, rt, plan, log);
      if (plan.sourceIndexes) await buildSourceIndexes(src, dst, rt, runId, log);
      // `--mode drop`: the run lists the foreign keys to add back after a ctid load (its key is built
      // last) and those to validate once loaded; a resumed load finds them there too.
      const fkParams = (await dst.query(`SELECT params->'addBack' AS add, params->'validate' AS validate FROM _sluice.runs WHERE id = $1`, [runId])).rows[0];
      if (fkParams?.add) {
        await recreateForeignKeys(dst, fkParams.add as ForeignKey[], log, false);
        await dst.query(`UPDATE _sluice.runs SET params = params - 'addBack' WHERE id = $1`, [runId]);
      }
      await this.armReplay(dst, rt, l0);
      if (fkParams?.validate) enginesOf(this.ctx).destination.validateForeignKeysLater(fkParams.validate as ForeignKey[], log, runId);
      log.info('backfill copied; replaying changes since L0', { rowsCopied: rt.rowsCopied, l0: Lsn.format(l0) });
      return true;
    } finally {
      await src.end().catch(() => {});
      await dst.end().catch(() => {});
    }
  }

  /**
   * A backfill into a destination that appends, then deduplicates once (capabilities.appendThenDedupe:
   * DuckDB): L0 fixed as for any load, keyset chunks appended with their progress (ChunkWriter), then
   * `loads.finish` runs the one dedupe and hands the table to the replay from L0, under the table's
   * apply lock. A run under way resumes from its last committed key.
   */
  private async backfillAppended(rt: TableRuntime, signal: AbortSignal, loads: LoadLifecycle): Promise<boolean> {
    const log = this.ctx.logger.child({ table: rt.name });
    const src = await connect('source', this.ctx.cfg.source.url, 'sluice-backfill');
    try {
      rt.info = await introspectTable(src, rt.source);
      const req = this.requestOf(rt);
      let run = rt.pending?.requestId ? null : await loads.underway(rt.name);
      const mode = run ? (rt.mode ?? req.mode) : req.mode;
      if (run) {
        log.info('resuming backfill', { mode, l0: Lsn.format(run.l0), rowsCopied: rt.rowsCopied });
      } else {
        const type = enginesOf(this.ctx).destination.type;
        if (req.strategy !== 'keyset') {
          throw new SluiceError('BAD_USAGE', `${rt.name}: a ${type} destination loads with strategy keyset only (the one dedupe makes overlapping reads harmless, the other strategies are not wired to it yet); set tables[].strategy: keyset`);
        }
        if (mode === 'truncate' && req.where.trim() !== '') {
          throw new SluiceError('BAD_USAGE', `${rt.name}: a scoped truncate (--where with --mode truncate) is not available for a ${type} destination; use --mode upsert with the same --where`);
        }
        await validateScope(src, rt.source, req.where, 'source');
        const l0 = await this.fixL0(src, rt, signal);
        if (signal.aborted) return false;
        run = await loads.begin({ name: rt.name, target: rt.target, info: rt.info, mode, strategy: 'keyset', l0, where: req.where.trim(), version: this.ctx.version });
        rt.mode = mode;
        rt.state = 'backfilling';
        rt.rowsCopied = 0;
        rt.rowsEstimated = rt.info.rowsEstimated;
        rt.error = null;
        rt.keepArchive = req.keepArchive;
        log.info('backfill started', { mode, strategy: 'keyset', scope: run.where || undefined, l0: Lsn.format(l0), rowsEstimated: rt.info.rowsEstimated });
      }
      const l0 = run.l0;
      rt.l0 = l0;
      this.hooks.onProgress?.(rt);
      await this.waitForReplica(src, rt, signal);
      const plan: LoadPlan = { strategy: 'keyset', parallelism: 1, scope: run.where, scopeDeleted: false, pkDeferred: false, viaTemp: false };
      const planner = await this.plannerFor(null, rt, plan, run.lastKey === null ? null : run.lastKey === 'done' ? 'done' : [...run.lastKey], run.runId, run.resumed);
      if (!(await this.queue.run(this.tableLoad(rt, plan, planner, run.runId, signal)))) return false;
      await rt.lock.run(async () => {
        const into = await loads.finish({ name: rt.name, target: rt.target, mode, key: rt.info.primaryKey });
        const replayFrom = Position.before(l0);
        if (mode === 'online') {
          rt.staging = { target: into, cursor: replayFrom };
        } else {
          rt.cursor = replayFrom;
          rt.applyHalted = false;
        }
        rt.state = 'catching_up';
      });
      log.info('backfill copied and deduplicated; replaying changes since L0', { rowsCopied: rt.rowsCopied, l0: Lsn.format(l0) });
      return true;
    } finally {
      await src.end().catch(() => {});
    }
  }

  /** The request's fields, falling back to the table's config. */
  private requestOf(rt: TableRuntime): Required<Omit<BackfillRequest, 'requestId'>> {
    const p = rt.pending;
    return {
      mode: p?.mode ?? rt.mode ?? rt.config.mode,
      strategy: p?.strategy ?? rt.config.strategy,
      parallelism: p?.parallelism ?? rt.config.parallelism,
      where: p?.where ?? rt.config.where,
      keepArchive: p?.keepArchive ?? false,
      cascade: p?.cascade ?? false,
    };
  }

  /** Strategy, bounds and load path of a new run (stored with the run, so a resume follows the same plan). */
  private async planLoad(src: pg.Client, rt: TableRuntime, req: Required<Omit<BackfillRequest, 'requestId'>>): Promise<LoadPlan> {
    const scope = req.where.trim();
    const plan: LoadPlan = {
      strategy: req.strategy,
      parallelism: req.strategy === 'keyset' ? 1 : Math.max(1, req.parallelism),
      scope,
      scopeDeleted: false,
      pkDeferred: false,
      viaTemp: false,
    };
    if (req.strategy === 'interval') {
      const k = quoteIdent(rt.info.primaryKey[0]);
      const r = await src.query(`SELECT min(${k})::text AS min, max(${k})::text AS max FROM ${qualified(rt.source)}`);
      plan.min = r.rows[0].min ?? '0';
      plan.max = r.rows[0].max ?? '0';
    } else if (req.strategy === 'daterange') {
      const column = rt.config.dateColumn!;
      const c = quoteIdent(column);
      const typeSql = rt.info.columns.find((x) => x.name === column)?.typeSql ?? '';
      plan.dateColumn = column;
      plan.dateType = typeSql.startsWith('timestamp with time zone') ? 'timestamptz' : typeSql === 'date' ? 'date' : 'timestamp';
      // Whole hours: min rounded down, max up; a timestamp without time zone (or a date) is read as UTC.
      const asUtc = plan.dateType === 'timestamptz' ? (x: string) => x : (x: string) => `(${x})::timestamp AT TIME ZONE 'UTC'`;
      const r = await src.query(
        `SELECT (floor(extract(epoch FROM ${asUtc(`min(${c})`)}) / 3600) * 3600)::int8::text AS min,
                (ceil(extract(epoch FROM ${asUtc(`max(${c})`)}) / 3600) * 3600 + 3600)::int8::text AS max FROM ${qualified(rt.source)}`,
      );
      plan.min = r.rows[0].min ?? '0';
      plan.max = r.rows[0].max ?? '0';
    } else if (req.strategy === 'ctid') {
      const r = await src.query(
        `SELECT pg_relation_size(c.oid)::float8 AS heap, coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::float8 AS toast,
                current_setting('block_size')::int AS block, greatest(c.reltuples, 0)::float8 AS tuples, c.relpages AS relpages
           FROM pg_class c WHERE c.oid = $1::regclass`,
        [qualified(rt.source)],
      );
      const x = r.rows[0];
      const pages = Math.max(1, Math.ceil(x.heap / x.block));
      plan.pages = pages;
      plan.rowsPerPage = x.relpages > 0 ? x.tuples / x.relpages : Math.max(1, rt.info.rowsEstimated / pages);
      plan.bytesPerPage = (x.heap + x.toast) / pages;
    }
    return plan;
  }

  private async plannerFor(dst: pg.Client | null, rt: TableRuntime, plan: LoadPlan, lastKey: string[] | null | 'done', runId: number, resuming: boolean): Promise<Planner> {
    const keyset = this.keysetOf(rt.info);
    const throttler = this.ctx.throttler;
    const sizer = new ChunkSizer(rt.config.chunkRows, rt.config.chunkSeconds, undefined, undefined, () => ceilingCap(throttler.limits.maxRowsPerSecond));
    if (plan.strategy === 'keyset') return new KeysetPlanner(keyset, plan.scope, resuming ? lastKey : null, sizer, keysetInFlight(plan.viaTemp || rt.mode === 'upsert'));
    const done = resuming ? await readRangeChunks(dst!, this.ctx.pipeline, rt.name, runId) : [];
    if (plan.strategy === 'interval') {
      const min = BigInt(plan.min!);
      const max = BigInt(plan.max!);
      return new IntervalPlanner(keyset, plan.scope, plan.parallelism, sizer, min, max, rt.info.rowsEstimated, resumeRanges(done, min, max, 'int'));
    }
    if (plan.strategy === 'daterange') {
      const min = BigInt(plan.min!);
      const max = BigInt(plan.max!);
      const time = { column: plan.dateColumn!, type: plan.dateType! };
      return new DaterangePlanner(keyset, plan.scope, time.column, time.type, plan.parallelism, sizer, min, max, rt.info.rowsEstimated, resumeRanges(done, min, max, 'time', time));
    }
    return new CtidPlanner(plan.parallelism, sizer, plan.pages!, plan.rowsPerPage!, plan.bytesPerPage!, resumeRanges(done, 0n, BigInt(plan.pages! - 1), 'ctid'));
  }

  /** One table's part in the chunk queue: how a chunk is copied and recorded, and the throttle. */
  private tableLoad(rt: TableRuntime, plan: LoadPlan, planner: Planner, runId: number, signal: AbortSignal, ordered: OrderedCommits | null = null): TableLoad {
    const keyset = this.keysetOf(rt.info);
    const viaTemp = plan.viaTemp || rt.mode === 'upsert';
    // Binary COPY needs the exact types; a temp table has the source's, a table created first may not.
    const binary = enginesOf(this.ctx).destination.capabilities.readsBinaryChunks && rt.info.binarySafe && (viaTemp || !plan.textCopy);
    const target = rt.staging?.target ?? rt.target;
    return {
      rt,
      planner,
      signal,
      admit: async (chunk) => {
        await this.ctx.throttler.acquire(chunk.expectedRows, signal, (why) => (rt.detail = why));
      },
      failed: (err) => ordered?.fail(err),
      copy: async (chunk, { src, writer }) => {
        const k = chunk.range.kind === 'key' ? null : rangeKey(chunk.range);
        // A chunk that upserts into a table the Applier writes too (upsert, a scoped truncate, ctid
        // into a kept table) is merged by key under the table's apply lock (ChunkWriter.appendChunk).
        const rows = await writer.appendChunk({
          name: rt.name,
          target,
          columns: keyset.columns,
          format: binary ? 'postgres-binary' : 'postgres-text',
          open: () => src.query(copyTo(`COPY (${chunkSelectSql(keyset, chunk.range, plan.scope)}) TO STDOUT${binary ? ' (FORMAT binary)' : ''}`)),
          progress:
            chunk.range.kind === 'key'
              ? { kind: 'key', upTo: chunk.range.upTo ?? 'done' }
              : { kind: 'range', runId, lo: k!.lo, hi: k!.hi },
          rowsPerSecond: () => rt.rowsPerSecond,
          merge: viaTemp ? this.mergeOf(rt) : undefined,
          beforeCommit: ordered ? () => ordered.waitTurn(chunk) : undefined,
        });
        ordered?.committed(chunk);
        // rows/s is the orchestrator's average over time (the rate recorded with a chunk is that average too).
        rt.rowsCopied += rows;
        if (rt.staging) crashPoint('online:load');
        this.hooks.onProgress?.(rt);
        return rows;
      },
    };
  }

  /** How a staged chunk merges into a table the Applier writes too: by key, as the source describes the table now. */
  private mergeOf(rt: TableRuntime): AppendChunk['merge'] {
    const keyset = this.keysetOf(rt.info);
    return { key: keyset.key, columns: keyset.columns, sourceColumns: rt.info.copyColumns, underApplyLock: (fn) => rt.lock.run(fn) };
  }

  /** Scoped truncate: delete the destination rows the scope matches, in batches, before loading them again. */
  private async deleteScope(dst: pg.Client, rt: TableRuntime, plan: LoadPlan, signal: AbortSignal): Promise<LoadPlan> {
    await validateScope(dst, rt.target, plan.scope, 'destination');
    let deleted = 0;
    for (;;) {
      if (signal.aborted) return plan;
      const r = await dst.query(
        `DELETE FROM ${qualified(rt.target)} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${qualified(rt.target)} WHERE (${plan.scope}) LIMIT 10000))`,
      );
      deleted += r.rowCount ?? 0;
      if ((r.rowCount ?? 0) === 0) break;
    }
    const next = { ...plan, scopeDeleted: true };
    await setTableState(dst, this.ctx.pipeline, rt.name, 'backfilling', { plan: next as unknown as Record<string, unknown> });
    this.ctx.logger.info('scoped truncate: matching destination rows deleted', { table: rt.name, rows: deleted });
    return next;
  }

  /** Contract 7: chunks read from a replica only once it has replayed past every change the load must see. */
  private async waitForReplica(src: pg.Client, rt: TableRuntime, signal: AbortSignal): Promise<void> {
    const url = this.ctx.cfg.source.replicaUrl;
    if (!url) return;
    const target = (await src.query(`SELECT pg_current_wal_lsn()::text AS lsn`)).rows[0].lsn as string;
    const replica = await connect('source', url, 'sluice-replica-wait');
    const started = Date.now();
    let nextLog = started + 5000;
    try {
      for (;;) {
        const r = await replica.query(
          `SELECT pg_is_in_recovery() AS standby, coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS ok,
                  pg_last_wal_replay_lsn()::text AS at`,
          [target],
        );
        const x = r.rows[0];
        if (!x.standby) return; // A promoted replica is a primary: it has everything.
        if (x.ok || signal.aborted) {
          if (Date.now() - started > 1000) this.ctx.logger.info('replica has replayed past L0; reading chunks from it', { table: rt.name });
          rt.detail = null;
          return;
        }
        rt.detail = `waiting for the replica to replay past ${target} (at ${x.at})`;
        if (Date.now() >= nextLog) {
          nextLog = Date.now() + 30_000;
          this.ctx.logger.warn('waiting for the replica to replay past L0 before reading chunks from it', { table: rt.name, need: target, replayed: x.at });
        }
        await sleep(200, signal);
      }
    } finally {
      await replica.end().catch(() => {});
    }
  }

  /** After the last chunk: duplicates of a ctid load removed and its primary key built; staging indexes. */
  private async finishLoad(dst: pg.Client, rt: TableRuntime, plan: LoadPlan, log: Logger): Promise<void> {
    const target = rt.staging?.target ?? rt.target;
    if (plan.pkDeferred) {
      const key = rt.info.primaryKey.map(quoteIdent);
      const keyList = key.join(', ');
      const started = Date.now();
      const addKey = async () => {
        if (rt.staging) {
          await addStagingPrimaryKey(dst, rt.target, target);
        } else {
          const exists = (await dst.query(`SELECT 1 FROM pg_index WHERE indrelid = $1::regclass AND indisprimary`, [qualified(target)])).rowCount;
          if (!exists) await dst.query(`ALTER TABLE ${qualified(target)} ADD PRIMARY KEY (${keyList})`);
        }
      };
      // A row that moved pages during the load may have been read twice. Building the unique key is
      // itself the check: when no row was read twice (the usual case) it succeeds and the full-table
      // dedupe (a sort of every row) is skipped. A duplicate makes the build fail with
      // unique_violation and roll back; only then are duplicates removed, one copy kept per key (any:
      // the replay from L0 brings every key to its final state), and the key built again.
      let removed = 0;
      let firstTry = true;
      try {
        await addKey();
      } catch (err) {
        if ((err as { code?: string }).code !== '23505') throw err;
        firstTry = false;
        const d = await dst.query(
          `DELETE FROM ${qualified(target)} t USING (
             SELECT ${keyList}, (array_agg(ctid ORDER BY ctid DESC))[1] AS keep FROM ${qualified(target)} GROUP BY ${keyList} HAVING count(*) > 1
           ) d WHERE ${key.map((k) => `t.${k} = d.${k}`).join(' AND ')} AND t.ctid <> d.keep`,
        );
        removed = d.rowCount ?? 0;
        await addKey();
      }
      log.info(plan.strategy === 'ctid' || plan.strategy === 'daterange' ? `${plan.strategy} load deduplicated by primary key and keyed` : 'primary key built after the load', {
        duplicatesRemoved: removed,
        keyBuiltAtFirstTry: firstTry,
        seconds: (Date.now() - started) / 1000,
      });
    }
    if (rt.staging) await finishStaging(dst, rt, log);
  }

  /** Contract 3: publication first, then L0, then wait out every transaction in flight at L0. */
  private async fixL0(src: pg.Client, rt: TableRuntime, signal: AbortSignal): Promise<Lsn> {
    const pub = await src.query(
      `SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3`,
      [this.ctx.publication, rt.source.schema, rt.source.name],
    );
    if (pub.rowCount === 0) {
      try {
        await src.query(`ALTER PUBLICATION ${quoteIdent(this.ctx.publication)} ADD TABLE ${qualified(rt.source)}`);
      } catch (err) {
        throw classify('source', `adding ${rt.name} to publication ${this.ctx.publication}`, err);
      }
    }
    const r = await src.query(`SELECT pg_current_wal_lsn()::text AS lsn, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`);
    const l0 = Lsn.parse(r.rows[0].lsn);
    // From here on the change log must keep this table's changes at or after L0.
    rt.l0 = l0;
    await this.waitForInFlight(src, r.rows[0].xmax, rt, signal);
    return l0;
  }

  private async waitForInFlight(src: pg.Client, xmax: string, rt: TableRuntime, signal: AbortSignal): Promise<void> {
    const started = Date.now();
    let nextLog = started + 10_000;
    for (;;) {
      const r = await src.query(`SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8 AS done`, [xmax]);
      if (r.rows[0].done || signal.aborted) return;
      if (Date.now() >= nextLog) {
        nextLog = Date.now() + 30_000;
        const who = await src
          .query(
            `SELECT pid, datname, (now() - xact_start)::text AS age, left(query, 80) AS query FROM pg_stat_activity
              WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start LIMIT 3`,
          )
          .catch(() => ({ rows: [] }));
        this.ctx.logger.warn('backfill waits for transactions that were in flight at L0 to end', {
          table: rt.name,
          waitedSeconds: Math.round((Date.now() - started) / 1000),
          oldest: who.rows,
        });
      }
      await sleep(100, signal);
    }
  }

  /** Creates, truncates or drops the target as the mode says, and records the run, in one transaction. */
  private async prepareTarget(
    dst: pg.Client,
    rt: TableRuntime,
    req: Required<Omit<BackfillRequest, 'requestId'>>,
    l0: Lsn,
    plan: LoadPlan,
  ): Promise<number> {
    const info = rt.info;
    const target = rt.target;
    const mode = req.mode;
    return rt.lock.run(() =>
      withTransaction(dst, async () => {
        const exists = (await dst.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [qualified(target)])).rows[0].ok as boolean;
        let fks: ForeignKey[] = [];
        let views: DependentView[] = [];
        if (mode === 'drop' && exists) {
          // Bug 2: a drop once took other tables' foreign keys with it silently. Name every dependent
          // and go on only when the user said --cascade; the table's own foreign keys and those of
          // other tables are added back after it is recreated (NOT VALID, validated after the load).
          const dependents = await dropDependents(dst, target);
          if (dependents.length && !req.cascade) throw new SluiceError('BAD_USAGE', dropRefusal(target, dependents));
          fks = await foreignKeysOf(dst, target);
          views = await dependentViews(dst, target);
          if (dependents.length) this.ctx.logger.warn('mode drop --cascade: dropping the table with its dependents', { table: rt.name, dependents });
          if (fks.length) this.ctx.logger.info('mode drop: foreign keys to add back once the table is recreated', { table: rt.name, keys: fks.map(addForeignKeySql) });
          const deps = await dst.query(
            `SELECT DISTINCT v.oid::regclass::text AS name FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
               JOIN pg_class v ON v.oid = r.ev_class WHERE d.refobjid = $1::regclass AND v.oid <> d.refobjid`,
            [qualified(target)],
          );
          if (deps.rowCount) {
            this.ctx.logger.warn('mode drop: dependent views are dropped with the table', { table: rt.name, views: deps.rows.map((x) => x.name) });
          }
          await dst.query(`DROP TABLE ${qualified(target)} CASCADE`);
        }
        await dropStaging(this.ctx, dst, rt);
        // A schema created first (empty, never replicated): an online backfill loads in place.
        const inPlace = mode === 'online' && exists && (await firstLoadInPlace(dst, this.ctx.pipeline, rt.name, target));
        if (inPlace) this.ctx.logger.info('online backfill loads in place: the destination table is empty and was never replicated, so readers lose nothing and no swap is needed', { table: rt.name });
        const ours = !exists || mode === 'drop' || (mode === 'online' && !inPlace);
        // ctid may read a row twice: into a table of ours, load without the key and dedupe once at the
        // end; into a kept table (truncate, upsert), upsert each chunk.
        plan.pkDeferred = keyBuiltAfterLoad(plan.strategy, ours);
        // ctid and daterange loads can read a row twice (it moved meanwhile): into a table they cannot key afterwards, they merge.
        const twice = plan.strategy === 'ctid' || plan.strategy === 'daterange';
        plan.viaTemp = mode === 'upsert' || (mode === 'truncate' && exists && (plan.scope !== '' || twice)) || (inPlace && twice);
        plan.sourceIndexes = (!exists || mode === 'drop') && rt.config.indexes !== 'none';
        if (!exists || mode === 'drop') {
          await createTarget(this.ctx, dst, info, target, plan.pkDeferred);
          // A key built after a ctid load: the foreign keys wait for it (listed in the run meanwhile).
          if (fks.length && !plan.pkDeferred) await recreateForeignKeys(dst, fks, this.ctx.logger.child({ table: rt.name }));
          if (views.length) await recreateViews(dst, views, this.ctx.logger.child({ table: rt.name }));
        } else {
          await checkTarget(this.ctx, dst, rt, this.requestOf(rt).mode, inPlace);
          if (mode === 'truncate' && plan.scope === '') {
            // Checked when the request was made; checked again here, where it would fail.
            // An empty referenced table (a first load into a schema created first) needs no TRUNCATE.
            if ((await referencingKeys(dst, target)).length === 0) await dst.query(`TRUNCATE ${qualified(target)}`);
            else {
              const refs = await truncateBlockers(dst, target);
              if (refs.length) throw new SluiceError('BAD_USAGE', truncateRefusal(target, refs));
            }
          }
          if (mode === 'online' && !inPlace) rt.staging = { target: await createStaging(this.ctx, dst, rt, plan.pkDeferred), cursor: null };
        }
        // A reload that empties the table restarts its cursor at L0 after the load; until then nothing applies to it.
        const emptiesLive = mode === 'drop' || !exists || inPlace || (mode === 'truncate' && plan.scope === '');
        if (emptiesLive) {
          await dst.query(`DELETE FROM _sluice.cursors WHERE pipeline = $1 AND name = $2`, [this.ctx.pipeline, rt.name]);
        }
        plan.textCopy = await typesDiffer(dst, rt.staging?.target ?? target, info);
        const run = await dst.query(
          `INSERT INTO _sluice.runs (pipeline, table_name, mode, strategy, params, version, os_user, host, pid, l0_lsn)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::pg_lsn) RETURNING id`,
          [
            this.ctx.pipeline,
            rt.name,
            mode,
            plan.strategy,
            JSON.stringify({
              chunkRows: rt.config.chunkRows,
              chunkSeconds: rt.config.chunkSeconds,
              parallelism: plan.parallelism,
              binary: info.binarySafe,
              // Foreign keys added back NOT VALID: validated after the load (a restart finds them here).
              ...(fks.some((f) => f.validated) ? { validate: fks.filter((f) => f.validated) } : {}),
              ...(fks.length && plan.pkDeferred ? { addBack: fks } : {}),
            }),
            this.ctx.version,
            osUser(),
            (await import('node:os')).hostname(),
            process.pid,
            Lsn.format(l0),
          ],
        );
        await dst.query(`UPDATE _sluice.runs SET where_sql = $2 WHERE id = $1`, [run.rows[0].id, plan.scope]);
        await setTableState(dst, this.ctx.pipeline, rt.name, 'backfilling', {
          strategy: plan.strategy,
          plan: plan as unknown as Record<string, unknown>,
          target: TableName.format(target),
          mode,
          chunkRows: rt.config.chunkRows,
          runId: Number(run.rows[0].id),
          l0,
          lastKey: null,
          chunksDone: 0,
          rowsCopied: 0,
          rowsEstimated: info.rowsEstimated,
          error: null,
          staging: rt.staging ? TableName.format(rt.staging.target) : null,
          keepArchive: req.keepArchive,
          detail: null,
        });
        rt.keepArchive = req.keepArchive;
        rt.mode = mode;
        rt.state = 'backfilling';
        rt.rowsCopied = 0;
        rt.rowsEstimated = info.rowsEstimated;
        rt.error = null;
        // Truncate and drop reload the live table itself: stop applying to it until the replay.
        // Online, upsert and a scoped truncate keep it streaming.
        if (emptiesLive) rt.cursor = null;
        return Number(run.rows[0].id);
      }),
    );
  }

  private keysetOf(info: TableInfo): KeysetTable {
    const byName = new Map(info.columns.map((c) => [c.name, c]));
    return {
      source: info.table,
      key: info.primaryKey,
      keyTypes: info.primaryKey.map((k) => byName.get(k)!.typeSql),
      columns: info.copyColumns.map((c) => c.name),
    };
  }

  /** After the last chunk: point the live cursor just before L0 so the Applier replays from there. */
  private async armReplay(dst: pg.Client, rt: TableRuntime, l0: Lsn): Promise<void> {
    await rt.lock.run(() =>
      withTransaction(dst, async () => {
        const replayFrom = Position.before(l0);
        if (rt.staging) {
          // Online: the staging table replays from L0; the live table keeps its own cursor.
          await writeCursor(dst, this.ctx.pipeline, rt.name, TableName.format(rt.staging.target), replayFrom, null, 0);
          await setTableState(dst, this.ctx.pipeline, rt.name, 'catching_up', { lastKey: 'done' });
          await setRunStatus(dst, this.ctx.pipeline, rt.name, 'catching_up');
          rt.staging.cursor = replayFrom;
          rt.state = 'catching_up';
          return;
        }
        const cursor = rt.cursor && Position.compare(rt.cursor, replayFrom) < 0 ? rt.cursor : replayFrom;
        await writeCursor(dst, this.ctx.pipeline, rt.name, TableName.format(rt.target), cursor, null, 0);
        await setTableState(dst, this.ctx.pipeline, rt.name, 'catching_up', { lastKey: 'done' });
        await setRunStatus(dst, this.ctx.pipeline, rt.name, 'catching_up');
        rt.cursor = cursor;
        // The live table was loaded again: a failure to apply to the old one is behind it.
        rt.applyHalted = false;
        rt.state = 'catching_up';
      }),
    );
  }
}

/** Whether a column the load copies has another type in `table` than in the source. */
async function typesDiffer(dst: pg.Client, table: TableName, info: TableInfo): Promise<boolean> {
  const have = await columnTypes(dst, table);
  // format_type leaves out a schema on the search path: compare user types without theirs.
  const bare = (t: string | undefined) => (t ?? '').replace(/^("(?:[^"]|"")+"|[^".]+)\./, '');
  return info.copyColumns.some((c) => (c.support === 'builtin' ? have.get(c.name) !== c.typeSql : bare(have.get(c.name)) !== bare(c.typeSql)));
}

/**
 * Checks a WHERE scope as a boolean expression on the table, before anything runs. One statement
 * only (extended protocol), and nothing is read (LIMIT 0).
 */
export async function validateScope(client: pg.ClientBase, table: TableName, scope: string, side: 'source' | 'destination'): Promise<void> {
  if (scope.trim() === '') return;
  try {
    await client.query({ text: `SELECT 1 FROM ${qualified(table)} WHERE (${scope}) LIMIT 0`, values: [], queryMode: 'extended' } as pg.QueryConfig);
  } catch (err) {
    throw new SluiceError(
      'BAD_USAGE',
      `where ${JSON.stringify(scope)} is not a valid condition on ${side} ${TableName.format(table)}: ${(err as Error).message}; fix tables[].where or --where`,
      { cause: err },
    );
  }
}

/**
 * Where a range planner resumes: the chunks committed so far cover a prefix of the range with gaps
 * (chunks in flight at the crash); the gaps are copied again, then the frontier moves on.
 */
export function resumeRanges(
  done: readonly { lo: string; hi: string | null }[],
  start: bigint,
  end: bigint,
  kind: 'int' | 'ctid' | 'time',
  time?: { column: string; type: TimeColumnType },
): { frontier: bigint | null; pending: Chunk[] } {
  if (done.length === 0) return { frontier: null, pending: [] };
  const spans = done
    .map((d) => ({ lo: d.lo === '-inf' ? start : BigInt(d.lo), hi: d.hi === null ? end + 1n : BigInt(d.hi) }))
    .sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  const frontier = spans.reduce((m, x) => (x.hi > m ? x.hi : m), start);
  const pending: Chunk[] = [];
  let at = start;
  for (const x of spans) {
    if (x.lo > at) pending.push(gap(at, x.lo));
    if (x.hi > at) at = x.hi;
  }
  function gap(lo: bigint, hi: bigint): Chunk {
    const range: ChunkRange =
      kind === 'int'
        ? { kind: 'int', lo: lo === start ? null : lo, hi }
        : kind === 'time'
          ? { kind: 'time', column: time!.column, type: time!.type, lo: lo === start ? null : lo, hi }
          : { kind: 'ctid', from: Number(lo), to: Number(hi) };
    return { range, expectedRows: 0 };
  }
  return { frontier: frontier > end ? end + 1n : frontier, pending };
}
