/**
 * Lifecycle: what a running pipeline tells the operator, as events on its EventBus
 * (src/core/events.ts; webhooks, hooks and the HTTP stream listen). The orchestrator calls one
 * method at each decision point; the thresholds (lag, slot retained WAL, convergence) are decided
 * here, each event once per crossing, not at every sample.
 */
import type pg from 'pg';
import type { NotifyConfig } from '../config/schema.js';
import type { EventBus } from '../core/events.js';
import { errorMessage, type SluiceError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { inBackfill } from '../core/table-state.js';
import { TableName } from '../core/types.js';
import { connect } from './context.js';
import type { TableProgress } from './progress-tracker.js';
import type { TableRuntime } from './runtime.js';

/** How often the slot's retained WAL is read, when notify.slotRetainedBytes is set. */
const SLOT_CHECK_MS = 10_000;

export class Lifecycle {
  /** When each table's backfill started (epoch ms), for the seconds a completed one took. */
  private readonly startedAt = new Map<string, number>();
  private readonly lagging = new Set<string>();
  private readonly stalled = new Set<string>();
  private throttledSince: number | null = null;
  private slotOver = false;
  private slotClient: pg.Client | null = null;
  private slotTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly bus: EventBus,
    private readonly notify: NotifyConfig,
    private readonly logger: Logger,
  ) {}

  private emit(name: Parameters<EventBus['emit']>[0], rt: TableRuntime | string | null, detail: Record<string, unknown>): void {
    this.bus.emit(name, detail, rt === null ? undefined : typeof rt === 'string' ? rt : rt.name);
  }

  /** A backfill request was handled: accepted (queued or started) or refused, with the answer the CLI got. */
  requested(table: string, requestId: number, params: Record<string, unknown>, outcome: string): void {
    this.emit('backfill.requested', table, { requestId, ...params, accepted: !/^(refused|not in the running config)/.test(outcome), outcome });
  }

  started(rt: TableRuntime): void {
    this.startedAt.set(rt.name, Date.now());
    this.emit('backfill.started', rt, {
      mode: rt.mode,
      strategy: rt.pending?.strategy ?? rt.config.strategy,
      rowsEstimated: rt.rowsEstimated,
      resumed: rt.state === 'backfilling' && rt.rowsCopied > 0,
    });
  }

  completed(rt: TableRuntime): void {
    const since = this.startedAt.get(rt.name);
    this.startedAt.delete(rt.name);
    this.emit('backfill.completed', rt, { mode: rt.mode, rowsCopied: rt.rowsCopied, seconds: since === undefined ? null : Math.round((Date.now() - since) / 1000) });
  }

  /** Call before the state changes: only a table in a backfill (or whose backfill started) emits backfill.failed. */
  failed(rt: TableRuntime, err: SluiceError): void {
    if (!inBackfill(rt.state) && !this.startedAt.has(rt.name)) return;
    this.startedAt.delete(rt.name);
    this.emit('backfill.failed', rt, { mode: rt.mode, state: rt.state, code: err.code, error: err.message, rowsCopied: rt.rowsCopied });
  }

  /** A cancel request was handled; only an actual cancel emits. */
  cancelled(rt: TableRuntime, outcome: string): void {
    if (!outcome.startsWith('cancelled')) return;
    this.startedAt.delete(rt.name);
    this.emit('backfill.cancelled', rt, { mode: rt.mode, state: rt.state, outcome });
  }

  /** An online backfill's swap: swap.completed, and the backfill is complete. */
  swapped(rt: TableRuntime, archive: TableName, lockHeldMs: number, attempts: number): void {
    this.emit('swap.completed', rt, { archive: TableName.format(archive), lockHeldMs: Math.round(lockHeldMs * 10) / 10, attempts });
    this.completed(rt);
  }

  /** Every change of the throttle's reason: engaged when it closes, released when it opens. */
  throttle(reason: string | null, was: string | null): void {
    if (reason && !was) {
      this.throttledSince = Date.now();
      this.emit('throttle.engaged', null, { reason });
    } else if (!reason && was) {
      const seconds = this.throttledSince === null ? null : Math.round((Date.now() - this.throttledSince) / 1000);
      this.throttledSince = null;
      this.emit('throttle.released', null, { was, pausedSeconds: seconds });
    }
  }

  /** At each status write: apply lag against notify.lagSeconds, and a catch-up that does not converge. */
  observe(rt: TableRuntime, lagSeconds: number | null, progress: TableProgress): void {
    const limit = this.notify.lagSeconds;
    if (limit > 0 && lagSeconds !== null) {
      if (lagSeconds > limit && !this.lagging.has(rt.name)) {
        this.lagging.add(rt.name);
        this.emit('lag.exceeded', rt, { lagSeconds: Math.round(lagSeconds * 10) / 10, thresholdSeconds: limit, state: rt.state });
      } else if (lagSeconds <= limit && this.lagging.delete(rt.name)) {
        this.emit('lag.recovered', rt, { lagSeconds: Math.round(lagSeconds * 10) / 10, thresholdSeconds: limit, state: rt.state });
      }
    }
    const c = progress.catchUp;
    if (c?.notConverging && !this.stalled.has(rt.name)) {
      this.stalled.add(rt.name);
      this.emit('catchup.not_converging', rt, { backlogBytes: c.backlog, shrinkBytesPerSecond: c.shrinkPerSecond, forSeconds: this.notify.notConvergingSeconds });
    } else if (!c?.notConverging) this.stalled.delete(rt.name);
  }

  /** Reads the slot's retained WAL every 10 s while notify.slotRetainedBytes is set; slot.retained_exceeded once per crossing. */
  watchSlot(sourceUrl: string, slot: string): void {
    if (this.notify.slotRetainedBytes <= 0 || this.slotTimer) return;
    this.slotTimer = setInterval(() => void this.checkSlot(sourceUrl, slot), SLOT_CHECK_MS);
    this.slotTimer.unref();
  }

  private async checkSlot(sourceUrl: string, slot: string): Promise<void> {
    try {
      this.slotClient ??= await connect('source', sourceUrl, 'sluice-notify');
      const r = await this.slotClient.query(
        `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS v FROM pg_replication_slots WHERE slot_name = $1`,
        [slot],
      );
      const bytes = r.rows[0]?.v === null || r.rows[0]?.v === undefined ? null : Math.round(Number(r.rows[0].v));
      if (bytes === null) return;
      const limit = this.notify.slotRetainedBytes;
      if (bytes > limit && !this.slotOver) this.emit('slot.retained_exceeded', null, { slot, retainedBytes: bytes, thresholdBytes: limit });
      this.slotOver = bytes > limit;
    } catch (err) {
      this.logger.debug('reading the slot for notify.slotRetainedBytes failed', { error: errorMessage(err) });
      const c = this.slotClient;
      this.slotClient = null;
      await c?.end().catch(() => {});
    }
  }

  async stop(): Promise<void> {
    if (this.slotTimer) clearInterval(this.slotTimer);
    this.slotTimer = null;
    await this.slotClient?.end().catch(() => {});
    this.slotClient = null;
  }
}
