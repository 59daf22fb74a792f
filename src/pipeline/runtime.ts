/**
 * In-memory view of each table of a running pipeline, shared by the Copier, the Applier and the
 * status writer. The destination's `_sluice` rows are the durable truth; this mirrors them.
 */
import type { TableConfig } from '../config/schema.js';
import type { BackfillMode, BackfillStrategy, Lsn, Position, TableName, TableState } from '../core/types.js';
import type { TableInfo } from '../core/columns.js';

/** A FIFO mutex: the Applier holds a table's lock while it applies a batch, the Copier while it switches modes. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/** What an ad-hoc backfill asks for; unset fields come from the table's config. */
export interface BackfillRequest {
  readonly mode: BackfillMode;
  readonly requestId: number | null;
  readonly keepArchive?: boolean;
  /** drop: drop even when other objects depend on the table (their foreign keys are added back). */
  readonly cascade?: boolean;
  readonly strategy?: BackfillStrategy;
  readonly parallelism?: number;
  /** A WHERE scope: only matching rows are loaded. */
  readonly where?: string;
}

export interface TableRuntime {
  /** Source table, `schema.name` (the key of every state row). */
  readonly name: string;
  readonly source: TableName;
  readonly target: TableName;
  readonly config: TableConfig;
  info: TableInfo;
  state: TableState;
  mode: BackfillMode | null;
  /**
   * Apply cursor of the live table; null while the table has none (never loaded, or reloading in
   * truncate/drop mode). The live table receives changes whenever it has one.
   */
  cursor: Position | null;
  /** Set when applying to the live table failed: it stops until the next start. */
  applyHalted: boolean;
  /** The staging table of an online backfill, and its apply cursor (null until its replay starts). */
  staging: { readonly target: TableName; cursor: Position | null } | null;
  /** Online backfill: keep the replaced table instead of dropping it after the retention. */
  keepArchive: boolean;
  /** What the table is doing right now, for status ("waiting for the swap lock, attempt 3"). */
  detail: string | null;
  /**
   * Position of the newest kept archive (the swap that archived it): the change log keeps this table's
   * changes from here, so `sluice rollback` can bring the archive current. Null when none is kept.
   */
  rollbackFrom: Position | null;
  /** L0 of the backfill in progress: the change log keeps this table's changes from here. */
  l0: Lsn | null;
  readonly lock: Mutex;
  rowsCopied: number;
  rowsEstimated: number;
  rowsPerSecond: number;
  changesApplied: number;
  lastCommitTimeMs: number | null;
  error: string | null;
  /** Aborts the backfill in progress (cancel or shutdown). */
  abort: AbortController | null;
  /** The copy in progress, in its strategy's unit (heap pages, key span): set by the Copier for range strategies. */
  progressUnits?: (() => { done: number; total: number; strategy: BackfillStrategy }) | null;
  /** Requested ad-hoc backfill waiting for a slot in the queue. */
  pending: BackfillRequest | null;
}
