/**
 * pgoutput's TupleData, which is also how the change log stores a row (log format 3): int16 column
 * count, then per column 'n' (null), 'u' (unchanged TOASTed value), 't' + int32 length + UTF-8 text,
 * or 'b' + int32 length + bytes. Capture stores the bytes the source sent without turning them into
 * strings; the Applier decodes them once, here, into CapturedValue[] (null, false for 'u', text;
 * 'b' as '\\x' + hex, bytea's text form — sluice asks for text, so 'b' should not occur).
 */
import type { CapturedValue } from './types.js';

const T = 0x74; // 't'
const N = 0x6e; // 'n'
const U = 0x75; // 'u'
const B = 0x62; // 'b'

function truncated(what: string): Error {
  return new Error(`${what}: tuple data truncated`);
}

/** The offset just past the TupleData that starts at `pos`. Throws on a malformed or truncated tuple. */
export function tupleEnd(buf: Buffer, pos: number, what = 'pgoutput'): number {
  if (pos + 2 > buf.length) throw truncated(what);
  const n = buf.readInt16BE(pos);
  let p = pos + 2;
  for (let i = 0; i < n; i++) {
    if (p >= buf.length) throw truncated(what);
    const kind = buf[p++];
    if (kind === T || kind === B) {
      if (p + 4 > buf.length) throw truncated(what);
      const len = buf.readInt32BE(p);
      p += 4 + len;
      if (len < 0 || p > buf.length) throw truncated(what);
    } else if (kind !== N && kind !== U) {
      throw new Error(`${what}: unknown tuple column kind 0x${kind.toString(16).padStart(2, '0')} at column ${i}`);
    }
  }
  return p;
}

/**
 * The values of a TupleData at `pos` (the whole buffer by default). With `only`, the values of
 * those column indexes, in that order; other columns are skipped without being decoded.
 */
export function decodeTuple(buf: Buffer, pos = 0, only?: readonly number[]): CapturedValue[] {
  const n = buf.readInt16BE(pos);
  let p = pos + 2;
  const all = only === undefined;
  const values = new Array<CapturedValue>(all ? n : only.length);
  const want = all ? null : new Map(only.map((c, j) => [c, j] as const));
  for (let i = 0; i < n; i++) {
    const kind = buf[p++];
    const at = all ? i : want!.get(i);
    if (kind === T || kind === B) {
      const len = buf.readInt32BE(p);
      p += 4;
      const end = p + len;
      if (len < 0 || end > buf.length) throw truncated('change log');
      if (at !== undefined) values[at] = kind === B ? '\\x' + buf.toString('hex', p, end) : len === 0 ? '' : buf.toString('utf8', p, end);
      p = end;
    } else if (kind === N) {
      if (at !== undefined) values[at] = null;
    } else if (kind === U) {
      if (at !== undefined) values[at] = false;
    } else {
      throw new Error(`change log: unknown tuple column kind ${kind} at column ${i}`);
    }
  }
  return values;
}

/** TupleData for values (null → 'n', false → 'u', text → 't'). */
export function encodeTuple(values: readonly CapturedValue[]): Buffer {
  let size = 2;
  for (const v of values) size += typeof v === 'string' ? 5 + Buffer.byteLength(v) : 1;
  const buf = Buffer.allocUnsafe(size);
  buf.writeInt16BE(values.length, 0);
  let p = 2;
  for (const v of values) {
    if (v === null) buf[p++] = N;
    else if (v === false) buf[p++] = U;
    else {
      buf[p] = T;
      const len = buf.write(v, p + 5, 'utf8');
      buf.writeInt32BE(len, p + 1);
      p += 5 + len;
    }
  }
  return buf;
}
