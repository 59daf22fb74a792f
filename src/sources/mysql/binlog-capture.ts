/**
 * Capture from a MariaDB binlog into the change log (changelog/changelog.ts), in the shape
 * PostgreSQL capture writes: one PendingChange per row event of a tracked table, values as the
 * PostgreSQL text of the mapped type (type-mapping.ts), the key's old values on a delete and on an
 * update that changed the key, TRUNCATE as a `truncate` change; each transaction committed at its
 * XID (a DDL at its own QUERY event), then flushed.
 *
 * Order: a transaction's events are contiguous in the binlog, written at commit in commit order, so
 * the position where its GTID event starts orders it: the change's `lsn` is orderKey(file, start)
 * (binlog-position.ts), `idx` its index in the transaction. A commit's `endLsn` is orderKey(file,
 * end of its XID): where capture resumes (file:pos; on the same server, BINLOG_GTID_POS gives the
 * GTID position). L0 from a consistent snapshot (snapshot.ts) is the start of the first transaction
 * the snapshot did not see, so "changes at or after L0" is `Position.before(orderKey(L0))`.
 * Row events decode with their own TABLE_MAP: a column set that changed (ALTER) becomes a new
 * relation version; DDL on a tracked table other than TRUNCATE is handed to `onDdl`.
 */
import type { ChangeLog } from '../../changelog/changelog.js';
import type { TableInfo } from '../../core/columns.js';
import { SluiceError } from '../../core/errors.js';
import type { CapturedValue, Lsn, RelationColumns } from '../../core/types.js';
import type { BinlogClient } from './binlog-client.js';
import type { BinlogEvent, RowChange } from './binlog-events.js';
import { orderKey } from './binlog-position.js';
import { ColumnType } from './column-types.js';
import type { RowValue } from './row-values.js';
import type { MappedColumn, TableMap } from './table-map.js';
import { postgresText } from './type-mapping.js';

export interface BinlogCaptureOptions {
  readonly client: BinlogClient;
  readonly log: ChangeLog;
  /**
   * Tracked tables by `database.table`, as introspected (introspect.ts). Their column types tell
   * uuid, inet6 and inet4 from binary strings; the rest comes from each event's TABLE_MAP. The caller
   * may replace an entry after a DDL (`onDdl`): the next TABLE_MAP of the table reads it again.
   */
  readonly tables: ReadonlyMap<string, TableInfo>;
  /** A DDL statement on a tracked table (other than TRUNCATE, which is captured). */
  readonly onDdl?: (table: string, sql: string) => void;
  /** Called after each flush made changes durable. */
  readonly onDurable?: () => void;
  /** Flush at least this often while transactions arrive (default 50 ms). */
  readonly flushIntervalMs?: number;
}

interface OpenTxn {
  readonly lsn: Lsn;
  /** An XA transaction's PREPARE group: its changes are logged before it commits, and it may still roll back. */
  readonly xa: boolean;
  readonly commitMs: number;
  idx: number;
  readonly skip: boolean;
}

/** The MariaDB type family of a mapped column, for postgresText when the table's types are not given. */
function typeFromMap(col: MappedColumn): string {
  switch (col.realType) {
    case ColumnType.DATE:
    case ColumnType.NEWDATE:
      return 'date';
    case ColumnType.DATETIME:
    case ColumnType.DATETIME2:
      return 'datetime';
    case ColumnType.TIMESTAMP:
    case ColumnType.TIMESTAMP2:
      return 'timestamp';
    case ColumnType.TIME:
    case ColumnType.TIME2:
      return 'time';
    default:
      return col.charset === null || col.charset === 'binary' ? 'binary' : 'text';
  }
}

const TRUNCATE = /^\s*TRUNCATE\s+(?:TABLE\s+)?(?:`((?:[^`]|``)+)`|(\w+))(?:\s*\.\s*(?:`((?:[^`]|``)+)`|(\w+)))?\s*;?\s*$/i;
const DDL_TABLES = /(?:ALTER|DROP|RENAME|CREATE)\s+TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?([^\s(]+)|\bTO\s+([^\s,;]+)/gi;

function unquote(name: string): string {
  return name.replace(/^`|`$/g, '').replace(/``/g, '`');
}

/** The `database.table` names a DDL statement names (best effort: ALTER/DROP/RENAME/CREATE TABLE and RENAME's targets). */
export function ddlTables(sql: string, database: string): string[] {
  const out = new Set<string>();
  for (const m of sql.matchAll(DDL_TABLES)) {
    const raw = (m[1] ?? m[2] ?? '').replace(/[;,]$/, '');
    const parts = raw.split('.').map(unquote);
    out.add(parts.length === 2 ? `${parts[0]}.${parts[1]}` : `${database}.${parts[0]}`);
  }
  return [...out];
}

export function truncatedTable(sql: string, database: string): string | null {
  const m = TRUNCATE.exec(sql);
  if (!m) return null;
  const first = m[1] !== undefined ? m[1].replace(/``/g, '`') : m[2];
  const second = m[3] !== undefined ? m[3].replace(/``/g, '`') : m[4];
  return second !== undefined ? `${first}.${second}` : `${database}.${first}`;
}

export class BinlogCapture {
  private txn: OpenTxn | null = null;
  private readonly versions = new Map<number, { table: string; version: number; key: readonly number[]; types: string[] }>();
  private readonly lastVersion = new Map<string, number>();
  private stopping = false;
  private lastFlushMs = 0;
  captured = 0;

  constructor(private readonly o: BinlogCaptureOptions) {}

  /** Reads the stream until stop() or an error (which it throws). */
  async run(): Promise<void> {
    while (!this.stopping) {
      let item;
      try {
        item = await this.o.client.next();
      } catch (err) {
        if (this.stopping) return;
        throw err;
      }
      this.onEvent(item.event, item.file);
    }
  }

  stop(): void {
    this.stopping = true;
    this.o.client.close();
  }

  private flush(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastFlushMs < (this.o.flushIntervalMs ?? 50)) return;
    this.o.log.flush();
    this.lastFlushMs = now;
    this.o.onDurable?.();
  }

  /** Handles one event of the stream; `file` is the binlog file it is in. */
  onEvent(event: BinlogEvent, file: string): void {
    const log = this.o.log;
    const h = event.header;
    switch (event.kind) {
      case 'gtid': {
        const lsn = orderKey({ file, pos: h.logPos - h.size }) as Lsn;
        // Already durable (a resume that starts before the head): skip the transaction whole.
        this.txn = { lsn, commitMs: h.timestamp * 1000, idx: 0, skip: lsn <= log.head().lsn, xa: event.xa === 'prepared' };
        return;
      }
      case 'query': {
        const txn = this.txn;
        if (/^\s*BEGIN\b/i.test(event.sql)) return;
        if (/^\s*COMMIT\b/i.test(event.sql)) return this.commit(h.logPos, file);
        if (/^\s*ROLLBACK\b/i.test(event.sql)) {
          this.txn = null;
          return;
        }
        const truncated = truncatedTable(event.sql, event.database);
        if (txn && !txn.skip && truncated && this.o.tables.has(truncated)) {
          const version = this.lastVersion.get(truncated) ?? this.registerFromTypes(truncated);
          log.append({ table: truncated, lsn: txn.lsn, idx: txn.idx++, kind: 'truncate', relationVersion: version, commitTimeMs: txn.commitMs });
          this.captured++;
        } else if (txn && !txn.skip && !truncated) {
          for (const t of ddlTables(event.sql, event.database)) if (this.o.tables.has(t)) this.o.onDdl?.(t, event.sql);
        }
        // A DDL is its own event group: it commits here.
        return this.commit(h.logPos, file);
      }
      case 'xid':
        return this.commit(h.logPos, file);
      case 'rows':
        return this.onRows(event.map, event.rowsKind, event.rows);
      case 'heartbeat':
        if (this.txn === null && h.logPos > 0 && event.file !== '') {
          log.advance(orderKey({ file: event.file, pos: h.logPos }) as Lsn);
          this.flush(false);
        }
        return;
      default:
        return;
    }
  }

  private commit(endPos: number, file: string): void {
    const txn = this.txn;
    this.txn = null;
    const log = this.o.log;
    const endLsn = orderKey({ file, pos: endPos }) as Lsn;
    if (!txn || txn.skip) {
      if (endLsn > log.head().endLsn) log.advance(endLsn);
      return;
    }
    log.commit(txn.lsn, endLsn, txn.commitMs);
    // Flush when caught up with the stream, when many changes wait, or every flushIntervalMs.
    this.flush(this.o.client.queued === 0 || log.buffered >= 20_000);
  }

  /** A TRUNCATE before any row event of the table: its column set as introspected. */
  private registerFromTypes(table: string): number {
    const info = this.o.tables.get(table)!;
    const names = info.columns.map((c) => c.name);
    return this.o.log.relationVersion(table, {
      names,
      typeOids: info.columns.map((c) => c.typeOid),
      keyIndexes: info.primaryKey.map((k) => names.indexOf(k)),
    });
  }

  private relation(map: TableMap): { table: string; version: number; key: readonly number[]; types: string[] } {
    const cached = this.versions.get(map.tableId);
    const table = `${map.database}.${map.table}`;
    if (cached && cached.table === table) return cached;
    if (!map.fullMetadata) {
      throw new SluiceError('WAL_LEVEL_NOT_LOGICAL', `source: row events of ${table} carry no column names: set binlog_row_metadata=FULL on the source`);
    }
    if (map.primaryKey.length === 0) throw new SluiceError('NO_PRIMARY_KEY', `source table ${table} has no primary key: sluice applies changes by key`);
    const known = this.o.tables.get(table);
    const columns: RelationColumns = {
      names: map.columns.map((c) => c.name as string),
      typeOids: map.columns.map((c) => c.realType),
      typeMods: map.columns.map((c) => c.length),
      keyIndexes: [...map.primaryKey],
    };
    const version = this.o.log.relationVersion(table, columns);
    this.lastVersion.set(table, version);
    const types = map.columns.map((c) => known?.columns.find((k) => k.name === c.name)?.typeSql ?? typeFromMap(c));
    const r = { table, version, key: map.primaryKey, types };
    this.versions.set(map.tableId, r);
    return r;
  }

  private onRows(map: TableMap, kind: 'insert' | 'update' | 'delete', rows: readonly RowChange[]): void {
    const txn = this.txn;
    const table = `${map.database}.${map.table}`;
    if (!txn || txn.skip || !this.o.tables.has(table)) return;
    if (txn.xa) {
      throw new SluiceError(
        'UNSUPPORTED_MODE',
        `source: an XA transaction changed ${table}: sluice does not capture XA transactions yet (their changes are logged at XA PREPARE and may still roll back); run writes to tracked tables outside XA`,
      );
    }
    const rel = this.relation(map);
    const text = (values: readonly (RowValue | undefined)[]): CapturedValue[] =>
      values.map((v, i) => {
        if (v === undefined) throw new SluiceError('WAL_LEVEL_NOT_LOGICAL', `source: a row event of ${table} lacks column ${map.columns[i].name}: set binlog_row_image=FULL on the source`);
        return postgresText(v, rel.types[i]);
      });
    const key = (row: CapturedValue[]) => rel.key.map((k) => row[k] as string | null);
    for (const r of rows) {
      const base = { table, lsn: txn.lsn, idx: txn.idx++, relationVersion: rel.version, commitTimeMs: txn.commitMs };
      if (kind === 'insert') this.o.log.append({ ...base, kind, row: text(r.after!) });
      else if (kind === 'delete') this.o.log.append({ ...base, kind, oldKey: key(text(r.before!)) });
      else {
        const after = text(r.after!);
        const oldKey = key(text(r.before!));
        const newKey = key(after);
        this.o.log.append({ ...base, kind, row: after, oldKey: oldKey.some((v, i) => v !== newKey[i]) ? oldKey : undefined });
      }
      this.captured++;
    }
  }
}
