/**
 * The typed events the binlog decoder (binlog-decoder.ts) yields. Positions: `logPos` is the header's
 * end position of the event in its file (0 for the events the server makes up, like the first ROTATE
 * and heartbeats); the file name comes from ROTATE events. No I/O.
 */
import type { RowValue } from './row-values.js';
import type { TableMap } from './table-map.js';

export const EventType = {
  QUERY: 2,
  STOP: 3,
  ROTATE: 4,
  FORMAT_DESCRIPTION: 15,
  XID: 16,
  TABLE_MAP: 19,
  WRITE_ROWS_V1: 23,
  UPDATE_ROWS_V1: 24,
  DELETE_ROWS_V1: 25,
  HEARTBEAT: 27,
  WRITE_ROWS_V2: 30,
  UPDATE_ROWS_V2: 31,
  DELETE_ROWS_V2: 32,
  GTID_MYSQL: 33,
  ANONYMOUS_GTID_MYSQL: 34,
  PREVIOUS_GTIDS_MYSQL: 35,
  TRANSACTION_PAYLOAD_MYSQL: 40,
  HEARTBEAT_V2: 41,
  ANNOTATE_ROWS: 160,
  BINLOG_CHECKPOINT: 161,
  GTID: 162,
  GTID_LIST: 163,
  START_ENCRYPTION: 164,
  QUERY_COMPRESSED: 165,
  WRITE_ROWS_COMPRESSED_V1: 169,
  UPDATE_ROWS_COMPRESSED_V1: 170,
  DELETE_ROWS_COMPRESSED_V1: 171,
  WRITE_ROWS_COMPRESSED: 166,
  UPDATE_ROWS_COMPRESSED: 167,
  DELETE_ROWS_COMPRESSED: 168,
} as const;

export interface EventHeader {
  readonly timestamp: number;
  readonly type: number;
  readonly serverId: number;
  readonly size: number;
  readonly logPos: number;
  readonly flags: number;
}

/** One MariaDB GTID: domain, server, sequence number. */
export interface Gtid {
  readonly domain: number;
  readonly server: number;
  readonly seq: bigint;
}

export type RowsKind = 'insert' | 'update' | 'delete';

/** One row change: `before` for update/delete, `after` for insert/update; a column not logged is `undefined`. */
export interface RowChange {
  readonly before?: readonly (RowValue | undefined)[];
  readonly after?: readonly (RowValue | undefined)[];
}

export type BinlogEvent = { readonly header: EventHeader } & (
  | {
      readonly kind: 'format-description';
      readonly binlogVersion: number;
      readonly serverVersion: string;
      readonly checksum: boolean;
    }
  | { readonly kind: 'rotate'; readonly position: bigint; readonly file: string }
  | {
      readonly kind: 'gtid';
      readonly gtid: Gtid;
      /** A DDL (or other non-transactional) event group: no BEGIN, no XID; one QUERY follows. */
      readonly standalone: boolean;
      readonly commitId: bigint | null;
      /** An XA transaction's PREPARE group (its changes), or the group of its XA COMMIT/ROLLBACK. */
      readonly xa: 'prepared' | 'completed' | null;
    }
  | { readonly kind: 'gtid-list'; readonly gtids: readonly Gtid[] }
  | { readonly kind: 'binlog-checkpoint'; readonly file: string }
  | {
      readonly kind: 'query';
      readonly database: string;
      readonly sql: string;
      readonly errorCode: number;
      readonly threadId: number;
      /** The statement after its status variables: BEGIN, COMMIT, ROLLBACK or a DDL/TRUNCATE. */
    }
  | { readonly kind: 'xid'; readonly xid: bigint }
  | { readonly kind: 'table-map'; readonly map: TableMap }
  | {
      readonly kind: 'rows';
      readonly rowsKind: RowsKind;
      readonly version: 1 | 2;
      readonly map: TableMap;
      /** STMT_END_F: the last rows event of its statement (table maps end here). */
      readonly statementEnd: boolean;
      readonly rows: readonly RowChange[];
    }
  | { readonly kind: 'annotate-rows'; readonly sql: string }
  | { readonly kind: 'heartbeat'; readonly file: string }
  | { readonly kind: 'stop' }
  | { readonly kind: 'other'; readonly type: number }
);
