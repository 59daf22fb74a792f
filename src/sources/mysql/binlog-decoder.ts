/**
 * The binlog decoder: one event's bytes in (common header, body, CRC32), one typed event out
 * (binlog-events.ts). Pure and synchronous; it keeps the state the format needs between events:
 * the FORMAT_DESCRIPTION (post-header lengths, whether events carry a checksum) and the TABLE_MAPs
 * of the current statement, so that row events decode with the metadata of their own time.
 * Checksums are verified; a compressed event is refused (sluice cannot decode it: turn
 * log_bin_compress off). Works on MariaDB's events and on the ones MySQL shares with it.
 */
import { ByteReader } from './byte-reader.js';
import { crc32 } from './checksum.js';
import { EventType, type BinlogEvent, type EventHeader, type Gtid, type RowChange, type RowsKind } from './binlog-events.js';
import { readValue, type RowValue } from './row-values.js';
import { decodeTableMap, type TableMap } from './table-map.js';

export const HEADER_SIZE = 19;
const CHECKSUM_SIZE = 4;
const CHECKSUM_CRC32 = 1;
const STMT_END_F = 1;
const GTID_FL_STANDALONE = 1;
const GTID_FL_GROUP_COMMIT_ID = 2;
const GTID_FL_PREPARED_XA = 64;
const GTID_FL_COMPLETED_XA = 128;

export class BinlogFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BinlogFormatError';
  }
}

const ROWS: ReadonlyMap<number, { kind: RowsKind; version: 1 | 2 }> = new Map([
  [EventType.WRITE_ROWS_V1, { kind: 'insert', version: 1 }],
  [EventType.UPDATE_ROWS_V1, { kind: 'update', version: 1 }],
  [EventType.DELETE_ROWS_V1, { kind: 'delete', version: 1 }],
  [EventType.WRITE_ROWS_V2, { kind: 'insert', version: 2 }],
  [EventType.UPDATE_ROWS_V2, { kind: 'update', version: 2 }],
  [EventType.DELETE_ROWS_V2, { kind: 'delete', version: 2 }],
] as const);

const REFUSED: ReadonlyMap<number, string> = new Map([
  [EventType.QUERY_COMPRESSED, 'a compressed QUERY event: set log_bin_compress=OFF on the source'],
  [EventType.WRITE_ROWS_COMPRESSED, 'a compressed rows event: set log_bin_compress=OFF on the source'],
  [EventType.UPDATE_ROWS_COMPRESSED, 'a compressed rows event: set log_bin_compress=OFF on the source'],
  [EventType.DELETE_ROWS_COMPRESSED, 'a compressed rows event: set log_bin_compress=OFF on the source'],
  [EventType.WRITE_ROWS_COMPRESSED_V1, 'a compressed rows event: set log_bin_compress=OFF on the source'],
  [EventType.UPDATE_ROWS_COMPRESSED_V1, 'a compressed rows event: set log_bin_compress=OFF on the source'],
  [EventType.DELETE_ROWS_COMPRESSED_V1, 'a compressed rows event: set log_bin_compress=OFF on the source'],
  [EventType.TRANSACTION_PAYLOAD_MYSQL, 'a compressed transaction: set binlog_transaction_compression=OFF on the source'],
  [EventType.START_ENCRYPTION, 'an encrypted binlog (sluice reads the binlog as the server sends it; encryption at rest is fine, this event should not be sent)'],
]);

export function readHeader(buf: Buffer): EventHeader {
  if (buf.length < HEADER_SIZE) throw new BinlogFormatError(`binlog event of ${buf.length} bytes is shorter than its header`);
  return {
    timestamp: buf.readUInt32LE(0),
    type: buf[4],
    serverId: buf.readUInt32LE(5),
    size: buf.readUInt32LE(9),
    logPos: buf.readUInt32LE(13),
    flags: buf.readUInt16LE(17),
  };
}

export interface BinlogDecoderOptions {
  /** Collation id → charset name from the server (INFORMATION_SCHEMA.COLLATIONS), for ids the decoder does not know. */
  readonly collations?: ReadonlyMap<number, string>;
}

export class BinlogDecoder {
  /** Post-header length by event type (from FORMAT_DESCRIPTION). */
  private postHeader: number[] = [];
  /** Whether events end with a CRC32; null until known. */
  private checksum: boolean | null = null;
  private readonly maps = new Map<number, TableMap>();

  constructor(private readonly options: BinlogDecoderOptions = {}) {}

  /** Decodes one event (header, body and checksum, without the dump protocol's leading OK byte). */
  decode(buf: Buffer): BinlogEvent {
    const header = readHeader(buf);
    if (header.size !== buf.length) throw new BinlogFormatError(`binlog event size ${header.size} in its header, ${buf.length} bytes received`);
    if (header.type === EventType.FORMAT_DESCRIPTION) return this.formatDescription(header, buf);
    let end = buf.length;
    const checksummed = this.checksum ?? (buf.length >= HEADER_SIZE + CHECKSUM_SIZE && crc32(buf, 0, end - CHECKSUM_SIZE) === buf.readUInt32LE(end - CHECKSUM_SIZE));
    if (checksummed) {
      end -= CHECKSUM_SIZE;
      this.verify(header, buf);
    }
    const r = new ByteReader(buf, HEADER_SIZE, end);
    return this.body(header, r);
  }

  private verify(header: EventHeader, buf: Buffer): void {
    const want = buf.readUInt32LE(buf.length - CHECKSUM_SIZE);
    const got = crc32(buf, 0, buf.length - CHECKSUM_SIZE);
    if (want !== got) {
      throw new BinlogFormatError(
        `binlog event of type ${header.type} ending at position ${header.logPos} failed its CRC32 check (logged 0x${want.toString(16)}, computed 0x${got.toString(16)}): the stream is corrupt`,
      );
    }
  }

  private formatDescription(header: EventHeader, buf: Buffer): BinlogEvent {
    const r = new ByteReader(buf, HEADER_SIZE);
    const binlogVersion = r.u16();
    const serverVersion = r.bytes(50).toString('latin1').replace(/\0.*$/s, '');
    r.skip(4);
    const headerLength = r.u8();
    if (headerLength !== HEADER_SIZE) throw new BinlogFormatError(`binlog common header of ${headerLength} bytes (sluice reads binlog version 4, 19 bytes)`);
    // Servers since MySQL 5.6.1 / MariaDB 5.3 end the FDE with the checksum algorithm (1 byte) and a CRC32.
    const algorithm = buf[buf.length - CHECKSUM_SIZE - 1];
    this.checksum = algorithm === CHECKSUM_CRC32;
    if (this.checksum) this.verify(header, buf);
    const lengthsEnd = buf.length - CHECKSUM_SIZE - 1;
    this.postHeader = [0, ...r.buf.subarray(r.pos, lengthsEnd)];
    this.maps.clear();
    return { header, kind: 'format-description', binlogVersion, serverVersion, checksum: this.checksum };
  }

  private body(header: EventHeader, r: ByteReader): BinlogEvent {
    const type = header.type;
    const refused = REFUSED.get(type);
    if (refused) throw new BinlogFormatError(`sluice cannot read ${refused}`);
    const rows = ROWS.get(type);
    if (rows) return this.rows(header, r, rows.kind, rows.version);
    switch (type) {
      case EventType.ROTATE: {
        const position = r.u64();
        return { header, kind: 'rotate', position, file: r.rest().toString('utf8') };
      }
      case EventType.QUERY: {
        const threadId = r.u32();
        r.skip(4); // exec time
        const dbLength = r.u8();
        const errorCode = r.u16();
        const statusLength = r.u16();
        r.skip(this.postHeaderLength(type, 13) - 13 + statusLength);
        const database = r.bytes(dbLength).toString('utf8');
        r.skip(1);
        return { header, kind: 'query', database, sql: r.rest().toString('utf8'), errorCode, threadId };
      }
      case EventType.XID:
        return { header, kind: 'xid', xid: r.u64() };
      case EventType.TABLE_MAP: {
        const map = decodeTableMap(r, this.postHeaderLength(type, 8) === 6 ? 4 : 6, this.options.collations);
        this.maps.set(map.tableId, map);
        return { header, kind: 'table-map', map };
      }
      case EventType.GTID: {
        const seq = r.u64();
        const domain = r.u32();
        const flags = r.u8();
        const commitId = flags & GTID_FL_GROUP_COMMIT_ID ? r.u64() : null;
        const xa = flags & GTID_FL_PREPARED_XA ? 'prepared' : flags & GTID_FL_COMPLETED_XA ? 'completed' : null;
        return { header, kind: 'gtid', gtid: { domain, server: header.serverId, seq }, standalone: (flags & GTID_FL_STANDALONE) !== 0, commitId, xa };
      }
      case EventType.GTID_LIST: {
        const count = r.u32() & 0x0fffffff;
        const gtids: Gtid[] = [];
        for (let i = 0; i < count; i++) {
          const domain = r.u32();
          const server = r.u32();
          gtids.push({ domain, server, seq: r.u64() });
        }
        return { header, kind: 'gtid-list', gtids };
      }
      case EventType.BINLOG_CHECKPOINT:
        return { header, kind: 'binlog-checkpoint', file: r.bytes(r.u32()).toString('utf8') };
      case EventType.ANNOTATE_ROWS:
        return { header, kind: 'annotate-rows', sql: r.rest().toString('utf8') };
      case EventType.HEARTBEAT:
      case EventType.HEARTBEAT_V2:
        return { header, kind: 'heartbeat', file: type === EventType.HEARTBEAT ? r.rest().toString('utf8') : '' };
      case EventType.STOP:
        return { header, kind: 'stop' };
      default:
        return { header, kind: 'other', type };
    }
  }

  private postHeaderLength(type: number, fallback: number): number {
    return this.postHeader[type] ?? fallback;
  }

  private rows(header: EventHeader, r: ByteReader, rowsKind: RowsKind, version: 1 | 2): BinlogEvent {
    const tableId = this.postHeaderLength(header.type, version === 2 ? 10 : 8) === 6 ? r.u32() : r.u48();
    const flags = r.u16();
    if (version === 2) r.skip(r.u16() - 2); // extra data, its length counts its own 2 bytes
    const map = this.maps.get(tableId);
    if (!map) throw new BinlogFormatError(`rows event for table id ${tableId} without a TABLE_MAP before it`);
    const count = r.lenenc();
    if (count !== map.columns.length) {
      throw new BinlogFormatError(`rows event for ${map.database}.${map.table} has ${count} columns, its TABLE_MAP ${map.columns.length}`);
    }
    const present = r.bitmap(count);
    const presentAfter = rowsKind === 'update' ? r.bitmap(count) : present;
    const out: RowChange[] = [];
    while (r.remaining > 0) {
      if (rowsKind === 'insert') out.push({ after: this.row(r, map, present) });
      else if (rowsKind === 'delete') out.push({ before: this.row(r, map, present) });
      else out.push({ before: this.row(r, map, present), after: this.row(r, map, presentAfter) });
    }
    const statementEnd = (flags & STMT_END_F) !== 0;
    if (statementEnd) this.maps.clear();
    return { header, kind: 'rows', rowsKind, version, map, statementEnd, rows: out };
  }

  private row(r: ByteReader, map: TableMap, present: readonly boolean[]): (RowValue | undefined)[] {
    const n = present.filter(Boolean).length;
    const nulls = r.bitmap(n);
    const values: (RowValue | undefined)[] = [];
    let k = 0;
    for (let i = 0; i < map.columns.length; i++) {
      if (!present[i]) {
        values.push(undefined);
        continue;
      }
      values.push(nulls[k++] ? null : readValue(r, map.columns[i]));
    }
    return values;
  }
}

/** Splits a binlog file's bytes (after its 4-byte magic) into events: for fixtures and tools. */
export function splitBinlogFile(file: Buffer): Buffer[] {
  if (file.readUInt32BE(0) !== 0xfe62696e) throw new BinlogFormatError('not a binlog file (no \\xfebin magic)');
  const out: Buffer[] = [];
  let p = 4;
  while (p + HEADER_SIZE <= file.length) {
    const size = file.readUInt32LE(p + 9);
    out.push(file.subarray(p, p + size));
    p += size;
  }
  return out;
}
