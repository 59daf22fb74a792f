/**
 * Pure decoders for PostgreSQL's logical replication stream: the CopyData frames of
 * START_REPLICATION ('w' XLogData, 'k' keepalive), the standby status update ('r') we send back,
 * and the pgoutput plugin's protocol version 1 messages carried inside XLogData.
 * No I/O and no state: bytes in, plain objects out. It runs once per change, so it reads with
 * Buffer's native readers and slices strings with `toString('utf8', start, end)`.
 * PostgreSQL timestamps are int64 microseconds since 2000-01-01 00:00 UTC; commit times are
 * converted to epoch milliseconds (floor), send times are kept as raw PostgreSQL microseconds.
 */
import { tupleEnd } from '../../core/tuple-data.js';
import type { CapturedValue, Lsn } from '../../core/types.js';

/** Milliseconds from the Unix epoch to the PostgreSQL epoch, 2000-01-01 00:00 UTC. */
export const PG_EPOCH_MS = 946_684_800_000;
const PG_EPOCH_MS_BIG = 946_684_800_000n;

// ---------------------------------------------------------------------------------------------
// Replication stream frames (CopyData payloads of START_REPLICATION)
// ---------------------------------------------------------------------------------------------

export type ReplicationMessage =
  | {
      type: 'xlogdata';
      startLsn: Lsn;
      endLsn: Lsn;
      /** Server clock, microseconds since 2000-01-01 00:00 UTC. */
      sendTimeUs: bigint;
      /** The output plugin's message (a view into the frame, not a copy). */
      payload: Buffer;
    }
  | {
      type: 'keepalive';
      walEnd: Lsn;
      /** Server clock, microseconds since 2000-01-01 00:00 UTC. */
      sendTimeUs: bigint;
      replyRequested: boolean;
    };

/** Decodes one CopyData payload received after START_REPLICATION. */
export function decodeCopyData(buf: Buffer): ReplicationMessage {
  if (buf.length === 0) throw new Error('replication stream: empty CopyData message');
  const tag = buf[0];
  if (tag === 0x77 /* 'w' */) {
    if (buf.length < 25) throw new Error(`replication stream: XLogData too short (${buf.length} bytes)`);
    return {
      type: 'xlogdata',
      startLsn: buf.readBigUInt64BE(1) as Lsn,
      endLsn: buf.readBigUInt64BE(9) as Lsn,
      sendTimeUs: buf.readBigInt64BE(17),
      payload: buf.subarray(25),
    };
  }
  if (tag === 0x6b /* 'k' */) {
    if (buf.length < 18) throw new Error(`replication stream: keepalive too short (${buf.length} bytes)`);
    return {
      type: 'keepalive',
      walEnd: buf.readBigUInt64BE(1) as Lsn,
      sendTimeUs: buf.readBigInt64BE(9),
      replyRequested: buf[17] !== 0,
    };
  }
  throw new Error(`replication stream: unknown CopyData message tag ${describeTag(tag)}`);
}

/**
 * The standby status update ('r'): the written, flushed and applied LSNs, and the client clock
 * (`nowMs`, epoch milliseconds, converted to microseconds since 2000-01-01 00:00 UTC). 34 bytes.
 */
export function encodeStandbyStatus(
  write: Lsn,
  flush: Lsn,
  apply: Lsn,
  nowMs: number,
  replyRequested = false,
): Buffer {
  const buf = Buffer.allocUnsafe(34);
  buf[0] = 0x72; // 'r'
  buf.writeBigUInt64BE(write, 1);
  buf.writeBigUInt64BE(flush, 9);
  buf.writeBigUInt64BE(apply, 17);
  buf.writeBigInt64BE(epochMsToPgMicros(nowMs), 25);
  buf[33] = replyRequested ? 1 : 0;
  return buf;
}

/** Epoch milliseconds (possibly fractional) to PostgreSQL microseconds, exactly for whole ms. */
function epochMsToPgMicros(ms: number): bigint {
  const whole = Math.floor(ms);
  const fracUs = Math.round((ms - whole) * 1000);
  return (BigInt(whole) - PG_EPOCH_MS_BIG) * 1000n + BigInt(fracUs);
}

/** PostgreSQL microseconds to epoch milliseconds (floor). */
function pgMicrosToEpochMs(us: bigint): number {
  let ms = us / 1000n; // truncates toward zero
  if (us < 0n && ms * 1000n !== us) ms -= 1n;
  return Number(ms + PG_EPOCH_MS_BIG);
}

// ---------------------------------------------------------------------------------------------
// pgoutput protocol version 1
// ---------------------------------------------------------------------------------------------

export type ReplicaIdentity = 'd' | 'n' | 'f' | 'i';

export interface RelationColumn {
  name: string;
  typeOid: number;
  typeMod: number;
  /** Part of the replica identity (flag bit 1). */
  isKey: boolean;
}

export interface BeginMessage {
  type: 'begin';
  /** LSN of the transaction's commit record. */
  finalLsn: Lsn;
  commitTimeMs: number;
  xid: number;
}

export interface CommitMessage {
  type: 'commit';
  flags: number;
  commitLsn: Lsn;
  /** End of the commit record: the position to confirm once the transaction is durable. */
  endLsn: Lsn;
  commitTimeMs: number;
}

export interface OriginMessage {
  type: 'origin';
  lsn: Lsn;
  name: string;
}

export interface RelationMessage {
  type: 'relation';
  relationId: number;
  /** Namespace; pgoutput sends '' for pg_catalog, which is reported as 'pg_catalog'. */
  schema: string;
  name: string;
  replicaIdentity: ReplicaIdentity;
  columns: RelationColumn[];
}

export interface TypeMessage {
  type: 'type';
  typeOid: number;
  /** Namespace; pgoutput sends '' for pg_catalog, which is reported as 'pg_catalog'. */
  schema: string;
  name: string;
}

export interface InsertMessage {
  type: 'insert';
  relationId: number;
  newTuple: CapturedValue[];
}

export interface UpdateMessage {
  type: 'update';
  relationId: number;
  /** Present when the update changed the replica identity ('K': key columns; others null). */
  oldKey?: CapturedValue[];
  /** Present with REPLICA IDENTITY FULL ('O': the whole old row). */
  oldRow?: CapturedValue[];
  newTuple: CapturedValue[];
}

export interface DeleteMessage {
  type: 'delete';
  relationId: number;
  /** 'K': key columns; others null. */
  oldKey?: CapturedValue[];
  /** 'O' (REPLICA IDENTITY FULL): the whole old row. */
  oldRow?: CapturedValue[];
}

export interface TruncateMessage {
  type: 'truncate';
  cascade: boolean;
  restartIdentity: boolean;
  relationIds: number[];
}

export interface LogicalMessage {
  type: 'message';
  transactional: boolean;
  lsn: Lsn;
  prefix: string;
  /** A view into the payload, not a copy. */
  content: Buffer;
}

export type PgoutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage;

/** A read position in one message. Buffer's readers throw RangeError past the end. */
class Cursor {
  pos: number;
  constructor(
    readonly buf: Buffer,
    pos: number,
  ) {
    this.pos = pos;
  }

  u8(): number {
    const pos = this.pos;
    if (pos >= this.buf.length) throw truncated(this.buf);
    this.pos = pos + 1;
    return this.buf[pos];
  }

  i16(): number {
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  i32(): number {
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u32(): number {
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  lsn(): Lsn {
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v as Lsn;
  }

  i64(): bigint {
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A NUL-terminated UTF-8 string. */
  cstr(): string {
    const buf = this.buf;
    const start = this.pos;
    const end = buf.indexOf(0, start);
    if (end < 0) throw new Error(`pgoutput: unterminated string at offset ${start}`);
    this.pos = end + 1;
    return end === start ? '' : buf.toString('utf8', start, end);
  }

  /** `n` raw bytes, as a view. */
  bytes(n: number): Buffer {
    const start = this.pos;
    const end = start + n;
    if (n < 0 || end > this.buf.length) throw truncated(this.buf);
    this.pos = end;
    return this.buf.subarray(start, end);
  }
}

function truncated(buf: Buffer): Error {
  return new Error(`pgoutput: message ${describeTag(buf[0])} truncated (${buf.length} bytes)`);
}

function describeTag(tag: number | undefined): string {
  if (tag === undefined) return '(none)';
  const hex = `0x${tag.toString(16).padStart(2, '0')}`;
  return tag >= 0x20 && tag < 0x7f ? `'${String.fromCharCode(tag)}' (${hex})` : hex;
}

/**
 * Decodes one pgoutput (protocol version 1) message: the payload of an XLogData frame.
 * Throws on an unknown tag, a truncated message or trailing bytes.
 */
export function decodePgoutput(payload: Buffer): PgoutputMessage {
  if (payload.length === 0) throw new Error('pgoutput: empty message');
  const c = new Cursor(payload, 1);
  let msg: PgoutputMessage;
  switch (payload[0]) {
    case 0x49 /* 'I' */:
      msg = decodeInsert(c);
      break;
    case 0x55 /* 'U' */:
      msg = decodeUpdate(c);
      break;
    case 0x44 /* 'D' */:
      msg = decodeDelete(c);
      break;
    case 0x42 /* 'B' */: {
      const finalLsn = c.lsn();
      const commitTimeMs = pgMicrosToEpochMs(c.i64());
      msg = { type: 'begin', finalLsn, commitTimeMs, xid: c.u32() };
      break;
    }
    case 0x43 /* 'C' */: {
      const flags = c.u8();
      const commitLsn = c.lsn();
      const endLsn = c.lsn();
      msg = { type: 'commit', flags, commitLsn, endLsn, commitTimeMs: pgMicrosToEpochMs(c.i64()) };
      break;
    }
    case 0x52 /* 'R' */:
      msg = decodeRelation(c);
      break;
    case 0x59 /* 'Y' */: {
      const typeOid = c.u32();
      const schema = c.cstr() || 'pg_catalog';
      msg = { type: 'type', typeOid, schema, name: c.cstr() };
      break;
    }
    case 0x4f /* 'O' */: {
      const lsn = c.lsn();
      msg = { type: 'origin', lsn, name: c.cstr() };
      break;
    }
    case 0x54 /* 'T' */: {
      const n = c.u32();
      const options = c.u8();
      const relationIds = new Array<number>(n);
      for (let i = 0; i < n; i++) relationIds[i] = c.u32();
      msg = {
        type: 'truncate',
        cascade: (options & 1) !== 0,
        restartIdentity: (options & 2) !== 0,
        relationIds,
      };
      break;
    }
    case 0x4d /* 'M' */: {
      const transactional = (c.u8() & 1) !== 0;
      const lsn = c.lsn();
      const prefix = c.cstr();
      const content = c.bytes(c.i32());
      msg = { type: 'message', transactional, lsn, prefix, content };
      break;
    }
    default:
      throw new Error(
        `pgoutput: unknown message tag ${describeTag(payload[0])} (only protocol version 1 is supported)`,
      );
  }
  if (c.pos !== payload.length) {
    throw new Error(
      `pgoutput: ${payload.length - c.pos} unexpected trailing bytes after message ${describeTag(payload[0])}`,
    );
  }
  return msg;
}

function decodeRelation(c: Cursor): RelationMessage {
  const relationId = c.u32();
  const schema = c.cstr() || 'pg_catalog';
  const name = c.cstr();
  const ri = c.u8();
  if (ri !== 0x64 && ri !== 0x6e && ri !== 0x66 && ri !== 0x69) {
    throw new Error(`pgoutput: relation ${schema}.${name}: unknown replica identity ${describeTag(ri)}`);
  }
  const n = c.i16();
  const columns = new Array<RelationColumn>(n);
  for (let i = 0; i < n; i++) {
    const flags = c.u8();
    const colName = c.cstr();
    const typeOid = c.u32();
    const typeMod = c.i32();
    columns[i] = { name: colName, typeOid, typeMod, isKey: (flags & 1) !== 0 };
  }
  return {
    type: 'relation',
    relationId,
    schema,
    name,
    replicaIdentity: String.fromCharCode(ri) as ReplicaIdentity,
    columns,
  };
}

function decodeInsert(c: Cursor): InsertMessage {
  const relationId = c.u32();
  const kind = c.u8();
  if (kind !== 0x4e /* 'N' */) throw badTupleKind('insert', kind);
  return { type: 'insert', relationId, newTuple: readTuple(c) };
}

function decodeUpdate(c: Cursor): UpdateMessage {
  const relationId = c.u32();
  let kind = c.u8();
  let oldKey: CapturedValue[] | undefined;
  let oldRow: CapturedValue[] | undefined;
  if (kind === 0x4b /* 'K' */) {
    oldKey = readTuple(c);
    kind = c.u8();
  } else if (kind === 0x4f /* 'O' */) {
    oldRow = readTuple(c);
    kind = c.u8();
  }
  if (kind !== 0x4e /* 'N' */) throw badTupleKind('update', kind);
  const msg: UpdateMessage = { type: 'update', relationId, newTuple: readTuple(c) };
  if (oldKey !== undefined) msg.oldKey = oldKey;
  if (oldRow !== undefined) msg.oldRow = oldRow;
  return msg;
}

function decodeDelete(c: Cursor): DeleteMessage {
  const relationId = c.u32();
  const kind = c.u8();
  if (kind === 0x4b /* 'K' */) return { type: 'delete', relationId, oldKey: readTuple(c) };
  if (kind === 0x4f /* 'O' */) return { type: 'delete', relationId, oldRow: readTuple(c) };
  throw badTupleKind('delete', kind);
}

function badTupleKind(what: string, kind: number): Error {
  return new Error(`pgoutput: ${what}: unexpected tuple marker ${describeTag(kind)}`);
}

/**
 * TupleData: int16 column count, then per column 'n' (null → null), 'u' (unchanged TOASTed
 * value → false), 't' (int32 length + UTF-8 text → string) or 'b' (int32 length + binary bytes →
 * '\\x' + hex, the bytea text form; sluice requests text format, so 'b' should not occur).
 */
function readTuple(c: Cursor): CapturedValue[] {
  const buf = c.buf;
  const n = c.i16();
  const values = new Array<CapturedValue>(n);
  for (let i = 0; i < n; i++) {
    const kind = c.u8();
    if (kind === 0x74 /* 't' */) {
      const len = c.i32();
      const start = c.pos;
      const end = start + len;
      if (len < 0 || end > buf.length) throw truncated(buf);
      values[i] = len === 0 ? '' : buf.toString('utf8', start, end);
      c.pos = end;
    } else if (kind === 0x6e /* 'n' */) {
      values[i] = null;
    } else if (kind === 0x75 /* 'u' */) {
      values[i] = false;
    } else if (kind === 0x62 /* 'b' */) {
      values[i] = '\\x' + c.bytes(c.i32()).toString('hex');
    } else {
      throw new Error(`pgoutput: unknown tuple column kind ${describeTag(kind)} at column ${i}`);
    }
  }
  return values;
}

// ---------------------------------------------------------------------------------------------
// Row changes with their tuples left as bytes (capture stores them as they are: log format 3)
// ---------------------------------------------------------------------------------------------

/** A row change whose tuples are views of the message's TupleData (valid only during the callback). */
export interface RawInsertMessage {
  type: 'insert';
  relationId: number;
  newTuple: Buffer;
}

export interface RawUpdateMessage {
  type: 'update';
  relationId: number;
  oldKey?: Buffer;
  oldRow?: Buffer;
  newTuple: Buffer;
}

export interface RawDeleteMessage {
  type: 'delete';
  relationId: number;
  oldKey?: Buffer;
  oldRow?: Buffer;
}

export type PgoutputRawMessage =
  | Exclude<PgoutputMessage, InsertMessage | UpdateMessage | DeleteMessage>
  | RawInsertMessage
  | RawUpdateMessage
  | RawDeleteMessage;

/**
 * Like decodePgoutput, but an insert, update or delete keeps its tuples as views of the payload
 * (checked for structure, not turned into strings). Other messages are decoded as by decodePgoutput.
 */
export function decodePgoutputRaw(payload: Buffer): PgoutputRawMessage {
  const tag = payload[0];
  if (tag !== 0x49 && tag !== 0x55 && tag !== 0x44) return decodePgoutput(payload) as PgoutputRawMessage;
  if (payload.length < 6) throw truncated(payload);
  const relationId = payload.readUInt32BE(1);
  let pos = 5;
  const tuple = (): Buffer => {
    const start = pos;
    pos = tupleEnd(payload, start);
    return payload.subarray(start, pos);
  };
  const marker = (): number => {
    if (pos >= payload.length) throw truncated(payload);
    return payload[pos++];
  };
  let msg: PgoutputRawMessage;
  if (tag === 0x49 /* 'I' */) {
    const kind = marker();
    if (kind !== 0x4e) throw badTupleKind('insert', kind);
    msg = { type: 'insert', relationId, newTuple: tuple() };
  } else if (tag === 0x55 /* 'U' */) {
    let kind = marker();
    let oldKey: Buffer | undefined;
    let oldRow: Buffer | undefined;
    if (kind === 0x4b) {
      oldKey = tuple();
      kind = marker();
    } else if (kind === 0x4f) {
      oldRow = tuple();
      kind = marker();
    }
    if (kind !== 0x4e) throw badTupleKind('update', kind);
    const m: RawUpdateMessage = { type: 'update', relationId, newTuple: tuple() };
    if (oldKey !== undefined) m.oldKey = oldKey;
    if (oldRow !== undefined) m.oldRow = oldRow;
    msg = m;
  } else {
    const kind = marker();
    if (kind === 0x4b) msg = { type: 'delete', relationId, oldKey: tuple() };
    else if (kind === 0x4f) msg = { type: 'delete', relationId, oldRow: tuple() };
    else throw badTupleKind('delete', kind);
  }
  if (pos !== payload.length) {
    throw new Error(`pgoutput: ${payload.length - pos} unexpected trailing bytes after message ${describeTag(tag)}`);
  }
  return msg;
}
