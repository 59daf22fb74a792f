/**
 * What a MariaDB source must offer before sluice captures from it, checked on one connection; each
 * refusal is a usage error (exit 2) whose message names the fix: the binlog on, in ROW format with
 * FULL row images and FULL row metadata, uncompressed; the grants (SELECT, REPLICATION SLAVE,
 * BINLOG MONITOR); tables with a primary key and no COMPRESSED columns; a free server_id; a resume
 * position the server still has.
 */
import type { Connection } from 'mysql2/promise';
import { SluiceError } from '../../core/errors.js';
import { TableName } from '../../core/types.js';
import { GtidPosition } from './binlog-position.js';
import { qualifiedName } from './connection.js';
import { Errno } from './errors.js';
import { checkServerId } from './server-id.js';

type Row = Record<string, unknown>;

async function rows(conn: Connection, sql: string, params: unknown[] = []): Promise<Row[]> {
  const [r] = (await conn.query(sql, params)) as unknown as [Row[]];
  return r;
}

function notConfigured(what: string, fix: string): SluiceError {
  return new SluiceError('WAL_LEVEL_NOT_LOGICAL', `source: ${what}; sluice reads changes from the binlog: ${fix}`);
}

/** The server settings capture needs (global values: what new sessions and the binlog use). */
export async function checkBinlogSettings(conn: Connection): Promise<void> {
  const [v] = await rows(
    conn,
    `SELECT @@global.log_bin AS log_bin, @@global.binlog_format AS format, @@global.binlog_row_image AS image,
            @@global.binlog_row_metadata AS metadata, @@global.log_bin_compress AS compress`,
  );
  const set = (name: string, value: string) => `set ${name}=${value} in the server's configuration ([mariadbd] section; SET GLOBAL ${name}=${value} lasts until a restart)`;
  if (Number(v.log_bin) !== 1) throw notConfigured('the binlog is off (log_bin=OFF)', 'start the server with log_bin (e.g. log_bin=mariadb-bin in [mariadbd]; this needs a restart)');
  if (String(v.format).toUpperCase() !== 'ROW') throw notConfigured(`binlog_format is ${String(v.format)}, not ROW`, set('binlog_format', 'ROW'));
  if (String(v.image).toUpperCase() !== 'FULL') throw notConfigured(`binlog_row_image is ${String(v.image)}, not FULL`, set('binlog_row_image', 'FULL'));
  if (String(v.metadata).toUpperCase() !== 'FULL') {
    throw notConfigured(`binlog_row_metadata is ${String(v.metadata)}, not FULL (row events must name their columns so that they decode with the schema of their time)`, set('binlog_row_metadata', 'FULL'));
  }
  if (Number(v.compress) === 1) throw notConfigured('binlog compression is on (log_bin_compress=ON), and sluice cannot decode compressed events', set('log_bin_compress', 'OFF'));
}

/** REPLICATION SLAVE and BINLOG MONITOR (SELECT is checked per table). */
export async function checkGrants(conn: Connection): Promise<void> {
  const grants = (await rows(conn, 'SHOW GRANTS')).map((r) => String(Object.values(r)[0]).toUpperCase());
  const global = grants.filter((g) => / ON \*\.\* TO /.test(g));
  const has = (priv: string) => global.some((g) => g.includes('ALL PRIVILEGES') || g.includes(priv));
  const fix = 'GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO <the source user>';
  if (!has('REPLICATION SLAVE') && !has('REPLICATION REPLICA')) {
    throw new SluiceError('MISSING_REPLICATION_PRIVILEGE', `source: the source user lacks REPLICATION SLAVE, which reading the binlog needs: ${fix}`);
  }
  if (!has('BINLOG MONITOR') && !has('REPLICATION CLIENT') && !has('SUPER')) {
    throw new SluiceError('MISSING_REPLICATION_PRIVILEGE', `source: the source user lacks BINLOG MONITOR, which reading binlog positions needs: ${fix}`);
  }
}

/** The table exists, the user may SELECT it, it has a primary key, and no COMPRESSED column. */
export async function checkTable(conn: Connection, table: TableName): Promise<void> {
  const name = TableName.format(table);
  try {
    await conn.query(`SELECT 1 FROM ${qualifiedName(table)} LIMIT 0`);
  } catch (err) {
    const errno = (err as { errno?: number }).errno;
    if (errno === Errno.TABLEACCESS_DENIED || errno === Errno.DBACCESS_DENIED) {
      throw new SluiceError('MISSING_PRIVILEGE', `source: the source user may not read ${name}: GRANT SELECT ON ${qualifiedName(table)} TO <the source user> (or ON *.*)`, { cause: err });
    }
    if (errno === Errno.NO_SUCH_TABLE || errno === Errno.BAD_DB) {
      throw new SluiceError('TABLE_NOT_FOUND', `source table ${name} does not exist; check tables[].name (database.table)`, { cause: err });
    }
    throw err;
  }
  const [pk] = await rows(conn, `SELECT COUNT(*) AS n FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY'`, [table.schema, table.name]);
  if (Number(pk.n) === 0) {
    throw new SluiceError('NO_PRIMARY_KEY', `source table ${name} has no primary key: sluice applies changes by key. ALTER TABLE ${qualifiedName(table)} ADD PRIMARY KEY (...), or leave the table out`);
  }
  const compressed = await rows(
    conn,
    `SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_TYPE LIKE '%COMPRESSED%'`,
    [table.schema, table.name],
  );
  if (compressed.length > 0) {
    throw new SluiceError(
      'UNSUPPORTED_TYPE',
      `source table ${name} has COMPRESSED columns (${compressed.map((r) => String(r.c)).join(', ')}), which the binlog carries compressed and sluice cannot decode: ALTER TABLE ${qualifiedName(table)} MODIFY the columns without COMPRESSED`,
    );
  }
}

/**
 * Whether the server still has the binlog from `gtid` on: the first binlog file's GTID list must be
 * at or before it in every domain. Throws SLOT_LOST with the fix otherwise.
 */
export async function checkResumable(conn: Connection, gtid: GtidPosition): Promise<void> {
  const logs = await rows(conn, 'SHOW BINARY LOGS');
  if (logs.length === 0) return;
  const first = String(logs[0].Log_name);
  const events = await rows(conn, `SHOW BINLOG EVENTS IN ${conn.escape(first)} LIMIT 4`);
  const list = events.find((e) => e.Event_type === 'Gtid_list');
  if (!list) return;
  const oldest = GtidPosition.parse(String(list.Info).replace(/^\[|\]$/g, ''));
  for (const o of oldest.list()) {
    const mine = gtid.get(o.domain);
    if (mine !== undefined && mine.seq < o.seq) {
      throw new SluiceError(
        'SLOT_LOST',
        `source: the binlog from ${gtid.toString()} on was purged (the oldest binlog, ${first}, starts after ${oldest.toString()}): changes since then are lost to sluice. ` +
          'Keep binlogs longer than sluice can be down (binlog_expire_logs_seconds); with onSlotLost: rebackfill sluice reloads the tables online',
      );
    }
  }
}

export interface CaptureCheckOptions {
  readonly serverId: number;
  readonly replicaName: string;
  /** The durable position capture resumes from, when there is one. */
  readonly resumeFrom?: GtidPosition;
}

/** Every check, in the order a user would fix them. */
export async function checkCapture(conn: Connection, tables: readonly TableName[], o: CaptureCheckOptions): Promise<void> {
  await checkBinlogSettings(conn);
  await checkGrants(conn);
  for (const t of tables) await checkTable(conn, t);
  await checkServerId(async <T>(sql: string) => (await conn.query(sql))[0] as T, o.serverId, o.replicaName);
  if (o.resumeFrom && !o.resumeFrom.isEmpty) await checkResumable(conn, o.resumeFrom);
}
