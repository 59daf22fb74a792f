/**
 * A backfill's strategy, parallelism and scope checked against a MariaDB source table before
 * anything runs (the MariaDB side of SourceInspection.checkBackfillOptions).
 */
import type { Connection } from 'mysql2/promise';
import type { TableInfo } from '../../core/columns.js';
import { SluiceError } from '../../core/errors.js';
import { TableName } from '../../core/types.js';
import type { BackfillOptions } from '../source.js';
import { qualifiedName } from './connection.js';

const INTEGER_TYPES = /^(tinyint|smallint|mediumint|int|integer|bigint)\b/i;
const TIME_TYPES = /^(date|datetime|timestamp)\b/i;

export async function checkBackfillOptions(conn: Connection, info: TableInfo, o: BackfillOptions, label: (key: string) => string): Promise<void> {
  const name = TableName.format(info.table);
  if (o.strategy === 'keyset' && o.parallelism > 1) {
    throw new SluiceError('BAD_USAGE', `${label('parallelism')}: keyset reads ${name} with one reader; use strategy interval for parallel reads`);
  }
  if (o.strategy === 'ctid') {
    throw new SluiceError('BAD_USAGE', `${label('strategy')}: ctid reads PostgreSQL heap pages, and ${name} is in MariaDB; use keyset or interval`);
  }
  if (o.strategy === 'interval') {
    const key = info.columns.find((c) => c.name === info.primaryKey[0]);
    if (info.primaryKey.length !== 1 || !key || !INTEGER_TYPES.test(key.typeSql)) {
      throw new SluiceError(
        'BAD_USAGE',
        `${label('strategy')}: interval needs a single integer primary key, and ${name}'s is (${info.primaryKey.map((k) => `${k} ${info.columns.find((c) => c.name === k)?.typeSql}`).join(', ')}); use keyset`,
      );
    }
  }
  if (o.strategy === 'daterange') {
    const col = o.dateColumn ? info.columns.find((c) => c.name === o.dateColumn) : undefined;
    if (!o.dateColumn) throw new SluiceError('BAD_USAGE', `${label('strategy')}: daterange reads ${name} by time ranges of a column: set tables[].dateColumn (e.g. created_at)`);
    if (!col) throw new SluiceError('BAD_USAGE', `${label('dateColumn')}: ${o.dateColumn} is not a column of ${name}`);
    if (!TIME_TYPES.test(col.typeSql)) {
      throw new SluiceError('BAD_USAGE', `${label('dateColumn')}: ${o.dateColumn} is ${col.typeSql}; daterange needs a datetime, timestamp or date column (use interval for an integer key)`);
    }
    const [ix] = (await conn.query(
      `SELECT COUNT(*) AS n FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ? AND SEQ_IN_INDEX = 1`,
      [info.table.schema, info.table.name, o.dateColumn],
    )) as unknown as [{ n: number | string }[]];
    if (Number(ix[0].n) === 0) {
      throw new SluiceError('BAD_USAGE', `${label('dateColumn')}: no index of ${name} starts with ${o.dateColumn}, so every chunk would read the whole table: CREATE INDEX ... ON ${name} (${o.dateColumn}), or use keyset`);
    }
  }
  if (o.where.trim() !== '') {
    if (o.mode === 'online' || o.mode === 'drop') {
      throw new SluiceError('BAD_USAGE', `${label('where')}: a scoped backfill loads part of ${name}, and mode ${o.mode} would replace the whole table with that part; use mode upsert or truncate`);
    }
    try {
      await conn.query(`SELECT 1 FROM ${qualifiedName(info.table)} WHERE (${o.where}) LIMIT 0`);
    } catch (err) {
      throw new SluiceError('BAD_USAGE', `${label('where')}: ${JSON.stringify(o.where)} is not a valid condition on ${name}: ${(err as Error).message}`);
    }
  }
}
