/**
 * Feeds the pure progress and ETA functions (eta.ts) from a running pipeline: one sample per table
 * at each status write. The copy's units come from its planner (pages, key span) or its rows; the
 * catch-up backlog is the WAL between the table's next pending change and the change log's head.
 */
import type { ChangeLog } from '../changelog/changelog.js';
import type { Position } from '../core/types.js';
import { estimateCatchUp, estimateProgress, NO_CATCH_UP, NO_RATE, sampleCatchUp, sampleRate, type CatchUp, type CatchUpState, type Progress, type ProgressUnit, type RateState } from './eta.js';
import type { TableRuntime } from './runtime.js';

export interface TableProgress {
  copy: Progress | null;
  catchUp: CatchUp | null;
}

const UNIT_OF: Record<string, ProgressUnit> = { ctid: 'pages', interval: 'keys', daterange: 'keys', keyset: 'rows' };

export class ProgressTracker {
  private readonly rates = new Map<string, RateState>();
  private readonly catchUps = new Map<string, CatchUpState>();
  private readonly last = new Map<string, Progress>();

  constructor(
    private readonly changeLog: ChangeLog,
    private readonly notConvergingMs: number,
  ) {}

  /** Samples `rt` at `now` (its held-back reason is read from its detail). */
  sample(rt: TableRuntime, now: number): TableProgress {
    const copy = this.copy(rt, now);
    if (copy) this.last.set(rt.name, copy);
    else this.last.delete(rt.name);
    return { copy, catchUp: this.catchUp(rt, now) };
  }

  /** The copy's progress at the last sample, or null. */
  copyOf(table: string): Progress | null {
    return this.last.get(table) ?? null;
  }

  private copy(rt: TableRuntime, now: number): Progress | null {
    if (rt.state !== 'backfilling') {
      this.rates.delete(rt.name);
      return null;
    }
    const units = rt.progressUnits?.() ?? null;
    const unit: ProgressUnit = units ? UNIT_OF[units.strategy] ?? 'keys' : 'rows';
    const done = units ? units.done : rt.rowsCopied;
    const total = units ? units.total : rt.rowsEstimated;
    const heldBack = rt.detail && /^paused: /.test(rt.detail) ? rt.detail : null;
    const rate = sampleRate(this.rates.get(rt.name) ?? NO_RATE, now, done, heldBack !== null);
    this.rates.set(rt.name, rate);
    return estimateProgress({ copying: true, done: false, unit, unitsDone: done, unitsTotal: total, rowsCopied: rt.rowsCopied, rowsEstimated: rt.rowsEstimated, rate, heldBack });
  }

  private catchUp(rt: TableRuntime, now: number): CatchUp | null {
    const cursor: Position | null = rt.state === 'catching_up' ? (rt.staging ? rt.staging.cursor : rt.cursor) : null;
    if (!cursor) {
      this.catchUps.delete(rt.name);
      return null;
    }
    const next = this.changeLog.read(rt.name, cursor, 1)[0];
    const backlog = next ? Math.max(0, Number(this.changeLog.head().endLsn - next.position.lsn)) : 0;
    const s = sampleCatchUp(this.catchUps.get(rt.name) ?? NO_CATCH_UP, now, backlog);
    this.catchUps.set(rt.name, s);
    return estimateCatchUp(s, now, this.notConvergingMs);
  }
}
