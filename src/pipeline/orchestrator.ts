/**
 * The Orchestrator: the composition root of a running pipeline (`sluice run`, `sluice demo`).
 *
 * Start order matters for correctness: the pipeline lock → preflight (nothing moves if it fails)
 * → the `_sluice` schema in the destination → the change log → publication and slot → capture
 * (Streamer) and apply (Applier) → backfills from a FIFO queue, at most `pipeline.concurrency` at
 * once. Stop order is the reverse: backfills finish their chunk in flight, the Applier its batch,
 * the Streamer flushes the log and acknowledges the slot.
 *
 * Errors: a table's failure marks that table `failed` (resumable) and the rest go on; a failure of
 * capture, the change log or the pipeline lock goes through one funnel (`fail`) and stops the
 * pipeline with the first error.
 */
import { join } from 'node:path';
import type pg from 'pg';
import { EmbeddedChangeLog } from '../changelog/embedded/embedded-change-log.js';
import type { SluiceConfig } from '../config/schema.js';
import { postgresDestinationUrl, publicationNameOf, slotNameOf } from '../config/schema.js';
import { SluiceError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { backoffMs, sleep } from '../core/retry.js';
import { Lsn, TableName, type BackfillMode, type TableState } from '../core/types.js';
import type { DestinationControl, RunOutcome, TableStateFields } from '../destinations/destination.js';
import { cursorKey, ensureStateSchema, knownLogId, lastDoneRows, readCursors, readTables, registerPipeline, setRunStatus, setTableState, type TableRow } from '../destinations/postgres/state.js';
import { resumeValidations } from '../destinations/postgres/foreign-key-validation.js';
import { dropArchive } from '../destinations/postgres/archives.js';
import { inBackfill } from '../core/table-state.js';
import { Swapper } from './swapper.js';
import { destinationRefusal } from '../destinations/postgres/backfill-refusals.js';
import { ControlChannel } from './control-channel.js';
import { classify, isConnectionLoss } from '../postgres/errors.js';
import { quoteIdent } from '../core/quote.js';
import { Applier } from './applier.js';
import { configureConnections, connect, enginesOf, withTransaction, type PipelineContext } from './context.js';
import { Copier } from './copier.js';
import { checkCreatedFirst, preflight } from './inspector.js';
import { capabilityRefusal } from './capability-refusal.js';
import { uniqueSecondaryIndexes } from '../destinations/postgres/indexes.js';
import { Mutex, type BackfillRequest, type TableRuntime } from './runtime.js';
import { Capture } from './capture.js';
import { describeSlot, hasReplicatedState, inspectSlot, planReload, recreateSlot, slotLostError } from './slot-guard.js';
import { Throttler } from './throttler.js';
import { rollbackPosition, rollbackRefusal, startRollback } from './rollback.js';
import { EventBus } from '../core/events.js';
import { RateWindow } from './rate-window.js';
import { Lifecycle } from './lifecycle.js';
import { ProgressTracker } from './progress-tracker.js';
import type { Progress } from './eta.js';
import { limitsOf, readOverride, throttleRecord, throttleSource, type ThrottleOverride } from './throttle-override.js';

export const VERSION = '0.1.0';

export interface PipelineOptions {
  readonly logger: Logger;
  /** Called whenever progress changes (for a progress line). */
  readonly onProgress?: () => void;
  /** The bus lifecycle events go to (the HTTP API's stream, webhooks, hooks); a new one when not given. */
  readonly events?: EventBus;
}

export interface Pipeline {
  start(): Promise<void>;
  /** Graceful stop: chunk in flight finishes, log flushed, slot acknowledged. */
  stop(): Promise<void>;
  /** Settles when the pipeline stops; rejects with the fatal error if it failed. */
  readonly done: Promise<void>;
  readonly tables: ReadonlyMap<string, TableRuntime>;
  /** Lifecycle events (src/core/events.ts). */
  readonly events: EventBus;
  /** Changes captured and applied since start. */
  counters(): { captured: number; applied: number; confirmedLsn: Lsn };
  /** Queues an ad-hoc backfill (the same path as `sluice backfill`). */
  requestBackfill(table: string, mode: BackfillMode): Promise<void>;
  /** A backfilling table's progress and ETA at the last status write (pipeline/eta.ts), or null. */
  progressOf(table: string): Progress | null;
}

export function createPipeline(cfg: SluiceConfig, opts: PipelineOptions): Pipeline {
  return new Orchestrator(cfg, opts);
}

class Orchestrator implements Pipeline {
  readonly tables = new Map<string, TableRuntime>();
  readonly events: EventBus;
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private rejectDone!: (err: unknown) => void;
  private ctx!: PipelineContext;
  private readonly control: ControlChannel;
  private streamer: Capture | null = null;
  private applier: Applier | null = null;
  private copier: Copier | null = null;
  private swapper: Swapper | null = null;
  private statusClient: pg.Client | null = null;
  /** The destination's state through the destination port, where no control connection holds it (DuckDB). */
  private store: DestinationControl | null = null;
  private writingStatus = false;
  private changeLog: EmbeddedChangeLog | null = null;
  private readonly queue: TableRuntime[] = [];
  /** Limits set by `sluice throttle` (kept across restarts), or null: the config's. */
  private throttleOverride: ThrottleOverride | null = null;
  /** Rows copied sampled at each status write: the averaged rows/s. */
  private readonly rates = new Map<string, RateWindow>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly lifecycle: Lifecycle;
  private progress: ProgressTracker | null = null;
  private stopping = false;
  private failed: SluiceError | null = null;
  private timers: NodeJS.Timeout[] = [];
  private readonly log: Logger;
  private readonly pipeline: string;
  private readonly slot: string;
  private readonly publication: string;

  constructor(
    private readonly cfg: SluiceConfig,
    private readonly opts: PipelineOptions,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => {});
    this.pipeline = cfg.pipeline.name;
    this.events = opts.events ?? new EventBus(this.pipeline);
    this.slot = slotNameOf(cfg);
    this.publication = publicationNameOf(cfg);
    this.log = opts.logger.child({ pipeline: this.pipeline });
    this.lifecycle = new Lifecycle(this.events, cfg.notify, this.log);
    // A PostgreSQL destination: the control connection holds the pipeline lock and hears requests.
    // Another destination is held through the destination port (`store`, opened at start).
    this.control = new ControlChannel(cfg.destination.type === 'postgres' ? cfg.destination.url : '', this.pipeline, this.log, {
      onRequest: () => void this.handleRequests().catch(() => {}),
      onLockLost: (err) => void this.fail(err),
    });
  }

  counters() {
    return {
      captured: this.streamer?.captured ?? 0,
      applied: this.applier?.applied ?? 0,
      confirmedLsn: this.streamer?.confirmedLsn ?? Lsn.zero,
    };
  }

  progressOf(table: string): Progress | null {
    return this.progress?.copyOf(table) ?? null;
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    configureConnections(cfg);
    const src = await connect('source', cfg.source.url, 'sluice');
    try {
      // One running process per pipeline: a session-level advisory lock held by the control connection
      // (PostgreSQL), or the destination's own hold on its state (a DuckDB file: one process at a time).
      const { destination } = enginesOf({ cfg });
      const dst = destination.loads ? null : await this.control.open();
      const store = dst ? null : await destination.openControl('sluice');
      this.store = store;
      const pre = await preflight(cfg, src, dst, this.slot);
      // What the destination cannot carry is refused now, before anything loads.
      for (const info of pre.tables.values()) destination.loads?.check(info);
      // Creates `_sluice`, migrates an older format (logged), refuses a newer one (exit 2).
      if (dst) await ensureStateSchema(dst, this.log);
      else await store!.ensureState(this.log);

      // The capture thread writes the log; this thread reads and purges it.
      const changeLog = new EmbeddedChangeLog(join(cfg.log.type === 'embedded' ? cfg.log.path : '.sluice', 'changes.db'), {
        fsync: cfg.log.type === 'embedded' ? cfg.log.fsync : true,
        role: 'reader',
        logger: this.log,
      });
      this.changeLog = changeLog;
      const logId = changeLog.identity();

      const rows = dst ? await readTables(dst, this.pipeline) : await store!.tables(this.pipeline);
      if (dst) await checkCreatedFirst(cfg, dst, pre.tables, new Set(rows.filter((r) => r.runId !== null).map((r) => r.name)));
      for (const u of dst ? await uniqueSecondaryIndexes(dst, cfg.tables.map((t) => ({ schema: cfg.destination.schema, name: TableName.parse(t.name).name }))) : []) {
        this.log.warn(
          `destination ${u.table} has the UNIQUE index ${u.index} beyond its primary key: a source transaction that moves a value between rows can stop the table ` +
            `(sluice applies each batch set-wise); where values move, make it non-unique in the destination (docs/operations.md, "A schema created first")`,
          { table: u.table, index: u.index },
        );
      }
      const cursors = dst ? await readCursors(dst, this.pipeline) : new Map((await store!.cursors(this.pipeline)).map((c) => [cursorKey(c.name, c.target), c]));
      // A dropped or invalidated slot lost changes: stop and say so, or (onSlotLost: rebackfill) reload everything online.
      const slotState = await inspectSlot(src, this.slot);
      const slotLost = (!slotState.exists || slotState.invalidated) && hasReplicatedState(rows, cursors);
      if (slotLost && (cfg.source.onSlotLost !== 'rebackfill' || !dst)) throw slotLostError(cfg, this.slot, describeSlot(slotState));
      await this.ensurePublication(src);
      if (slotLost || slotState.invalidated) await recreateSlot(src, this.slot, slotState, changeLog, this.log);
      else if (!slotState.exists) await this.createSlot(src);
      await this.checkLogIdentity(dst ? await knownLogId(dst, this.pipeline) : await store!.knownLogId(this.pipeline), logId, rows, cursors.size > 0);
      const run = { pipeline: this.pipeline, slot: this.slot, publication: this.publication, logId, version: VERSION };
      if (dst) await registerPipeline(dst, run);
      else await store!.registerPipeline(run);

      this.ctx = {
        cfg,
        pipeline: this.pipeline,
        slot: this.slot,
        publication: this.publication,
        logger: this.log,
        changeLog,
        events: this.events,
        throttler: new Throttler(cfg.throttle, { sourceUrl: cfg.source.url, replicaUrl: cfg.source.replicaUrl, slot: this.slot }, this.log.child({ part: 'throttle' })),
        version: VERSION,
      };
      this.ctx.throttler.onChange = (reason, was) => this.lifecycle.throttle(reason, was);
      this.progress = new ProgressTracker(changeLog, cfg.notify.notConvergingSeconds * 1000);
      this.throttleOverride = dst ? await readOverride(dst, this.pipeline) : null;
      if (this.throttleOverride) {
        this.ctx.throttler.setLimits(this.throttleOverride.limits);
        this.log.info(`throttle from \`sluice throttle\` at ${this.throttleOverride.at} kept: ${JSON.stringify(this.throttleOverride.limits)}; \`sluice throttle --reset\` goes back to the config`);
      }

      const byName = new Map(rows.map((r) => [r.name, r]));
      for (const t of cfg.tables) {
        const source = TableName.parse(t.name);
        const name = TableName.format(source);
        const row = byName.get(name);
        const target = { schema: cfg.destination.schema, name: source.name };
        const cursor = cursors.get(cursorKey(name, TableName.format(target)));
        const stagingCursor = row?.staging ? cursors.get(cursorKey(name, row.staging)) : undefined;
        const rt: TableRuntime = {
          name,
          source,
          target,
          config: t,
          info: pre.tables.get(name)!,
          state: row?.state ?? 'queued',
          mode: row?.mode ?? null,
          cursor: cursor && row && row.state !== 'cancelled' ? cursor.position : null,
          applyHalted: false,
          staging: row?.staging ? { target: TableName.parse(row.staging), cursor: stagingCursor?.position ?? null } : null,
          keepArchive: row?.keepArchive ?? false,
          detail: row?.detail ?? null,
          rollbackFrom: rollbackPosition(cursors.values(), name, [TableName.format(target), row?.staging ?? null]),
          l0: row?.state === 'backfilling' || (row?.state === 'failed' && row.lastKey !== 'done') ? row.l0 : null,
          lock: new Mutex(),
          rowsCopied: row?.rowsCopied ?? 0,
          rowsEstimated: row?.rowsEstimated || pre.tables.get(name)!.rowsEstimated,
          rowsPerSecond: 0,
          changesApplied: cursor?.changesApplied ?? 0,
          lastCommitTimeMs: cursor?.commitTime?.getTime() ?? null,
          error: row?.error ?? null,
          abort: null,
          pending: null,
        };
        this.tables.set(name, rt);
      }
      for (const r of rows) if (!this.tables.has(r.name)) this.log.warn('table has state but is not in the config; ignored', { table: r.name });
      const reloads = new Set(slotLost && dst ? await planReload(dst, this.pipeline, this.tables.values(), byName, this.log) : []);

      this.copier = new Copier(this.ctx, { onProgress: () => this.opts.onProgress?.() });
      this.applier = new Applier(this.ctx, this.tables, {
        onCaughtUp: (rt) => {
          this.log.info('table caught up; streaming', { table: rt.name });
          this.lifecycle.completed(rt);
          this.opts.onProgress?.();
        },
        onTableFailed: (rt, err) => void this.tableFailed(rt, err),
        onApplied: () => this.opts.onProgress?.(),
        onStagingCaughtUp: (rt) => this.swapper?.request(rt),
      });
      this.swapper = new Swapper(this.ctx, this.applier, {
        onSwapped: (rt, archive, lockHeldMs, attempts) => {
          this.lifecycle.swapped(rt, archive, lockHeldMs, attempts);
          this.opts.onProgress?.();
        },
        onDetail: (rt, detail) => {
          rt.detail = detail;
        },
      });
      this.streamer = new Capture({
        url: cfg.source.url,
        slot: this.slot,
        publication: this.publication,
        log: changeLog,
        fsync: cfg.log.type === 'embedded' ? cfg.log.fsync : true,
        logger: this.log.child({ part: 'capture' }),
        heartbeatIntervalMs: cfg.pipeline.heartbeatIntervalMs,
        replicationTimeoutMs: cfg.source.replicationTimeoutMs,
        onFatal: (err) => void this.fail(err),
        onDurable: () => this.applier?.poke(),
      });
      await this.streamer.start();
      this.applier.start();
      this.ctx.throttler.start();
      this.lifecycle.watchSlot(cfg.source.url, this.slot);

      // What each table needs now.
      for (const rt of this.tables.values()) {
        const row = byName.get(rt.name);
        if (reloads.has(rt)) {
          this.enqueue(rt);
        } else if (!row || row.state === 'queued' || row.state === 'backfilling') {
          this.enqueue(rt);
        } else if (row.state === 'failed') {
          await this.recoverFailed(rt, row);
        }
      }
      // Requests reach a PostgreSQL destination's pipeline by NOTIFY and are polled; no other process
      // can reach a DuckDB file while this one holds it.
      if (dst) await this.control.listen();
      await this.handleRequests();
      if (dst) this.timers.push(
        setInterval(
          () =>
            void (this.stopping ? Promise.resolve() : this.control.ensure())
              .then(() => this.handleRequests())
              .then(() => (this.requestsFailing = false))
              .catch((e) => {
                // Once per outage, not every 2 s.
                this.log[this.requestsFailing ? 'debug' : 'warn']('reading requests failed', { error: errorMessage(e) });
                this.requestsFailing = true;
              }),
          2000,
        ),
      );
      this.timers.push(setInterval(() => void this.writeStatus().catch(() => {}), cfg.pipeline.statusIntervalMs));
      await this.sweepArchives().catch((e) => this.log.warn('dropping expired archives failed', { error: errorMessage(e) }));
      if (dst) await this.onControl((c) => resumeValidations(postgresDestinationUrl(this.cfg.destination, 'sluice run'), this.pipeline, c, this.log)).catch((e) => this.log.warn('resuming foreign key validations failed', { error: errorMessage(e) }));
      this.timers.push(setInterval(() => void this.sweepArchives().catch((e) => this.log.warn('dropping expired archives failed', { error: errorMessage(e) })), 60_000));
      this.log.info('pipeline running', {
        slot: this.slot,
        publication: this.publication,
        tables: this.tables.size,
        log: cfg.log.type === 'embedded' ? cfg.log.path : cfg.log.type,
      });
      this.pump();
    } catch (err) {
      await src.end().catch(() => {});
      await this.teardown();
      throw err instanceof SluiceError ? err : classify('source', 'starting the pipeline', err);
    }
    await src.end().catch(() => {});
  }

  private async ensurePublication(src: pg.Client): Promise<void> {
    try {
      const pub = await src.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [this.publication]);
      if (pub.rowCount === 0) await src.query(`CREATE PUBLICATION ${quoteIdent(this.publication)}`);
    } catch (err) {
      if ((err as { code?: string }).code === '42501') {
        const who = await src.query(`SELECT current_user AS role, current_database() AS db`).catch(() => ({ rows: [{ role: '?', db: '?' }] }));
        const { role, db } = who.rows[0] as { role: string; db: string };
        throw new SluiceError(
          'MISSING_PRIVILEGE',
          `source: role ${role} cannot create the publication ${this.publication} (${(err as Error).message}); ` +
            `as a superuser run: GRANT CREATE ON DATABASE ${quoteIdent(db)} TO ${quoteIdent(role)}; ` +
            `or create it yourself: CREATE PUBLICATION ${quoteIdent(this.publication)}; (the role must also own the replicated tables to add them)`,
          { cause: err },
        );
      }
      throw classify('source', 'creating the publication', err);
    }
  }

  private async createSlot(src: pg.Client): Promise<void> {
    try {
      await src.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [this.slot]);
      this.log.info('created replication slot', { slot: this.slot });
    } catch (err) {
      throw classify('source', 'creating the replication slot', err);
    }
  }

  /** A change log that is not the one the destination's cursors refer to would silently lose changes. */
  private async checkLogIdentity(known: string | null, logId: string, rows: TableRow[], hasCursors: boolean): Promise<void> {
    if (known && known !== logId && (hasCursors || rows.some((x) => x.state === 'backfilling'))) {
      throw new SluiceError(
        'CHANGELOG_ERROR',
        `change log ${this.cfg.log.type === 'embedded' ? this.cfg.log.path : ''} is not the one pipeline ${this.pipeline} was using (log ${logId}, expected ${known}); ` +
          `changes captured into the old log would be lost: restore it, or reload every table: DELETE FROM _sluice.tables WHERE pipeline = '${this.pipeline}'; DELETE FROM _sluice.cursors WHERE pipeline = '${this.pipeline}' in the destination, then run again`,
      );
    }
  }

  private async recoverFailed(rt: TableRuntime, row: TableRow): Promise<void> {
    if (row.lastKey === 'done' && (rt.staging?.cursor || rt.cursor !== null)) {
      // Failed while applying: apply again (catching up first if it was replaying).
      rt.state = 'catching_up';
      await this.recordState(rt.name, 'catching_up', { error: null });
    } else {
      rt.state = 'queued';
      this.enqueue(rt);
    }
  }

  private enqueue(rt: TableRuntime): void {
    if (!this.queue.includes(rt) && !this.running.has(rt.name)) this.queue.push(rt);
  }

  /** Starts queued backfills while there is room (FIFO). */
  private pump(): void {
    while (!this.stopping && this.running.size < this.cfg.pipeline.concurrency && this.queue.length > 0) {
      const rt = this.queue.shift()!;
      rt.detail = null;
      const p = this.runBackfill(rt).finally(() => {
        this.running.delete(rt.name);
        this.pump();
      });
      this.running.set(rt.name, p);
    }
    this.numberQueue();
  }

  /** Each waiting table's place in the queue, as its detail ("queued #2"), for status and the page. */
  private numberQueue(): void {
    this.queue.forEach((q, i) => (q.detail = `queued #${i + 1}`));
  }

  private async runBackfill(rt: TableRuntime): Promise<void> {
    const abort = new AbortController();
    rt.abort = abort;
    this.lifecycle.started(rt);
    let attempt = 0;
    try {
      for (;;) {
        try {
          const finished = await this.copier!.backfill(rt, abort.signal);
          rt.pending = null;
          if (finished) this.applier?.poke();
          return;
        } catch (err) {
          const e = err instanceof SluiceError ? err : classify('source', `backfilling ${rt.name}`, err);
          if (this.stopping || abort.signal.aborted) return;
          // A server that is away (restart, outage) is waited for however long; other retryable errors 10 times.
          if (e.retryable && (attempt < 10 || isConnectionLoss(e))) {
            attempt++;
            const delay = backoffMs(Math.min(attempt, 10), 500, 30_000);
            this.log.warn('backfill interrupted; resuming', { table: rt.name, error: e.message, inMs: delay });
            await sleep(delay, abort.signal);
            continue;
          }
          // Refused before the destination was touched (the run's preparation rolled back): a table
          // that was streaming still is, and must not read as failed.
          if (e.isUsageError && !e.retryable && rt.pending?.requestId && rt.state === 'queued' && rt.cursor !== null && !rt.staging) await this.backfillRefused(rt, e);
          else await this.tableFailed(rt, e);
          return;
        }
      }
    } finally {
      rt.abort = null;
      this.opts.onProgress?.();
    }
  }

  private async backfillRefused(rt: TableRuntime, err: SluiceError): Promise<void> {
    const message = `backfill refused: ${err.message}`;
    this.lifecycle.failed(rt, err);
    rt.state = 'streaming';
    rt.error = message;
    rt.pending = null;
    this.log.error('backfill refused; the table keeps streaming', { table: rt.name, error: err.message });
    try {
      await this.recordState(rt.name, 'streaming', { error: message, l0: null, lastKey: null });
    } catch (e) {
      this.log.warn('could not record the refusal', { table: rt.name, error: errorMessage(e) });
    }
  }

  private async tableFailed(rt: TableRuntime, err: SluiceError): Promise<void> {
    this.lifecycle.failed(rt, err);
    rt.error = err.message;
    rt.state = 'failed';
    this.log.error('table failed', { table: rt.name, error: err.message });
    try {
      await this.recordState(rt.name, 'failed', { error: err.message }, { status: 'failed', error: err.message });
    } catch (e) {
      this.log.warn('could not record the failure', { table: rt.name, error: errorMessage(e) });
    }
  }

  /** Records a table's state (and its run's outcome) in the destination's state store. */
  private async recordState(name: string, state: TableState, fields: TableStateFields, run?: RunOutcome): Promise<void> {
    if (this.store) return this.store.recordTableState(this.pipeline, name, state, fields, run);
    await this.onControl((c) =>
      withTransaction(c, async () => {
        await setTableState(c, this.pipeline, name, state, fields);
        if (run) await setRunStatus(c, this.pipeline, name, run.status, run.error);
      }),
    );
  }

  /** Runs `fn` on the control connection while no other part uses it. */
  private onControl<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    return this.control.run(fn);
  }

  async requestBackfill(table: string, mode: BackfillMode): Promise<void> {
    await this.onControl((c) => c.query(`INSERT INTO _sluice.requests (pipeline, kind, table_name, params) VALUES ($1, 'backfill', $2, $3)`, [
      this.pipeline,
      table,
      JSON.stringify({ mode }),
    ]));
    await this.handleRequests();
  }

  private requestsFailing = false;

  private handling: Promise<void> | null = null;

  /** Acts on backfill and cancel requests recorded by the CLI, in order. */
  private handleRequests(): Promise<void> {
    if (this.handling) return this.handling;
    this.handling = this.processRequests().finally(() => (this.handling = null));
    return this.handling;
  }

  private async processRequests(): Promise<void> {
    if (this.stopping || !this.control.isOpen) return;
    const reqs = await this.onControl((c) =>
      c.query(`SELECT id, kind, table_name, params, requested_by FROM _sluice.requests WHERE pipeline = $1 AND handled_at IS NULL ORDER BY id`, [this.pipeline]),
    );
    for (const r of reqs.rows) {
      const name = TableName.format(TableName.parse(r.table_name));
      const rt = this.tables.get(name);
      let outcome: string;
      if (r.kind === 'throttle') outcome = await this.changeThrottle(r.params ?? {});
      else if (r.kind === 'pause' || r.kind === 'resume') outcome = await this.pauseOrResume(r.kind, r.params ?? {});
      else if (!rt) outcome = `not in the running config: ${name} was added to the config file after \`sluice run\` started; restart \`sluice run\` to pick it up`;
      else if (r.kind === 'backfill') {
        const p = r.params ?? {};
        outcome = await this.acceptBackfill(rt, {
          mode: (p.mode ?? rt.config.mode) as BackfillMode,
          requestId: Number(r.id),
          keepArchive: Boolean(p.keepArchive),
          cascade: Boolean(p.cascade),
          strategy: p.strategy ?? rt.config.strategy,
          parallelism: p.parallelism ?? (p.strategy && p.strategy !== rt.config.strategy ? 1 : rt.config.parallelism),
          where: p.where ?? rt.config.where,
        });
      }
      else if (r.kind === 'cancel') outcome = await this.cancel(rt);
      else if (r.kind === 'rollback') {
        const busy = this.running.has(rt.name) || this.queue.includes(rt);
        outcome =
          rollbackRefusal(rt, busy) ??
          (await startRollback(this.ctx, this.applier!, rt, { requestId: Number(r.id), actor: r.requested_by ?? null, keepArchive: Boolean(r.params?.keepArchive) }).catch(
            (err) => `refused: ${errorMessage(err)}`,
          ));
      }
      else outcome = `unknown request ${r.kind}`;
      if (r.kind === 'backfill') this.lifecycle.requested(name, Number(r.id), r.params ?? {}, outcome);
      if (r.kind === 'cancel' && rt) this.lifecycle.cancelled(rt, outcome);
      await this.onControl((c) => c.query(`UPDATE _sluice.requests SET handled_at = now(), outcome = $2 WHERE id = $1`, [r.id, outcome]));
      this.log.info('request handled', { request: r.kind, table: name, outcome });
    }
  }

  /**
   * `sluice pause` / `resume` (and the API's): scope `backfills` holds copying (capture and apply go
   * on), `apply` holds applying (capture keeps filling the change log). Until resumed or restarted.
   */
  private async pauseOrResume(kind: 'pause' | 'resume', params: Record<string, unknown>): Promise<string> {
    const scope = params.scope === 'apply' ? 'apply' : 'backfills';
    const why = kind === 'pause' ? `paused: ${scope} paused by an operator${params.reason ? ` (${String(params.reason)})` : ''}` : null;
    if (scope === 'apply') {
      if (this.applier) this.applier.pausedBy = why;
      if (!why) this.applier?.poke();
    } else this.ctx.throttler.hold(why);
    await this.onControl((c) => c.query(`UPDATE _sluice.pipelines SET throttle = $2 WHERE name = $1`, [this.pipeline, this.throttleJson()]));
    return kind === 'pause' ? `${scope} paused until resumed (or restarted)` : `${scope} resumed`;
  }

  private throttleJson(): string {
    const t = this.ctx.throttler;
    return throttleRecord(t.limits, t.reason, this.throttleOverride, this.applier?.pausedBy ?? null);
  }

  /** Applies and keeps (across restarts) the limits of `sluice throttle`; `--reset` goes back to the config's. */
  private async changeThrottle(params: Record<string, unknown>): Promise<string> {
    if (params.reset) {
      this.throttleOverride = null;
      this.ctx.throttler.setLimits(this.cfg.throttle);
    } else {
      const change = limitsOf(params);
      this.throttleOverride = { at: new Date().toISOString(), limits: { ...this.throttleOverride?.limits, ...change } };
      this.ctx.throttler.setLimits(change);
    }
    const t = this.ctx.throttler;
    await this.onControl((c) => c.query(`UPDATE _sluice.pipelines SET throttle = $2 WHERE name = $1`, [this.pipeline, this.throttleJson()]));
    return `throttle now ${JSON.stringify(t.limits)}; from ${throttleSource(this.throttleOverride)}`;
  }

  private async acceptBackfill(rt: TableRuntime, req: BackfillRequest): Promise<string> {
    const { mode, keepArchive } = req;
    if (this.running.has(rt.name) || this.queue.includes(rt) || inBackfill(rt.state)) return `refused: ${rt.name} is already ${rt.state}`;
    const engines = enginesOf(this.ctx);
    const unable = capabilityRefusal(engines.destination, mode);
    if (unable) return `refused: ${unable}`;
    try {
      const inspection = await engines.source.openInspection('sluice');
      try {
        await inspection.checkBackfillOptions(
          rt.info,
          { mode, strategy: req.strategy ?? rt.config.strategy, parallelism: req.parallelism ?? 1, where: req.where ?? '', dateColumn: rt.config.dateColumn },
          (key) => `--${key}`,
        );
      } finally {
        await inspection.close();
      }
    } catch (err) {
      return `refused: ${errorMessage(err)}`;
    }
    // Refuse now, before anything is loaded, what the swap could not carry and a truncate PostgreSQL refuses.
    const refusal = await this.onControl((c) =>
      destinationRefusal(c, this.pipeline, rt.name, rt.target, { mode, cascade: Boolean(req.cascade), where: req.where ?? rt.config.where }),
    );
    if (refusal) return `refused: ${refusal}`;
    rt.pending = { ...req, keepArchive };
    rt.rowsCopied = 0;
    rt.rowsPerSecond = 0;
    rt.mode = mode;
    rt.state = 'queued';
    // A new run fixes a new L0: forget the old run's position.
    await this.onControl((c) =>
      setTableState(c, this.pipeline, rt.name, 'queued', { mode, l0: null, lastKey: null, error: null, target: TableName.format(rt.target) }),
    );
    this.enqueue(rt);
    this.pump();
    if (this.running.has(rt.name)) return `started (mode ${mode})`;
    const pos = this.queue.indexOf(rt);
    const ahead = this.queue.slice(0, pos).map((x) => x.name);
    const busy = [...this.running.keys()];
    return `queued #${pos + 1} (mode ${mode}; ${ahead.length} ahead${ahead.length ? `: ${ahead.join(', ')}` : ''}; backfilling now: ${busy.join(', ') || 'none'})`;
  }

  private async cancel(rt: TableRuntime): Promise<string> {
    const active = this.running.get(rt.name);
    const queued = this.queue.indexOf(rt);
    if (rt.staging) return this.cancelOnline(rt, active);
    if (!active && queued < 0) {
      const partial = rt.state === 'cancelled' && rt.cursor === null ? ' (not replicated until the next backfill; it holds a partial copy: its last reload was cancelled)' : '';
      return `nothing to cancel: ${rt.name} is ${rt.state}${partial}`;
    }
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      rt.detail = null;
      this.numberQueue();
    }
    rt.abort?.abort();
    await active;
    const keepsStreaming = rt.cursor !== null && (rt.mode === 'upsert' || rt.state === 'queued');
    const state = keepsStreaming ? 'streaming' : 'cancelled';
    const loaded = rt.state !== 'queued';
    await this.onControl((c) =>
      withTransaction(c, async () => {
        // A table that keeps streaming holds its last finished copy: COPIED counts that run's rows, not the cancelled one's.
        if (keepsStreaming) rt.rowsCopied = await lastDoneRows(c, this.pipeline, rt.name, rt.rowsCopied);
        await setTableState(c, this.pipeline, rt.name, state, { l0: null, lastKey: null, rowsCopied: rt.rowsCopied });
        await setRunStatus(c, this.pipeline, rt.name, 'cancelled');
        if (!keepsStreaming) await c.query(`DELETE FROM _sluice.cursors WHERE pipeline = $1 AND name = $2`, [this.pipeline, rt.name]);
      }),
    );
    rt.state = state;
    rt.l0 = null;
    rt.pending = null;
    if (!keepsStreaming) rt.cursor = null;
    if (state === 'streaming') return 'cancelled; the table keeps streaming';
    return loaded
      ? 'cancelled; the table is not replicated until the next backfill and holds a partial copy (the reload did not finish)'
      : 'cancelled; the table is not replicated until the next backfill';
  }

  /**
   * Online: stop loading, replaying or swapping; drop the staging table. The live table is as it was:
   * streaming when it has a cursor; otherwise (an earlier truncate or drop reload was cancelled) partial
   * and not replicated, and the answer says so.
   */
  private async cancelOnline(rt: TableRuntime, active: Promise<void> | undefined): Promise<string> {
    const swapper = this.swapper!;
    // No swap starts while the cancel runs (the Applier asks for one whenever the staging table drains).
    await swapper.hold(rt.name);
    try {
      rt.abort?.abort();
      await active;
      const dropped = await this.applier!.exclusive(rt, async (session) => {
        const staging = rt.staging;
        if (!staging) return null;
        const live = rt.cursor ? 'streaming' : 'cancelled';
        // The live table is untouched: COPIED counts the run that loaded it, not the staging table's rows.
        rt.rowsCopied = await session.cancelStaging({ name: rt.name, staging: staging.target, state: live, rowsCopiedIfUnknown: rt.rowsCopied });
        // Under the table's lock, like the swap that reads it.
        rt.staging = null;
        rt.state = live;
        rt.l0 = null;
        rt.pending = null;
        rt.detail = null;
        return staging.target;
      });
      if (!dropped) return `nothing to cancel: ${rt.name} has already swapped`;
      return rt.state === 'streaming'
        ? `cancelled; staging table ${TableName.format(dropped)} dropped, the live table is untouched and streaming`
        : `cancelled; staging table ${TableName.format(dropped)} dropped; the live table is not replicated until the next backfill and holds a partial copy (an earlier reload was cancelled)`;
    } finally {
      swapper.release(rt.name);
    }
  }

  /** Drops archived tables whose retention has passed. */
  private async sweepArchives(): Promise<void> {
    if (!this.control.isOpen || this.stopping) return;
    const due = await this.onControl((c) =>
      c.query(`SELECT archive FROM _sluice.archives WHERE pipeline = $1 AND dropped_at IS NULL AND drop_after IS NOT NULL AND drop_after <= now()`, [
        this.pipeline,
      ]),
    );
    for (const r of due.rows) {
      try {
        // By its recorded name (archive schema, or the table's schema for archives of an older sluice);
        // idempotent against `sluice archives drop` doing the same meanwhile.
        const outcome = await this.onControl((c) => dropArchive(c, this.pipeline, r.archive, 5000));
        if (outcome !== 'already dropped') this.log.info('dropped archived table after its retention', { archive: r.archive, outcome });
      } catch (err) {
        this.log.warn('could not drop archived table (a dependent object, or a lock held on it); retrying in a minute', { archive: r.archive, error: errorMessage(err) });
      }
    }
    // An archive dropped (here, or by `sluice archives drop`) no longer holds the change log for a rollback.
    const before = new Map([...this.tables.values()].map((rt) => [rt, rt.rollbackFrom]));
    const cursors = await this.onControl((c) => readCursors(c, this.pipeline));
    for (const [rt, was] of before) {
      // A swap meanwhile set a newer position: keep it.
      if (rt.rollbackFrom !== was) continue;
      rt.rollbackFrom = rollbackPosition(cursors.values(), rt.name, [TableName.format(rt.target), rt.staging ? TableName.format(rt.staging.target) : null]);
    }
  }

  /** Writes live figures (rates, lag) for `sluice status` in another process, and a heartbeat. */
  private async writeStatus(): Promise<void> {
    if (!this.control.isOpen || this.stopping || this.writingStatus) return;
    this.writingStatus = true;
    try {
      // Its own connection: the control connection serves requests at the same time.
      if (!this.statusClient) this.statusClient = await connect('destination', postgresDestinationUrl(this.cfg.destination, 'sluice run'), 'sluice-status');
      await this.writeStatusOn(this.statusClient);
    } catch (err) {
      const c = this.statusClient;
      this.statusClient = null;
      await c?.end().catch(() => {});
      throw err;
    } finally {
      this.writingStatus = false;
    }
  }

  private async writeStatusOn(c: pg.Client): Promise<void> {
    const now = Date.now();
    const head = this.changeLog!.head();
    for (const rt of this.tables.values()) {
      let lagSeconds: number | null = null;
      let pendingLsn: Lsn | null = null;
      if (rt.cursor) {
        const next = this.changeLog!.read(rt.name, rt.cursor, 1)[0];
        lagSeconds = next ? Math.max(0, (now - next.commitTimeMs) / 1000) : 0;
        pendingLsn = next ? next.position.lsn : head.endLsn;
      }
      // Rows/s over the last 30 s, not the last chunk's speed. Rows copied are written by each chunk's
      // own commit (and by a cancel): not here, where an older figure would overwrite a newer one.
      let rate = this.rates.get(rt.name);
      if (!rate) this.rates.set(rt.name, (rate = new RateWindow()));
      if (rt.state === 'backfilling') rate.add(now, rt.rowsCopied);
      else rate.reset();
      rt.rowsPerSecond = Math.round(rate.rate());
      const progress = this.progress!.sample(rt, now);
      this.lifecycle.observe(rt, lagSeconds, progress);
      await c.query(
        `UPDATE _sluice.tables SET rows_per_second = $3, lag_seconds = $4, pending_lsn = $5::pg_lsn, detail = $6, progress = $7::jsonb
         WHERE pipeline = $1 AND name = $2`,
        [
          this.pipeline,
          rt.name,
          rt.state === 'backfilling' ? rt.rowsPerSecond : 0,
          lagSeconds,
          pendingLsn === null ? null : Lsn.format(pendingLsn),
          rt.detail,
          progress.copy || progress.catchUp ? JSON.stringify(progress) : null,
        ],
      );
    }
    await c.query(`UPDATE _sluice.pipelines SET heartbeat_at = now(), throttle = $2 WHERE name = $1`, [
      this.pipeline,
      this.throttleJson(),
    ]);
  }

  /** The fatal funnel: the first error wins, everything stops, `done` rejects with it. */
  private async fail(err: SluiceError): Promise<void> {
    if (this.failed || this.stopping) return;
    if (err.code === 'SLOT_LOST') err = slotLostError(this.cfg, this.slot, `was dropped or invalidated while sluice was running (${err.message})`, err);
    this.failed = err;
    this.log.error('pipeline failed', { error: err.message, code: err.code });
    await this.stop();
  }

  async stop(): Promise<void> {
    if (this.stopping) return this.done.catch(() => {});
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.log.info('stopping: finishing chunks in flight, flushing the change log');
    for (const rt of this.tables.values()) rt.abort?.abort();
    await Promise.allSettled([...this.running.values()]);
    await this.swapper?.stop();
    await this.copier?.stop();
    await this.ctx?.throttler.stop();
    await this.lifecycle.stop();
    await this.teardown();
    if (this.failed) this.rejectDone(this.failed);
    else this.resolveDone();
  }

  private async teardown(): Promise<void> {
    await this.applier?.stop().catch((e) => this.log.warn('applier stop', { error: errorMessage(e) }));
    await this.streamer?.stop().catch((e) => this.log.warn('capture stop', { error: errorMessage(e) }));
    this.changeLog?.close();
    await this.statusClient?.end().catch(() => {});
    this.statusClient = null;
    // After any user of the control connection in flight.
    await this.control.close();
    const store = this.store;
    this.store = null;
    await store?.close().catch(() => {});
  }
}
