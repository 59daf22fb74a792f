/**
 * L0 without locks (MariaDB, and Percona Server): `START TRANSACTION WITH CONSISTENT SNAPSHOT` opens
 * an InnoDB read view and, atomically with it, fixes `Binlog_snapshot_file/position`: the binlog
 * position of exactly the transactions the view sees. So every transaction before that position is
 * visible to this snapshot and to every later read, and every one after it is in the binlog from
 * there: L0 is that position, with no wait for in-flight commits and no lock. (Reading
 * `@@gtid_binlog_pos` or SHOW MASTER STATUS instead can include a transaction the read view cannot
 * see: its binlog write precedes its engine commit, or it committed between the two statements.)
 *
 * Oracle MySQL has no binlog_snapshot_* status: there L0 needs a marker write (commit a row, L0 = its
 * position as capture sees it) or a brief FLUSH TABLES WITH READ LOCK; neither is built or tested
 * here (no MySQL server in this project's test environment).
 */
import type { Connection } from 'mysql2/promise';
import { SluiceError } from '../../core/errors.js';
import { GtidPosition, type BinlogPosition } from './binlog-position.js';

type Row = Record<string, unknown>;

/** An open consistent snapshot: read in it with `conn`, then `close()` (COMMIT). */
export interface ConsistentSnapshot {
  /** L0: the binlog position of exactly what this snapshot sees. */
  readonly position: BinlogPosition;
  readonly conn: Connection;
  close(): Promise<void>;
}

/**
 * Opens a REPEATABLE READ consistent snapshot on `conn` and returns its binlog position. The
 * connection stays in the snapshot's transaction until close().
 */
export async function openSnapshot(conn: Connection): Promise<ConsistentSnapshot> {
  await conn.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
  await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
  try {
    const [status] = (await conn.query(`SHOW STATUS LIKE 'binlog\\_snapshot\\_%'`)) as unknown as [Row[]];
    const value = (name: string) => status.find((r) => String(r.Variable_name).toLowerCase() === name)?.Value;
    const file = value('binlog_snapshot_file');
    const pos = value('binlog_snapshot_position');
    if (typeof file !== 'string' || file === '' || pos === undefined) {
      throw new SluiceError(
        'UNSUPPORTED_MODE',
        'source: the server gives no Binlog_snapshot_file/position for a consistent snapshot: sluice needs MariaDB (or Percona Server) with the binlog on (log_bin=ON)',
      );
    }
    const [[g]] = (await conn.query('SELECT BINLOG_GTID_POS(?, ?) AS gtid', [file, Number(pos)])) as unknown as [Row[]];
    const gtid = GtidPosition.parse(typeof g.gtid === 'string' ? g.gtid : '');
    return {
      position: { file, pos: Number(pos), gtid },
      conn,
      close: async () => {
        await conn.query('COMMIT');
      },
    };
  } catch (err) {
    await conn.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Reads L0 alone: opens a snapshot and commits it at once. */
export async function snapshotPosition(conn: Connection): Promise<BinlogPosition> {
  const s = await openSnapshot(conn);
  await s.close();
  return s.position;
}

/**
 * On a replica: waits until it has applied `gtid` (MariaDB MASTER_GTID_WAIT), so that reads there see
 * everything before L0. Returns false on timeout (a primary, or a replica too far behind).
 */
export async function waitForReplica(conn: Connection, gtid: GtidPosition, timeoutSeconds: number): Promise<boolean> {
  const [[r]] = (await conn.query('SELECT MASTER_GTID_WAIT(?, ?) AS r', [gtid.toString(), timeoutSeconds])) as unknown as [Row[]];
  return Number(r.r) === 0;
}
