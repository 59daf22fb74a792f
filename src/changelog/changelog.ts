import type { CapturedValue, Change, ChangeKind, Lsn, Position, RelationColumns } from '../core/types.js';

/**
 * The change log: a durable, ordered buffer between capture and apply (contract 1 and 2).
 *
 * Capture appends whole transactions and calls `flush()`; only after `flush()` returns is a
 * transaction durable, and only then may the source slot be acknowledged up to `head().endLsn`.
 * Readers only ever see changes of transactions at or below the durable head.
 */
export interface PendingChange {
  readonly table: string;
  readonly lsn: Lsn;
  readonly idx: number;
  readonly kind: ChangeKind;
  readonly relationVersion: number;
  readonly row?: readonly CapturedValue[];
  /**
   * The row as pgoutput TupleData (src/core/tuple-data.ts), instead of `row`: capture hands the
   * bytes it received. May be a view of a buffer that is reused after `append` returns: the log copies it.
   */
  readonly rowData?: Buffer;
  readonly oldKey?: readonly (string | null)[];
  readonly commitTimeMs: number;
}

export interface LogHead {
  /** Commit LSN of the last durable transaction (Lsn.zero when empty). */
  readonly lsn: Lsn;
  /** End LSN of that transaction's commit record, or a keepalive position: what the slot may confirm. */
  readonly endLsn: Lsn;
  readonly commitTimeMs: number;
}

export interface ChangeLog {
  /** Returns the version id of this column set for the table, recording a new one when it changed. */
  relationVersion(table: string, columns: RelationColumns): number;
  relation(version: number): RelationColumns;
  /** The table's column set before `version` (the version recorded just before it), or null when none is known. */
  previousRelation(table: string, version: number): RelationColumns | null;
  /** Buffers changes of the transaction being received. */
  append(change: PendingChange): void;
  /** Marks the end of a transaction; it becomes durable with the next flush. */
  commit(lsn: Lsn, endLsn: Lsn, commitTimeMs: number): void;
  /** Advances the confirmable position without a transaction (keepalives on an idle source). */
  advance(endLsn: Lsn): void;
  /** Writes and fsyncs everything buffered. Returns the durable head. */
  flush(): LogHead;
  /** Number of buffered, not yet flushed changes. */
  readonly buffered: number;
  head(): LogHead;
  /** Changes of `table` after `after`, up to the durable head (and `upTo` when given), in position order. */
  read(table: string, after: Position, limit: number, upTo?: Position): Change[];
  /**
   * As `read`, and also stops once the changes read hold `maxBytes` of stored row data (at least one
   * change is returned). `full`: it stopped at a limit, so more may follow.
   */
  readBatch(table: string, after: Position, o: { readonly limit: number; readonly maxBytes: number; readonly upTo?: Position }): { changes: Change[]; full: boolean };
  /** Removes changes of `table` at or before `upTo`. */
  purge(table: string, upTo: Position): number;
  /** Approximate number of changes held for a table after a position. */
  count(table: string, after: Position): number;
  close(): void;
}

/**
 * The change log as the pipeline will use it once the log may live on a server (JetStream): the
 * same semantics as `ChangeLog`, with every call that may go over the network returning a promise.
 *
 * - `relationVersion`, `append`, `commit` and `advance` only buffer (no I/O): they stay synchronous.
 *   A version returned by `relationVersion` is stored with the next flush, before the changes that use it.
 * - `flush()` resolves with the durable head only after the storage acknowledged every buffered,
 *   committed transaction (JetStream with `replicas: 3`: a quorum). When it rejects, nothing past the
 *   previous durable head may be acknowledged to the source; a retryable error (`retryable: true`,
 *   e.g. the stream lost its quorum) may be followed by another `flush()`, which resumes where the
 *   failed one stopped.
 * - `head()` is the durable head this process knows (no I/O). A log opened as a reader in another
 *   process learns newer heads on `read` and `count`.
 * - `read` returns changes of committed transactions at or below the durable head only.
 * - `purge` removes changes at or before `upTo`; a log that stores changes in groups (JetStream: one
 *   message per table and flush) removes only whole groups, so a change at or before `upTo`
 *   may stay until a later purge passes its group. It never removes a change after `upTo`.
 */
export interface AsyncChangeLog {
  relationVersion(table: string, columns: RelationColumns): number;
  relation(version: number): Promise<RelationColumns>;
  previousRelation(table: string, version: number): Promise<RelationColumns | null>;
  append(change: PendingChange): void;
  commit(lsn: Lsn, endLsn: Lsn, commitTimeMs: number): void;
  advance(endLsn: Lsn): void;
  flush(): Promise<LogHead>;
  /** Number of buffered changes not yet durable. */
  readonly buffered: number;
  head(): LogHead;
  read(table: string, after: Position, limit: number, upTo?: Position): Promise<Change[]>;
  purge(table: string, upTo: Position): Promise<number>;
  count(table: string, after: Position): Promise<number>;
  close(): Promise<void>;
}
