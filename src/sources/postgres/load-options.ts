/**
 * A backfill's strategy, parallelism and scope checked against a PostgreSQL source table before
 * anything runs: by the preflight, by `sluice backfill` (through the source port) and by the running
 * pipeline when it accepts a request.
 */
import type pg from 'pg';
import type { TableInfo } from '../../core/columns.js';
import { SluiceError } from '../../core/errors.js';
import { qualified } from '../../core/quote.js';
import { TableName } from '../../core/types.js';
import type { BackfillOptions } from '../source.js';

/**
 * Checks a backfill's strategy, parallelism and scope against the table before anything runs:
 * interval needs an integer key, ctid a heap table, a scope must be a boolean condition on the
 * table, and online or drop cannot take a scope. `label` prefixes messages (a config path or --flag).
 */
export async function checkBackfillOptions(src: pg.ClientBase, info: TableInfo, o: BackfillOptions, label: (key: string) => string): Promise<void> {
  const name = TableName.format(info.table);
  if (o.strategy === 'keyset' && o.parallelism > 1) {
    throw new SluiceError('BAD_USAGE', `${label('parallelism')}: keyset reads ${name} with one reader; use strategy interval or ctid for parallel reads`);
  }
  if (o.strategy === 'interval') {
    const key = info.columns.find((c) => c.name === info.primaryKey[0]);
    if (info.primaryKey.length !== 1 || !key || !['smallint', 'integer', 'bigint'].includes(key.typeSql)) {
      throw new SluiceError(
        'BAD_USAGE',
        `${label('strategy')}: interval needs a single integer primary key, and ${name}'s is (${info.primaryKey.map((k) => `${k} ${info.columns.find((c) => c.name === k)?.typeSql}`).join(', ')}); use keyset or ctid`,
      );
    }
  }
  if (o.strategy === 'ctid') {
    const r = await src.query(
      `SELECT current_setting('server_version_num')::int AS v, coalesce(am.amname, '') AS am, c.relkind::text AS kind
         FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam WHERE c.oid = $1::regclass`,
      [`"${info.table.schema.replace(/"/g, '""')}"."${info.table.name.replace(/"/g, '""')}"`],
    );
    const x = r.rows[0];
    if (x.v < 140000) throw new SluiceError('BAD_USAGE', `${label('strategy')}: ctid needs PostgreSQL 14 or later (TID range scans); use interval or keyset`);
    if (x.kind !== 'r' || x.am !== 'heap') {
      throw new SluiceError('BAD_USAGE', `${label('strategy')}: ctid reads heap pages, and ${name} is ${x.kind === 'p' ? 'a partitioned table' : `not a heap table (${x.am || x.kind})`}; use interval or keyset`);
    }
  }
  if (o.strategy === 'daterange') {
    const col = o.dateColumn ? info.columns.find((c) => c.name === o.dateColumn) : undefined;
    if (!o.dateColumn) throw new SluiceError('BAD_USAGE', `${label('strategy')}: daterange reads ${name} by time ranges of a column: set tables[].dateColumn (e.g. created_at)`);
    if (!col) throw new SluiceError('BAD_USAGE', `${label('dateColumn')}: ${o.dateColumn} is not a column of ${name}`);
    if (!/^(timestamp|date\b)/.test(col.typeSql)) {
      throw new SluiceError('BAD_USAGE', `${label('dateColumn')}: ${o.dateColumn} is ${col.typeSql}; daterange needs a timestamptz, timestamp or date column (use interval for an integer key)`);
    }
    const ix = await src.query(
      `SELECT count(*)::int AS n FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = $1::regclass AND a.attname = $2`,
      [qualified(info.table), o.dateColumn],
    );
    if (ix.rows[0].n === 0) {
      throw new SluiceError('BAD_USAGE', `${label('dateColumn')}: no index of ${name} starts with ${o.dateColumn}, so every chunk would read the whole table: CREATE INDEX ON ${name} (${o.dateColumn}), or use keyset`);
    }
  }
  if (o.where.trim() !== '') {
    if (o.mode === 'online' || o.mode === 'drop') {
      throw new SluiceError(
        'BAD_USAGE',
        `${label('where')}: a scoped backfill loads part of ${name}, and mode ${o.mode} would replace the whole table with that part; use mode upsert or truncate`,
      );
    }
    try {
      await src.query({ text: `SELECT 1 FROM ${qualified(info.table)} WHERE (${o.where}) LIMIT 0`, values: [], queryMode: 'extended' } as pg.QueryConfig);
    } catch (err) {
      throw new SluiceError('BAD_USAGE', `${label('where')}: ${JSON.stringify(o.where)} is not a valid condition on ${name}: ${(err as Error).message}`);
    }
  }
}
