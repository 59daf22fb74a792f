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
