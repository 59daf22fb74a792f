/**
 * Chunk reads of a MariaDB source table: plain SELECTs (InnoDB consistent non-locking reads, one
 * autocommit statement each), never a lock. Keyset: the next `limit` rows after a key, in key
 * order (any primary key). Interval: the rows whose single integer key is in [lo, hi). Rows come
 * back as arrays in `columns` order, values as mysql2 gives them with connection.ts's settings
 * (BIGINT/DECIMAL as strings, temporal values as text, binary as Buffer).
 */
import type { Connection } from 'mysql2/promise';
import type { TableInfo } from '../../core/columns.js';
import { qualifiedName, quoteName } from './connection.js';

export type ChunkValue = string | number | Buffer | null;
export type ChunkRow = ChunkValue[];

function select(info: TableInfo, columns: readonly string[]): string {
  return `SELECT ${columns.map(quoteName).join(', ')} FROM ${qualifiedName(info.table)}`;
}

/** `(k1, k2) > (?, ?)` spelled so that MariaDB uses the primary key's range: k1 > ? OR (k1 = ? AND k2 > ?). */
function after(keys: readonly string[]): { sql: string; params: (values: readonly ChunkValue[]) => ChunkValue[] } {
  const parts: string[] = [];
  for (let i = 0; i < keys.length; i++) {
    const eq = keys.slice(0, i).map((k) => `${quoteName(k)} = ?`);
    parts.push(`(${[...eq, `${quoteName(keys[i])} > ?`].join(' AND ')})`);
  }
  return {
    sql: parts.join(' OR '),
    params: (values) => keys.flatMap((_, i) => values.slice(0, i + 1)),
  };
}

/** The next `limit` rows after the key `afterKey` (null: from the start), in primary key order. */
export async function readKeysetChunk(
  conn: Connection,
  info: TableInfo,
  columns: readonly string[],
  afterKey: readonly ChunkValue[] | null,
  limit: number,
  where = '',
): Promise<ChunkRow[]> {
  const keys = info.primaryKey;
  const conds: string[] = [];
  let params: ChunkValue[] = [];
  if (afterKey) {
    const a = after(keys);
    conds.push(`(${a.sql})`);
    params = a.params(afterKey);
  }
  if (where.trim() !== '') conds.push(`(${where})`);
  const sql =
    `${select(info, columns)}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''}` +
    ` ORDER BY ${keys.map(quoteName).join(', ')} LIMIT ${Math.max(1, Math.floor(limit))}`;
  const [rows] = (await conn.query({ sql, values: params, rowsAsArray: true })) as unknown as [ChunkRow[]];
  return rows;
}

/** The rows whose integer key is in [lo, hi) (decimal strings: BIGINT UNSIGNED goes past 2^63). */
export async function readIntervalChunk(conn: Connection, info: TableInfo, columns: readonly string[], lo: bigint, hi: bigint, where = ''): Promise<ChunkRow[]> {
  const key = quoteName(info.primaryKey[0]);
  const sql = `${select(info, columns)} WHERE ${key} >= ? AND ${key} < ?${where.trim() ? ` AND (${where})` : ''}`;
  const [rows] = (await conn.query({ sql, values: [lo.toString(), hi.toString()], rowsAsArray: true })) as unknown as [ChunkRow[]];
  return rows;
}

/** The smallest and largest value of a single integer key; null for an empty table. */
export async function integerKeyRange(conn: Connection, info: TableInfo): Promise<{ min: bigint; max: bigint } | null> {
  const key = quoteName(info.primaryKey[0]);
  const [[r]] = (await conn.query(`SELECT CAST(MIN(${key}) AS CHAR) AS lo, CAST(MAX(${key}) AS CHAR) AS hi FROM ${qualifiedName(info.table)}`)) as unknown as [
    { lo: string | null; hi: string | null }[],
  ];
  return r.lo === null || r.hi === null ? null : { min: BigInt(r.lo), max: BigInt(r.hi) };
}
