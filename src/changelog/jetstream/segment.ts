/**
 * The layout of the JetStream change log: names of the stream and subjects, and the bytes of a
 * segment (one message: changes of one table from one flush, in position order). Pure.
 *
 * Subjects under `sluice.<pipeline>`:
 * - `.chg.<schema>.<table>` (each part escaped, see `tableToken`): segments. Headers: `Sluice-Last`
 *   (the last change's position, `<lsn>:<idx>` in decimal), `Sluice-Count` (changes in the segment)
 *   and `Sluice-Total` (changes of that table ever appended, this segment included), from which
 *   `count` and `purge` compute how many changes a range holds without reading it.
 * - `.rel`: one message per relation version (JSON `{ version, table, columns }`).
 * - `.head`: the durable head, published last in every flush (JSON `{ lsn, endLsn, commitTimeMs,
 *   totals }`, LSNs in decimal, `totals` each table's Sluice-Total at that head). Everything stored
 *   after the last head message was never acknowledged.
 *
 * A segment's body is its changes one after another, little-endian: lsn u64, idx u32, kind u8,
 * relation version u32, commit time f64 (ms), row length i32 (-1: none) and the row as pgoutput
 * TupleData (src/core/tuple-data.ts), old key length i32 (-1: none) and the old key as JSON.
 */
import { decodeTuple } from '../../core/tuple-data.js';
import { Lsn, type Change, type ChangeKind, type Position } from '../../core/types.js';

export const HEADER_LAST = 'Sluice-Last';
export const HEADER_COUNT = 'Sluice-Count';
export const HEADER_TOTAL = 'Sluice-Total';

const KIND_CODE: Record<ChangeKind, number> = { insert: 1, update: 2, delete: 3, truncate: 4 };
const CODE_KIND: ChangeKind[] = ['insert', 'insert', 'update', 'delete', 'truncate'];

/** Stream and subject names of a pipeline's log. */
export interface LogNames {
  readonly stream: string;
  readonly prefix: string;
  readonly head: string;
  readonly rel: string;
}

export function logNames(pipeline: string, stream?: string): LogNames {
  const prefix = `sluice.${pipeline}`;
  return { stream: stream ?? `SLUICE_${pipeline}`, prefix, head: `${prefix}.head`, rel: `${prefix}.rel` };
}

/** One subject token per name part: characters a subject cannot hold (., *, >, whitespace, %) as %XX of their UTF-8 bytes. */
function escapeToken(part: string): string {
  return part.replace(/[^A-Za-z0-9_\-$]/gu, (ch) =>
    [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}

/** The subject of a qualified table's segments: `<prefix>.chg.<schema>.<table>`. */
export function tableSubject(names: LogNames, table: string): string {
  const dot = table.indexOf('.');
  const schema = dot < 0 ? 'public' : table.slice(0, dot);
  const name = dot < 0 ? table : table.slice(dot + 1);
  return `${names.prefix}.chg.${escapeToken(schema)}.${escapeToken(name)}`;
}

export function formatPosition(p: Position): string {
  return `${p.lsn}:${p.idx}`;
}

export function parsePosition(text: string): Position {
  const i = text.indexOf(':');
  return { lsn: Lsn.of(BigInt(text.slice(0, i))), idx: Number(text.slice(i + 1)) };
}

/** A change ready to be written: its row already as TupleData. */
export interface SegmentChange {
  readonly lsn: Lsn;
  readonly idx: number;
  readonly kind: ChangeKind;
  readonly relationVersion: number;
  readonly commitTimeMs: number;
  readonly row: Buffer | null;
  readonly oldKey: Buffer | null;
}

/** Bytes of one change in a segment. */
export function changeBytes(c: SegmentChange): number {
  return 8 + 4 + 1 + 4 + 8 + 4 + (c.row?.length ?? 0) + 4 + (c.oldKey?.length ?? 0);
}

export function encodeSegment(changes: readonly SegmentChange[]): Uint8Array {
  let size = 0;
  for (const c of changes) size += changeBytes(c);
  const buf = Buffer.allocUnsafe(size);
  let at = 0;
  for (const c of changes) {
    buf.writeBigUInt64LE(c.lsn, at);
    buf.writeUInt32LE(c.idx, at + 8);
    buf.writeUInt8(KIND_CODE[c.kind], at + 12);
    buf.writeUInt32LE(c.relationVersion, at + 13);
    buf.writeDoubleLE(c.commitTimeMs, at + 17);
    at += 25;
    at = writeBytes(buf, at, c.row);
    at = writeBytes(buf, at, c.oldKey);
  }
  return buf;
}

function writeBytes(buf: Buffer, at: number, bytes: Buffer | null): number {
  buf.writeInt32LE(bytes ? bytes.length : -1, at);
  if (!bytes) return at + 4;
  bytes.copy(buf, at + 4);
  return at + 4 + bytes.length;
}

export function decodeSegment(table: string, data: Uint8Array): Change[] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out: Change[] = [];
  let at = 0;
  while (at < buf.length) {
    const lsn = Lsn.of(buf.readBigUInt64LE(at));
    const idx = buf.readUInt32LE(at + 8);
    const kind = CODE_KIND[buf.readUInt8(at + 12)];
    const relationVersion = buf.readUInt32LE(at + 13);
    const commitTimeMs = buf.readDoubleLE(at + 17);
    at += 25;
    const rowLen = buf.readInt32LE(at);
    at += 4;
    const row = rowLen < 0 ? undefined : decodeTuple(buf.subarray(at, at + rowLen));
    at += Math.max(rowLen, 0);
    const keyLen = buf.readInt32LE(at);
    at += 4;
    const oldKey = keyLen < 0 ? undefined : (JSON.parse(buf.toString('utf8', at, at + keyLen)) as (string | null)[]);
    at += Math.max(keyLen, 0);
    out.push({ position: { lsn, idx }, table, kind, relationVersion, row, oldKey, commitTimeMs });
  }
  return out;
}

/** A message to publish. */
export interface Outgoing {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers?: Record<string, string>;
}

/**
 * The segments of a flush's committed changes: one per table, cut at `maxBytes`, each table's in
 * position order, with their headers. `totals` (each table's changes ever appended) moves on.
 */
export function buildSegments(
  names: LogNames,
  committed: readonly { readonly table: string; readonly change: SegmentChange }[],
  totals: Map<string, number>,
  maxBytes: number,
): Outgoing[] {
  const out: Outgoing[] = [];
  const open = new Map<string, { changes: SegmentChange[]; bytes: number }>();
  const close = (table: string) => {
    const s = open.get(table);
    if (!s || s.changes.length === 0) return;
    open.delete(table);
    const total = (totals.get(table) ?? 0) + s.changes.length;
    totals.set(table, total);
    const last = s.changes[s.changes.length - 1];
    out.push({
      subject: tableSubject(names, table),
      data: encodeSegment(s.changes),
      headers: { [HEADER_LAST]: formatPosition({ lsn: last.lsn, idx: last.idx }), [HEADER_COUNT]: String(s.changes.length), [HEADER_TOTAL]: String(total) },
    });
  };
  for (const { table, change } of committed) {
    let s = open.get(table);
    const bytes = changeBytes(change);
    if (s && s.bytes + bytes > maxBytes) {
      close(table);
      s = undefined;
    }
    if (!s) open.set(table, (s = { changes: [], bytes: 0 }));
    s.changes.push(change);
    s.bytes += bytes;
  }
  for (const t of [...open.keys()]) close(t);
  return out;
}
