/**
 * TABLE_MAP events: a table's identity and column shapes at the time of the events that follow,
 * with the optional metadata `binlog_row_metadata=FULL` adds (names, signedness, charsets, ENUM/SET
 * labels, primary key). Row events are decoded with the map of their own time, never with today's
 * schema. No I/O.
 */
import { ByteReader } from './byte-reader.js';
import { charsetOf } from './charsets.js';
import { ColumnType, isCharacter, isEnumOrSet, isNumeric, readColumnMeta, type ColumnShape } from './column-types.js';

export interface MappedColumn extends ColumnShape {
  /** Null when the server does not log names (binlog_row_metadata not FULL). */
  readonly name: string | null;
  readonly nullable: boolean;
  readonly unsigned: boolean;
  /** Collation id of a text, ENUM or SET column (63: binary); null when not logged or not textual. */
  readonly collation: number | null;
  /** The charset of `collation` (e.g. utf8mb4, latin1, binary); null when unknown. */
  readonly charset: string | null;
  /** ENUM or SET labels in order; empty for other columns. */
  readonly labels: readonly string[];
}

export interface TableMap {
  readonly tableId: number;
  readonly database: string;
  readonly table: string;
  readonly columns: readonly MappedColumn[];
  /** Primary key column indexes, in key order (empty when not logged or no key). */
  readonly primaryKey: readonly number[];
  /** Whether the optional metadata carried column names (binlog_row_metadata=FULL). */
  readonly fullMetadata: boolean;
}

const Meta = {
  SIGNEDNESS: 1,
  DEFAULT_CHARSET: 2,
  COLUMN_CHARSET: 3,
  COLUMN_NAME: 4,
  SET_STR_VALUE: 5,
  ENUM_STR_VALUE: 6,
  GEOMETRY_TYPE: 7,
  SIMPLE_PRIMARY_KEY: 8,
  PRIMARY_KEY_WITH_PREFIX: 9,
  ENUM_AND_SET_DEFAULT_CHARSET: 10,
  ENUM_AND_SET_COLUMN_CHARSET: 11,
} as const;

/** Decodes a TABLE_MAP body (after the common header; `tableIdSize` is 6, or 4 for old servers). */
export function decodeTableMap(r: ByteReader, tableIdSize: number, collations?: ReadonlyMap<number, string>): TableMap {
  const tableId = tableIdSize === 6 ? r.u48() : r.u32();
  r.skip(2); // flags
  const database = r.bytes(r.u8()).toString('utf8');
  r.skip(1);
  const table = r.bytes(r.u8()).toString('utf8');
  r.skip(1);
  const count = r.lenenc();
  const types = [...r.bytes(count)];
  const meta = r.lenencBytes();
  const nullable = r.bitmap(count);
  const shapes: ColumnShape[] = [];
  let mp = 0;
  for (const t of types) {
    const { shape, used } = readColumnMeta(t, meta, mp);
    shapes.push(shape);
    mp += used;
  }

  const names: (string | null)[] = new Array(count).fill(null);
  const unsigned: boolean[] = new Array(count).fill(false);
  const collation: (number | null)[] = new Array(count).fill(null);
  const labels: string[][] = shapes.map(() => []);
  let primaryKey: number[] = [];
  let fullMetadata = false;

  const textCols = shapes.map((s, i) => (isCharacter(s.realType) ? i : -1)).filter((i) => i >= 0);
  const enumSetCols = shapes.map((s, i) => (isEnumOrSet(s.realType) ? i : -1)).filter((i) => i >= 0);
  const defaultCharset = (v: ByteReader, cols: number[]) => {
    const dflt = v.lenenc();
    for (const i of cols) collation[i] = dflt;
    while (v.remaining > 0) {
      const idx = v.lenenc();
      collation[cols[idx]] = v.lenenc();
    }
  };

  while (r.remaining > 0) {
    const kind = r.u8();
    const len = r.lenenc();
    const v = new ByteReader(r.buf, r.pos, r.pos + len);
    r.skip(len);
    switch (kind) {
      case Meta.SIGNEDNESS: {
        const numeric = shapes.map((s, i) => (isNumeric(s.realType) ? i : -1)).filter((i) => i >= 0);
        const bits = v.bytes(len);
        // most significant bit first
        numeric.forEach((col, k) => (unsigned[col] = (bits[k >> 3] & (0x80 >> (k & 7))) !== 0));
        break;
      }
      case Meta.DEFAULT_CHARSET:
        defaultCharset(v, textCols);
        break;
      case Meta.COLUMN_CHARSET:
        for (const i of textCols) collation[i] = v.lenenc();
        break;
      case Meta.ENUM_AND_SET_DEFAULT_CHARSET:
        defaultCharset(v, enumSetCols);
        break;
      case Meta.ENUM_AND_SET_COLUMN_CHARSET:
        for (const i of enumSetCols) collation[i] = v.lenenc();
        break;
      case Meta.COLUMN_NAME:
        fullMetadata = true;
        for (let i = 0; i < count; i++) names[i] = v.lenencString();
        break;
      case Meta.SET_STR_VALUE:
      case Meta.ENUM_STR_VALUE: {
        const want = kind === Meta.SET_STR_VALUE ? ColumnType.SET : ColumnType.ENUM;
        for (const i of shapes.map((s, j) => (s.realType === want ? j : -1)).filter((j) => j >= 0)) {
          const n = v.lenenc();
          for (let k = 0; k < n; k++) labels[i].push(v.lenencString());
        }
        break;
      }
      case Meta.SIMPLE_PRIMARY_KEY:
        while (v.remaining > 0) primaryKey.push(v.lenenc());
        break;
      case Meta.PRIMARY_KEY_WITH_PREFIX:
        primaryKey = [];
        while (v.remaining > 0) {
          primaryKey.push(v.lenenc());
          v.lenenc(); // prefix length (0: whole column)
        }
        break;
      default:
        break; // GEOMETRY_TYPE, COLUMN_VISIBILITY and future kinds: not needed to decode rows
    }
  }

  const columns: MappedColumn[] = shapes.map((s, i) => ({
    ...s,
    name: names[i],
    nullable: nullable[i],
    unsigned: unsigned[i],
    collation: collation[i],
    charset: collation[i] === null ? null : charsetOf(collation[i] as number, collations),
    labels: labels[i],
  }));
  return { tableId, database, table, columns, primaryKey, fullMetadata };
}
