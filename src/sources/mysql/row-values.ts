/**
 * One column value of a row event, decoded losslessly from its binary form:
 * - integers: number up to 32 bits; BIGINT as bigint (so unsigned values past 2^63 stay exact);
 * - DECIMAL: the exact decimal string with all `scale` digits (DECIMAL(65,30) included);
 * - FLOAT/DOUBLE: number (FLOAT widened from float32, as the server stores it);
 * - DATE, DATETIME, TIMESTAMP (UTC), TIME: the server's text form, fractions to the column's fsp,
 *   zero dates as `0000-00-00`; YEAR: number (0 for the zero year);
 * - text: string in its column's charset; binary strings and blobs: Buffer (BINARY(n) padded back to n);
 * - BIT: string of '0'/'1' of the column's length; ENUM: the label; SET: labels joined by ',';
 * - GEOMETRY: Buffer (SRID + WKB); MySQL binary JSON: refused (MariaDB's JSON is LONGTEXT).
 * No I/O.
 */
import type { ByteReader } from './byte-reader.js';
import { decodeText } from './charsets.js';
import { ColumnType, columnTypeName } from './column-types.js';
import type { MappedColumn } from './table-map.js';

export type RowValue = null | number | bigint | string | Buffer;

const pad = (n: number | bigint, width: number) => String(n).padStart(width, '0');

/** The fraction digits of a packed temporal value: `fsp` digits of microseconds, or ''. */
function fraction(micros: number, fsp: number): string {
  return fsp > 0 ? `.${pad(micros, 6).slice(0, fsp)}` : '';
}

/** Reads the 0-3 big-endian fraction bytes of a DATETIME2/TIMESTAMP2 as microseconds. */
function readFraction(r: ByteReader, fsp: number): number {
  const bytes = (fsp + 1) >> 1;
  if (bytes === 0) return 0;
  const v = Number(r.uintBE(bytes));
  return v * 10 ** (6 - bytes * 2);
}

const DIG2BYTES = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/** MySQL's packed DECIMAL (decimal2bin) as an exact string. */
export function readDecimal(r: ByteReader, precision: number, scale: number): string {
  const intg = precision - scale;
  const intg0 = Math.floor(intg / 9);
  const intg0x = intg % 9;
  const frac0 = Math.floor(scale / 9);
  const frac0x = scale % 9;
  const size = intg0 * 4 + DIG2BYTES[intg0x] + frac0 * 4 + DIG2BYTES[frac0x];
  const raw = Buffer.from(r.bytes(size));
  const negative = (raw[0] & 0x80) === 0;
  raw[0] ^= 0x80;
  if (negative) for (let i = 0; i < raw.length; i++) raw[i] ^= 0xff;
  let p = 0;
  const take = (n: number): number => {
    const v = raw.readUIntBE(p, n);
    p += n;
    return v;
  };
  let int = '';
  if (intg0x > 0) int += String(take(DIG2BYTES[intg0x]));
  for (let i = 0; i < intg0; i++) int += pad(take(4), 9);
  int = int.replace(/^0+/, '') || '0';
  let frac = '';
  for (let i = 0; i < frac0; i++) frac += pad(take(4), 9);
  if (frac0x > 0) frac += pad(take(DIG2BYTES[frac0x]), frac0x);
  const text = scale > 0 ? `${int}.${frac}` : int;
  return negative ? `-${text}` : text;
}

function readInt(r: ByteReader, bytes: number, unsigned: boolean): number {
  const v = r.uintLE(bytes);
  if (unsigned) return v;
  const top = 2 ** (bytes * 8);
  return v >= top / 2 ? v - top : v;
}

function datePart(v: number): string {
  // 3 bytes: day 5 bits, month 4 bits, year 15 bits
  return `${pad(v >> 9, 4)}-${pad((v >> 5) & 15, 2)}-${pad(v & 31, 2)}`;
}

function readTime2(r: ByteReader, fsp: number): string {
  // Packed: 1 sign bit (1 = non-negative), hours 10 bits, minutes 6, seconds 6, then the fraction
  // (unsigned; a negative time stores the next integer up and the fraction's complement, so that the
  // bytes sort like the values: MySQL's my_time_packed_from_binary).
  let packed: bigint;
  if (fsp === 0) {
    packed = (r.uintBE(3) - 0x800000n) << 24n;
  } else if (fsp <= 2) {
    let int = r.uintBE(3) - 0x800000n;
    let frac = BigInt(r.u8());
    if (int < 0n && frac !== 0n) {
      int += 1n;
      frac -= 0x100n;
    }
    packed = (int << 24n) + frac * 10000n;
  } else if (fsp <= 4) {
    let int = r.uintBE(3) - 0x800000n;
    let frac = r.uintBE(2);
    if (int < 0n && frac !== 0n) {
      int += 1n;
      frac -= 0x10000n;
    }
    packed = (int << 24n) + frac * 100n;
  } else {
    packed = r.uintBE(6) - 0x800000000000n;
  }
  const negative = packed < 0n;
  if (negative) packed = -packed;
  const hms = Number(packed >> 24n);
  const micros = Number(packed & 0xffffffn);
  const h = (hms >> 12) & 0x3ff;
  return `${negative ? '-' : ''}${pad(h, 2)}:${pad((hms >> 6) & 63, 2)}:${pad(hms & 63, 2)}${fraction(micros, fsp)}`;
}

function readDatetime2(r: ByteReader, fsp: number): string {
  const int = r.uintBE(5) - 0x8000000000n;
  const micros = readFraction(r, fsp);
  const ymd = Number(int >> 17n);
  const ym = ymd >> 5;
  const hms = Number(int & 0x1ffffn);
  return `${pad(Math.floor(ym / 13), 4)}-${pad(ym % 13, 2)}-${pad(ymd & 31, 2)} ${pad(hms >> 12, 2)}:${pad((hms >> 6) & 63, 2)}:${pad(hms & 63, 2)}${fraction(micros, fsp)}`;
}

function utcText(seconds: number, micros: number, fsp: number): string {
  if (seconds === 0 && micros === 0) return `0000-00-00 00:00:00${fraction(0, fsp)}`;
  const d = new Date(seconds * 1000);
  const date = `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`;
  return `${date} ${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}${fraction(micros, fsp)}`;
}

function bits(buf: Buffer, length: number): string {
  let s = '';
  for (const b of buf) s += b.toString(2).padStart(8, '0');
  return s.slice(s.length - length);
}

function text(col: MappedColumn, bytes: Buffer): string | Buffer {
  if (col.charset === null || col.charset === 'binary') return Buffer.from(bytes);
  return decodeText(col.charset, bytes);
}

/** Decodes the value of `col` at the reader's position (the column is known to be non-NULL). */
export function readValue(r: ByteReader, col: MappedColumn): RowValue {
  switch (col.realType) {
    case ColumnType.TINY:
      return readInt(r, 1, col.unsigned);
    case ColumnType.SHORT:
      return readInt(r, 2, col.unsigned);
    case ColumnType.INT24:
      return readInt(r, 3, col.unsigned);
    case ColumnType.LONG:
      return readInt(r, 4, col.unsigned);
    case ColumnType.LONGLONG: {
      const v = r.u64();
      return col.unsigned ? v : BigInt.asIntN(64, v);
    }
    case ColumnType.FLOAT:
      return r.bytes(4).readFloatLE(0);
    case ColumnType.DOUBLE:
      return r.bytes(8).readDoubleLE(0);
    case ColumnType.NEWDECIMAL:
      return readDecimal(r, col.precision, col.scale);
    case ColumnType.YEAR: {
      const y = r.u8();
      return y === 0 ? 0 : 1900 + y;
    }
    case ColumnType.DATE:
    case ColumnType.NEWDATE:
      return datePart(r.u24());
    case ColumnType.TIME: {
      // old format: signed HHMMSS as an integer
      const v = readInt(r, 3, false);
      const a = Math.abs(v);
      return `${v < 0 ? '-' : ''}${pad(Math.floor(a / 10000), 2)}:${pad(Math.floor(a / 100) % 100, 2)}:${pad(a % 100, 2)}`;
    }
    case ColumnType.TIME2:
      return readTime2(r, col.length);
    case ColumnType.DATETIME: {
      // old format: YYYYMMDDhhmmss as an integer
      const s = pad(r.u64(), 14);
      return `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)} ${s.slice(8, 10)}:${s.slice(10, 12)}:${s.slice(12, 14)}`;
    }
    case ColumnType.DATETIME2:
      return readDatetime2(r, col.length);
    case ColumnType.TIMESTAMP:
      return utcText(r.u32(), 0, 0);
    case ColumnType.TIMESTAMP2: {
      const seconds = Number(r.uintBE(4));
      return utcText(seconds, readFraction(r, col.length), col.length);
    }
    case ColumnType.VARCHAR:
    case ColumnType.VAR_STRING:
      return text(col, r.bytes(col.length < 256 ? r.u8() : r.u16()));
    case ColumnType.STRING: {
      const bytes = r.bytes(col.length < 256 ? r.u8() : r.u16());
      // BINARY(n) is logged without its trailing zero bytes
      if (col.charset === 'binary' && bytes.length < col.length) return Buffer.concat([bytes, Buffer.alloc(col.length - bytes.length)]);
      return text(col, bytes);
    }
    case ColumnType.BLOB:
    case ColumnType.TINY_BLOB:
    case ColumnType.MEDIUM_BLOB:
    case ColumnType.LONG_BLOB:
      return text(col, r.bytes(r.uintLE(col.length)));
    case ColumnType.GEOMETRY:
      return Buffer.from(r.bytes(r.uintLE(col.length)));
    case ColumnType.BIT: {
      const n = (col.length + 7) >> 3;
      return bits(r.bytes(n), col.length);
    }
    case ColumnType.ENUM: {
      const i = r.uintLE(col.length);
      return i === 0 ? '' : (col.labels[i - 1] ?? String(i));
    }
    case ColumnType.SET: {
      let mask = 0n;
      const raw = r.bytes(col.length);
      for (let i = raw.length - 1; i >= 0; i--) mask = (mask << 8n) | BigInt(raw[i]);
      return col.labels.filter((_, k) => (mask >> BigInt(k)) & 1n).join(',');
    }
    default:
      throw new Error(`binlog: cannot decode column ${col.name ?? '?'} of type ${columnTypeName(col.realType)}`);
  }
}
