/**
 * The column types of the binlog (MySQL's enum_field_types, shared by MariaDB), the per-column
 * metadata a TABLE_MAP event gives for each, and which types the optional metadata's signedness and
 * charset lists count. No I/O.
 */
export const ColumnType = {
  DECIMAL: 0,
  TINY: 1,
  SHORT: 2,
  LONG: 3,
  FLOAT: 4,
  DOUBLE: 5,
  NULL: 6,
  TIMESTAMP: 7,
  LONGLONG: 8,
  INT24: 9,
  DATE: 10,
  TIME: 11,
  DATETIME: 12,
  YEAR: 13,
  NEWDATE: 14,
  VARCHAR: 15,
  BIT: 16,
  TIMESTAMP2: 17,
  DATETIME2: 18,
  TIME2: 19,
  JSON: 245,
  NEWDECIMAL: 246,
  ENUM: 247,
  SET: 248,
  TINY_BLOB: 249,
  MEDIUM_BLOB: 250,
  LONG_BLOB: 251,
  BLOB: 252,
  VAR_STRING: 253,
  STRING: 254,
  GEOMETRY: 255,
} as const;

const NAMES = new Map<number, string>(Object.entries(ColumnType).map(([k, v]) => [v, k]));

export function columnTypeName(type: number): string {
  return NAMES.get(type) ?? `type ${type}`;
}

/** A column's type as a row event needs it: the wire type, the real type (CHAR/ENUM/SET share STRING) and its metadata. */
export interface ColumnShape {
  /** The type as written in the TABLE_MAP's type list. */
  readonly wireType: number;
  /** The type that decides the value's layout: ENUM and SET for a STRING column that is one. */
  readonly realType: number;
  /** Type-specific metadata: max length (bytes), length-prefix size, precision/scale, fsp, bit length. */
  readonly length: number;
  readonly precision: number;
  readonly scale: number;
}

/** Reads one column's metadata from the TABLE_MAP metadata block at `pos`; returns the shape and the bytes used. */
export function readColumnMeta(wireType: number, meta: Buffer, pos: number): { shape: ColumnShape; used: number } {
  const shape = (length: number, used: number, extra: Partial<ColumnShape> = {}) => ({
    shape: { wireType, realType: extra.realType ?? wireType, length, precision: extra.precision ?? 0, scale: extra.scale ?? 0 },
    used,
  });
  switch (wireType) {
    case ColumnType.FLOAT:
    case ColumnType.DOUBLE:
    case ColumnType.BLOB:
    case ColumnType.TINY_BLOB:
    case ColumnType.MEDIUM_BLOB:
    case ColumnType.LONG_BLOB:
    case ColumnType.GEOMETRY:
    case ColumnType.JSON:
    case ColumnType.TIMESTAMP2:
    case ColumnType.DATETIME2:
    case ColumnType.TIME2:
      return shape(meta[pos], 1);
    case ColumnType.VARCHAR:
    case ColumnType.VAR_STRING:
      return shape(meta.readUInt16LE(pos), 2);
    case ColumnType.NEWDECIMAL:
    case ColumnType.DECIMAL:
      return shape(0, 2, { precision: meta[pos], scale: meta[pos + 1] });
    case ColumnType.BIT:
      // byte 0: bits beyond whole bytes, byte 1: whole bytes
      return shape(meta[pos + 1] * 8 + meta[pos], 2);
    case ColumnType.STRING:
    case ColumnType.ENUM:
    case ColumnType.SET: {
      const b0 = meta[pos];
      const b1 = meta[pos + 1];
      // CHAR longer than 255 bytes keeps bits 8-9 of its length in bits 4-5 of the type byte, inverted.
      if (b0 !== 0 && (b0 & 0x30) !== 0x30) return shape(b1 | (((b0 & 0x30) ^ 0x30) << 4), 2, { realType: b0 | 0x30 });
      return shape(b1, 2, { realType: b0 === 0 ? wireType : b0 });
    }
    default:
      return shape(0, 0);
  }
}

/** Types the optional metadata's SIGNEDNESS bitmap has a bit for. */
export function isNumeric(type: number): boolean {
  return (
    type === ColumnType.TINY ||
    type === ColumnType.SHORT ||
    type === ColumnType.INT24 ||
    type === ColumnType.LONG ||
    type === ColumnType.LONGLONG ||
    type === ColumnType.NEWDECIMAL ||
    type === ColumnType.DECIMAL ||
    type === ColumnType.FLOAT ||
    type === ColumnType.DOUBLE
  );
}

/** Types the optional metadata's charset lists count (by real type: ENUM and SET have lists of their own). */
export function isCharacter(realType: number): boolean {
  return (
    realType === ColumnType.STRING ||
    realType === ColumnType.VAR_STRING ||
    realType === ColumnType.VARCHAR ||
    realType === ColumnType.BLOB ||
    realType === ColumnType.TINY_BLOB ||
    realType === ColumnType.MEDIUM_BLOB ||
    realType === ColumnType.LONG_BLOB
  );
}

export function isEnumOrSet(realType: number): boolean {
  return realType === ColumnType.ENUM || realType === ColumnType.SET;
}
