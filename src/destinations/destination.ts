/**
 * The destination port: what the pipeline needs of a database it writes to, named in the pipeline's
 * words. A driver (destinations/postgres/, destinations/duckdb/) implements it; only the composition
 * root (src/engines.ts) names a driver. Everything that is one database's SQL (temp tables, COPY,
 * upsert statements, session settings, swap statements, archives) stays behind these methods.
 *
 * The seams are transactions: a batch of changes is applied together with its cursor, a swap moves
 * the tables and their bookkeeping at once. docs/architecture.md ("Ports") shows who implements what.
 */
import type { Readable } from 'node:stream';
import type { SluiceError } from '../core/errors.js';
import type { ColumnInfo, ForeignKey, TableInfo } from '../core/columns.js';
import type { Logger } from '../core/logger.js';
import type { SourceLookups } from '../core/source-lookups.js';
import type { BackfillMode, BackfillStrategy, CapturedValue, Lsn, Position, RelationColumns, TableName, TableState } from '../core/types.js';

/** What the pipeline must decide by: a destination without a feature is never asked for it. */
export interface DestinationCapabilities {
  /** It enforces foreign keys, which sluice drops, adds back and validates around reloads and swaps. */
  readonly supportsForeignKeys: boolean;
  /** A staging table can take the live table's place in one transaction while the table streams (online mode). */
  readonly supportsOnlineSwap: boolean;
  /** It reads chunks in PostgreSQL's binary COPY format (else the copier sends 'postgres-text'). */
  readonly readsBinaryChunks: boolean;
  /**
   * A backfill appends its chunks to a load table with no key and deduplicates once after the last
   * (a warehouse: `loads` is set, and the copier calls it around the chunks); else chunks are written
   * into the target in place.
   */
  readonly appendThenDedupe: boolean;
}

export interface Destination {
  /** The config's `destination.type`. */
  readonly type: string;
  readonly capabilities: DestinationCapabilities;
  /** The session that applies changes: the Applier holds one, and the swap and a cancel borrow it. */
  openApplySession(options: ApplySessionOptions): ApplySession;
  /** Classifies an error met while talking to the destination (retryable or not, with the server's fields). */
  classifyError(what: string, err: unknown): SluiceError;
  /** Whether a (classified) error means the destination could not be reached: the Applier then retries sooner. */
  isConnectionLoss(err: unknown): boolean;
  /** Whether a (classified) error is a swap that did not get its lock in time: retried soon, not a failure. */
  isLockTimeout(err: SluiceError): boolean;
  /** A chunk worker's session: appends chunks of a backfill, each with its progress. */
  openChunkWriter(options: { readonly pipeline: string }): Promise<ChunkWriter>;
  /**
   * Validates foreign keys a reload or swap added back unvalidated, in the background on a session of
   * its own (retrying while a parent's rows are still on their way); never throws. With `runId`, the
   * run's list of keys to validate is cleared once all are.
   */
  validateForeignKeysLater(foreignKeys: readonly ForeignKey[], log: Logger, runId?: number): void;
  /** What the CLI reads and writes at the destination, whether a pipeline runs or not (one connection). */
  openControl(applicationName: string): Promise<DestinationControl>;
  /** The start and end of a backfill run where capabilities.appendThenDedupe; absent elsewhere. */
  readonly loads?: LoadLifecycle;
  /**
   * `sluice verify`'s side of a destination whose rows cannot be hashed as PostgreSQL's
   * `md5(ROW(…)::text)` (DuckDB): a canonical row hash both engines compute. Absent for PostgreSQL,
   * which the verifier reads with its own SQL.
   */
  openRangeHashes?(): Promise<RangeHashes>;
}

/** `(after, upTo]` in key order, as text values of the key columns; a null bound is open. */
export interface KeyBounds {
  readonly after: readonly string[] | null;
  readonly upTo: readonly string[] | null;
}

export interface RangeHashes {
  /** The PostgreSQL expression (over the source table's columns) that hashes a source row as this destination hashes its copy. */
  sourceRowHash(info: TableInfo): string;
  /**
   * Row count and md5 over the row hashes in key order of the rows of `target` in `range` that
   * `scope` keeps (a condition, '' for all), computed by the destination; null when there is no such table.
   */
  rangeHash(target: TableName, info: TableInfo, range: KeyBounds, scope: string): Promise<{ readonly n: number; readonly h: string } | null>;
  close(): Promise<void>;
}

/** A backfill run as it starts at a destination that appends, then deduplicates once. */
export interface LoadStart {
  /** The source table, `schema.name`: the key of its state. */
  readonly name: string;
  /** The live table. */
  readonly target: TableName;
  /** The source's description of the table: the target's columns and key come from it. */
  readonly info: TableInfo;
  readonly mode: BackfillMode;
  readonly strategy: BackfillStrategy;
  /** The position from which the table's changes are in the change log: the replay starts there. */
  readonly l0: Lsn;
  /** The scope (WHERE) of the load; '' for the whole table. */
  readonly where: string;
  readonly version: string;
}

/** Where a started (or resumed) run stands. */
export interface LoadStarted {
  readonly runId: number;
  /** A run the state says was under way, with its load table: its committed chunks stay. */
  readonly resumed: boolean;
  readonly l0: Lsn;
  /** Keyset: the last key committed ('done' after the last chunk), null before the first. */
  readonly lastKey: readonly string[] | 'done' | null;
  /** The run's scope (WHERE); '' for the whole table. */
  readonly where: string;
}

/** The end of a load: the one dedupe, and the table handed to the replay. */
export interface LoadFinish {
  readonly name: string;
  readonly target: TableName;
  readonly mode: BackfillMode;
  readonly key: readonly string[];
}

export interface LoadLifecycle {
  /** Refuses, with the fix, a table the destination cannot carry (checked at start, before anything loads). */
  check(info: TableInfo): void;
  /** The run under way for the table `name` (its committed chunks kept), or null. */
  underway(name: string): Promise<LoadStarted | null>;
  /**
   * Creates what the run writes into (the live table when absent, the load table) and records the
   * run and the table's state in one transaction; a run under way resumes instead, keeping its chunks.
   * Refuses, before anything is written, a table the destination cannot carry.
   */
  begin(load: LoadStart): Promise<LoadStarted>;
  /**
   * After the last chunk, in one transaction: one dedupe by key of the load, moved into place as the
   * mode says (online: into the staging table, which swap() later puts live), the load table dropped,
   * the cursor of the table replayed set before L0 and the state `catching_up`. Returns the table the
   * replay applies to (the staging table when online).
   */
  finish(load: LoadFinish): Promise<TableName>;
}

/** A table's row in the destination's state store. */
export interface TableRow {
  readonly name: string;
  readonly target: string;
  readonly state: TableState;
  readonly mode: BackfillMode | null;
  readonly chunkRows: number | null;
  readonly runId: number | null;
  readonly l0: Lsn | null;
  readonly lastKey: string[] | null | 'done';
  readonly chunksDone: number;
  readonly rowsCopied: number;
  readonly rowsEstimated: number;
  readonly rowsPerSecond: number;
  /** Position of the table's oldest unapplied change (or the log head): lag bytes are measured from it. */
  readonly pendingLsn: Lsn | null;
  readonly lagSeconds: number | null;
  readonly error: string | null;
  /** The staging table of an online backfill in progress. */
  readonly staging: string | null;
  readonly keepArchive: boolean;
  /** How the running backfill is planned (strategy, scope, bounds); see pipeline/copier.ts. */
  readonly plan: Record<string, unknown> | null;
  /** A word on what the table is doing now ("waiting for the swap lock, attempt 3"). */
  readonly detail: string | null;
  /** The running pipeline's progress and ETA of the table (pipeline/eta.ts), written with its status. */
  readonly progress?: Record<string, unknown> | null;
  readonly updatedAt: Date;
}

/** A table an online swap replaced, kept until its retention ends (or for good). */
export interface ArchiveRow {
  readonly pipeline: string;
  /** The source table the archive was the destination of. */
  readonly table: string;
  /** Its full name, as recorded (schema.name). */
  readonly archive: string;
  readonly runId: number | null;
  readonly createdAt: Date;
  /** null: kept until dropped by hand (`--keep-archive`). */
  readonly dropAfter: Date | null;
  /** pg_total_relation_size; null when the table is not there any more. */
  readonly bytes: number | null;
}

export type DropOutcome = 'dropped' | 'already dropped' | 'table was gone';

/** A backfill as the destination is asked to take it. */
export interface RequestedLoad {
  readonly mode: BackfillMode;
  /** `--cascade`: a drop may take dependents with it (foreign keys and views are made again). */
  readonly cascade: boolean;
  /** The scope (WHERE) of the load; '' for the whole table. */
  readonly where: string;
}

/** One backfill run from the audit (`_sluice.runs`): who, when, how, and how it ended. */
export interface RunRow {
  readonly id: number;
  readonly table: string;
  readonly mode: string;
  readonly strategy: string;
  readonly where: string;
  readonly params: Record<string, unknown>;
  readonly osUser: string | null;
  readonly host: string | null;
  readonly l0: string | null;
  readonly startedAt: Date;
  readonly endedAt: Date | null;
  readonly status: string;
  readonly rowsCopied: number;
  readonly chunks: number;
  readonly error: string | null;
}

/** One recorded request (`_sluice.requests`). */
export interface RequestRow {
  readonly id: number;
  readonly kind: string;
  readonly table: string;
  readonly params: Record<string, unknown>;
  readonly requestedBy: string | null;
  readonly requestedAt: Date;
  readonly handledAt: Date | null;
  readonly outcome: string | null;
}

/** A request the running pipeline has answered. */
export interface RequestAnswer {
  readonly table: string;
  readonly outcome: string;
}

/**
 * The CLI's side of the destination's state: requests to the running pipeline and their answers,
 * the tables' states, whether a pipeline runs, and the archives of online backfills.
 */
export interface DestinationControl {
  /** Fails with what to do when the state store has a format this sluice cannot read (a newer one). */
  assertStateReadable(): Promise<void>;
  /**
   * Records requests (one per table) for `pipeline` in one transaction and wakes the running
   * pipeline; creates or migrates the state store first (not while a pipeline on the destination runs).
   */
  recordRequests(pipeline: string, kind: string, tables: readonly string[], params: Record<string, unknown>, requestedBy: string | null, log: Logger): Promise<number[]>;
  /**
   * Why the destination cannot take this load into `target` (a sentence naming the way through), or
   * null. The running pipeline checks again when it accepts the request.
   */
  backfillRefusal(pipeline: string, name: string, target: TableName, load: RequestedLoad): Promise<string | null>;
  /** The answered requests among `ids`, in id order. */
  answers(ids: readonly number[]): Promise<RequestAnswer[]>;
  tableState(pipeline: string, name: string): Promise<TableRow | null>;
  /** Whether a `sluice run` of `pipeline` runs on this destination now. */
  pipelineRunning(pipeline: string): Promise<boolean>;
  /** The archives not dropped yet, oldest first. */
  listArchives(pipeline: string): Promise<ArchiveRow[]>;
  /** What a drop of `target` would take with it (foreign keys, views), in words; empty when nothing. */
  dropDependents(target: TableName): Promise<string[]>;
  /** The audit of backfill runs, newest first (of one source table when `table` is given). */
  listRuns(pipeline: string, table: string | null, limit: number): Promise<RunRow[]>;
  /** The requests recorded for `pipeline` (actor, reason in params, outcome), newest first. */
  listRequests(pipeline: string, limit: number): Promise<RequestRow[]>;
  /** Drops one recorded archive and marks it, waiting at most `lockTimeoutMs` for its lock. */
  dropArchive(pipeline: string, archive: string, lockTimeoutMs: number): Promise<DropOutcome>;
  /** The newest kept archive of a table that `sluice rollback` can swap back in, or null (absent: it cannot roll back). */
  rollbackArchive?(pipeline: string, name: string): Promise<{ readonly archive: string; readonly at: Position } | null>;
  /** Creates the state store, migrates an older format (logged), refuses a newer one. */
  ensureState(log: Logger): Promise<void>;
  /** Every table's row of `pipeline`, by name. */
  tables(pipeline: string): Promise<TableRow[]>;
  /** Every apply cursor of `pipeline`. */
  cursors(pipeline: string): Promise<CursorState[]>;
  /** The change log the pipeline last ran with (null: it never ran here). */
  knownLogId(pipeline: string): Promise<string | null>;
  /** Records the pipeline as running now: its slot, publication, change log and process. */
  registerPipeline(run: PipelineRun): Promise<void>;
  /** Moves a table to `state` with the fields given, and its run to `run` when given, in one transaction. */
  recordTableState(pipeline: string, name: string, state: TableState, fields: TableStateFields, run?: RunOutcome): Promise<void>;
  close(): Promise<void>;
}

/** An apply cursor: where a target (the live table, or a staging table) stands. */
export interface CursorState {
  readonly name: string;
  readonly target: string;
  readonly position: Position;
  readonly commitTime: Date | null;
  readonly changesApplied: number;
}

export interface PipelineRun {
  readonly pipeline: string;
  readonly slot: string;
  readonly publication: string;
  readonly logId: string;
  readonly version: string;
}

/** Fields of a table's state the running pipeline sets besides the state (an absent one keeps its value). */
export interface TableStateFields {
  readonly error?: string | null;
  readonly l0?: Lsn | null;
  readonly lastKey?: string[] | null | 'done';
  readonly detail?: string | null;
  readonly mode?: BackfillMode | null;
  readonly target?: string;
}

export interface RunOutcome {
  readonly status: 'catching_up' | 'done' | 'failed' | 'cancelled';
  readonly error: string | null;
}

export interface ApplySessionOptions {
  readonly pipeline: string;
  readonly logger: Logger;
  /** Reads from the source the session needs now and then (new columns, type names, left-out values). */
  readonly source: SourceLookups;
}

/** The table a batch belongs to, as the pipeline keeps it (TableRuntime satisfies this). */
export interface ApplyTable {
  /** The source table, `schema.name`: the key of its state. */
  readonly name: string;
  readonly source: TableName;
  /** What the source says of the table; the session refreshes it when it re-reads the source. */
  info: TableInfo;
  /** An online backfill's staging table, which follows the live table's column types. */
  readonly staging: { readonly target: TableName } | null;
}

/** The last image of a key in a segment; `false` values were left out of the change (unchanged TOAST). */
export interface RowImage {
  readonly row: readonly CapturedValue[];
  /** The old key to fill left-out values from (a key change whose old image is not in the batch). */
  readonly fromKey?: readonly (string | null)[];
}

/**
 * A run of changes with one column set, compacted per primary key (the pipeline's compact()): the
 * last image of each surviving key and the keys to delete, disjoint. Or a TRUNCATE.
 */
export type ApplySegment =
  | { readonly kind: 'truncate' }
  | {
      readonly kind: 'rows';
      /** The change log's id of the column set (stable for the table while the log holds it). */
      readonly relationVersion: number;
      readonly columns: RelationColumns;
      /** The table's column set before this one, or null when the change log holds none. */
      readonly previous: RelationColumns | null;
      /** Position of each primary-key column in `columns`. */
      readonly keyIdx: readonly number[];
      readonly upserts: ReadonlyMap<string, RowImage>;
      readonly deletes: ReadonlyMap<string, readonly (string | null)[]>;
    };

/** Where a target's cursor moves with a batch. */
export interface BatchCursor {
  readonly position: Position;
  readonly commitTimeMs: number | null;
  readonly changes: number;
}

/** An online swap: staging takes the live table's place; the live table becomes an archive. */
export interface SwapRequest {
  readonly name: string;
  readonly live: TableName;
  readonly staging: TableName;
  /** Both tables stand at this position; the new live table's cursor. */
  readonly at: Position;
  readonly attempt: number;
  readonly lockTimeoutMs: number;
  readonly archiveSchema: string;
  readonly archiveRetentionHours: number;
  readonly keepArchive: boolean;
  readonly lowFreeSpacePercent: number;
}

export interface SwapResult {
  readonly archive: TableName;
  /** How long readers of the live table waited (lock taken to commit). */
  readonly lockHeldMs: number;
  readonly runId: number;
  /** Foreign keys added back unvalidated in the swap, to validate now outside its lock. */
  readonly validateLater: readonly ForeignKey[];
  /** A warning when the destination is short of space after the swap, else null. */
  readonly lowSpace: string | null;
}

/** Cancelling an online backfill: the staging table goes, the live table stays as it is. */
export interface CancelStagingRequest {
  readonly name: string;
  readonly staging: TableName;
  /** The table's state afterwards. */
  readonly state: TableState;
  /** Rows to report when no earlier run says how many the live table holds. */
  readonly rowsCopiedIfUnknown: number;
}

/**
 * `sluice rollback`: the newest kept archive of a table becomes its staging table again, standing at
 * the position of the swap that archived it; the pipeline replays the changes since into it and swaps
 * it back in with the ordinary swap (SwapRequest).
 */
export interface RestoreArchiveRequest {
  readonly name: string;
  readonly live: TableName;
  readonly lockTimeoutMs: number;
  readonly requestId: number | null;
  /** Who asked, for the run's audit row. */
  readonly actor: string | null;
  readonly host: string;
  readonly version: string;
}

export interface RestoreArchiveResult {
  /** The archive's recorded name. */
  readonly archive: string;
  /** The staging table it now is. */
  readonly staging: TableName;
  /** Its cursor: the position of the swap that archived it. */
  readonly at: Position;
  readonly runId: number;
  /** Indexes the live table has and the archive lacked, built on it. */
  readonly indexesBuilt: readonly string[];
}

/**
 * One session that applies changes, one statement stream at a time (the caller serialises its users).
 * Every method that writes rows also writes the cursor or state that says so, in the same transaction.
 */
export interface ApplySession {
  /** Opens the session's connection when it has none; a failure here is the connection's (the caller retries). */
  open(): Promise<void>;
  /**
   * Applies `segments` (in order) to `target` and moves the target's cursor to `cursor`, in one
   * transaction. `whileWriting` is called once the last segment's main statement is under way (the
   * caller reads ahead meanwhile). Columns the source gained or widened are carried first.
   */
  applyBatch(table: ApplyTable, target: TableName, segments: readonly ApplySegment[], cursor: BatchCursor, whileWriting?: () => void): Promise<void>;
  /** Moves a target's cursor without changes (an idle table keeps up with the head). */
  advanceCursor(name: string, target: TableName, at: Position): Promise<void>;
  /** A reload's replay has caught up: the table streams, its run is done. */
  markCaughtUp(name: string): Promise<void>;
  /** Records a table's state on its own (the swap marks `swapping` before it starts). */
  setTableState(name: string, state: TableState): Promise<void>;
  /** Swaps in one transaction under a bounded lock wait; a lock timeout throws (Destination.isLockTimeout). */
  swap(request: SwapRequest): Promise<SwapResult>;
  /** Drops an online backfill's staging table and records the cancel. Returns the live table's rows copied. */
  cancelStaging(request: CancelStagingRequest): Promise<number>;
  /** Makes the table's newest kept archive its staging table again (absent: the destination cannot roll back). */
  restoreArchive?(request: RestoreArchiveRequest): Promise<RestoreArchiveResult>;
  /**
   * The error of a failed batch as the pipeline should treat it: classified, with what to grant when
   * that is the cause, and retryable when the session could not avoid an ordering problem itself.
   */
  batchFailure(what: string, err: unknown): SluiceError;
  /**
   * Forgets what the session knows of these tables (a swap or cancel changed which table has the
   * name), or of every table (a failed batch may have taken session objects with it).
   */
  forget(tables?: readonly TableName[]): void;
  /** Ends the session; a failed session is ended without waiting long. */
  close(): Promise<void>;
}

/**
 * How a chunk's rows travel from the source: PostgreSQL's COPY formats (binary when every column's
 * type allows it and the target has the source's types, text otherwise).
 */
export type ChunkFormat = 'postgres-binary' | 'postgres-text';

/** What a committed chunk says of the load's progress (written with the chunk's rows). */
export type ChunkProgress =
  /** Keyset: the chunk's last key ('done' for the last chunk); chunks commit in key order. */
  | { readonly kind: 'key'; readonly upTo: readonly string[] | 'done' }
  /** Interval and ctid: the chunk's range of the run, in any order. */
  | { readonly kind: 'range'; readonly runId: number; readonly lo: string; readonly hi: string | null };

export interface AppendChunk {
  /** The source table, `schema.name`: the key of its state. */
  readonly name: string;
  readonly target: TableName;
  /** The columns the chunk carries, in order. */
  readonly columns: readonly string[];
  readonly format: ChunkFormat;
  /** Starts reading the chunk from the source; called once, when the destination is ready for its rows. */
  readonly open: () => Readable;
  readonly progress: ChunkProgress;
  /** The load's rate now, recorded with the progress (rows/s). */
  readonly rowsPerSecond: () => number;
  /**
   * Rows merged by key into a table the Applier writes too (upsert, a scoped truncate, ctid into a
   * kept table): staged first, touching nothing of the target, then merged and committed inside
   * `underApplyLock` (the table's apply lock). Without it the rows are appended.
   */
  readonly merge?: {
    readonly key: readonly string[];
    /** The columns as the source has them now (the staging rows' types). */
    readonly sourceColumns: readonly ColumnInfo[];
    /** The columns merged into the target. */
    readonly columns: readonly string[];
    readonly underApplyLock: <T>(fn: () => Promise<T>) => Promise<T>;
  };
  /** Called after the rows are written and before the commit (keyset chunks wait for their turn there). */
  readonly beforeCommit?: () => Promise<void>;
}

export interface ChunkWriter {
  /** Writes one chunk and records its progress in one transaction. Returns the rows written. */
  appendChunk(chunk: AppendChunk): Promise<number>;
  close(): Promise<void>;
}
