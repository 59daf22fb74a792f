/**
 * Classifies errors from MariaDB/MySQL at the driver boundary, keeping the server's fields (errno,
 * SQLSTATE) in the context, and names the fix for the ones a user can meet.
 */
import { SluiceError, type ErrorCode } from '../../core/errors.js';

interface MysqlLikeError {
  code?: string;
  errno?: number;
  sqlState?: string;
  sqlMessage?: string;
  message?: string;
  fatal?: boolean;
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EAI_AGAIN', 'ENETUNREACH', 'EPIPE',
  'PROTOCOL_CONNECTION_LOST', 'ER_SERVER_SHUTDOWN', 'ER_CON_COUNT_ERROR',
]);

/** Server error numbers. */
export const Errno = {
  ACCESS_DENIED: 1045,
  DBACCESS_DENIED: 1044,
  TABLEACCESS_DENIED: 1142,
  SPECIFIC_ACCESS_DENIED: 1227,
  NO_SUCH_TABLE: 1146,
  BAD_DB: 1049,
  MASTER_FATAL_READING_BINLOG: 1236,
  LOCK_DEADLOCK: 1213,
  LOCK_WAIT_TIMEOUT: 1205,
  QUERY_INTERRUPTED: 1317,
  CONNECTION_KILLED: 1927,
} as const;

export function mysqlFields(err: unknown): Record<string, unknown> {
  const e = err as MysqlLikeError;
  const out: Record<string, unknown> = {};
  if (e?.errno) out.errno = e.errno;
  if (e?.sqlState) out.sqlstate = e.sqlState;
  if (e?.code) out.code = e.code;
  return out;
}

/** The server is not there, or dropped the connection: worth a retry. */
export function isConnectionError(err: unknown): boolean {
  const e = err as MysqlLikeError;
  if (!e) return false;
  if (e.code && CONNECT_CODES.has(e.code)) return true;
  if (e.errno === Errno.CONNECTION_KILLED) return true;
  return /Connection lost|connection.*closed|Can't add new command when connection is in closed state/i.test(e.message ?? '');
}

export function isConnectionLoss(err: unknown): boolean {
  if (err instanceof SluiceError) {
    if (err.code === 'SOURCE_UNREACHABLE') return err.retryable;
    return err.retryable && isConnectionError(err.cause);
  }
  return isConnectionError(err);
}

/** Whether a binlog dump error means the requested position is gone (purged, or never on this server). */
export function isPositionLost(err: unknown): boolean {
  const e = err as MysqlLikeError;
  return e?.errno === Errno.MASTER_FATAL_READING_BINLOG && /purged|could not find|not find GTID|too old|first log file name/i.test(e.message ?? '');
}

export function classify(what: string, err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const e = err as MysqlLikeError;
  const message = e?.message ?? String(err);
  const context = mysqlFields(err);
  const make = (code: ErrorCode, text: string, retryable = false) => new SluiceError(code, text, { cause: err, context, retryable });
  if (isConnectionError(err)) return make('SOURCE_UNREACHABLE', `source: ${what}: ${message}; check that the server runs and source.url is right`, true);
  if (isPositionLost(err)) {
    return make(
      'SLOT_LOST',
      `source: ${what}: the binlog position sluice resumes from is no longer on the server (${message}). ` +
        'Its binlog files were purged (binlog_expire_logs_seconds / expire_logs_days, PURGE BINARY LOGS): changes since then are lost to sluice. ' +
        'Keep binlogs longer than sluice can be down; with onSlotLost: rebackfill sluice reloads the tables online',
    );
  }
  if (e?.errno === Errno.SPECIFIC_ACCESS_DENIED || e?.errno === Errno.TABLEACCESS_DENIED || e?.errno === Errno.DBACCESS_DENIED) {
    return make(
      'MISSING_PRIVILEGE',
      `source: ${what}: ${message}; grant the source user what sluice needs: GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO <user>`,
    );
  }
  if (e?.errno === Errno.NO_SUCH_TABLE || e?.errno === Errno.BAD_DB) return make('TABLE_NOT_FOUND', `source: ${what}: ${message}`);
  const retryable = e?.errno === Errno.LOCK_DEADLOCK || e?.errno === Errno.LOCK_WAIT_TIMEOUT;
  return make('SOURCE_ERROR', `source: ${what}: ${message}`, retryable);
}
