/**
 * The format of the embedded change log file, and how an older format is brought forward when the
 * file opens.
 *
 * The format is SQLite's `PRAGMA user_version` (a header field, written in the same transaction as
 * the schema). Format 1 is the file sluice 0.1.0 wrote, which left user_version at 0: a file with
 * user_version 0 and a `meta` table is format 1; one with no tables is new. The record stays
 * user_version in every later format: it is how an older sluice recognises a newer file and refuses
 * it instead of misreading it. The numbering is the log's own, independent of `_sluice`'s.
 *
 * Each later format is one step of LOG_MIGRATIONS; the last step's `to` is the format this sluice
 * reads and writes. LOG_FORMAT_1_SQL is frozen (test: it equals test/fixtures/changelog-format-1.sql);
 * a change is a new step. A new file is created as format 1 and brought forward by the same steps.
 * Everything runs in one `BEGIN IMMEDIATE` transaction: a concurrent open waits (busy_timeout) and
 * then finds the file current; a failing step leaves the file at its old format.
 */
import type Database from 'better-sqlite3';
import { SluiceError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';

/** The change log of format 1, exactly as sluice 0.1.0 created it. Never edit it: add a step. */
export const LOG_FORMAT_1_SQL = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS relations (version INTEGER PRIMARY KEY, tbl TEXT NOT NULL, columns TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
  tbl TEXT NOT NULL, lsn INTEGER NOT NULL, idx INTEGER NOT NULL,
  kind INTEGER NOT NULL, rel INTEGER NOT NULL, row TEXT, old_key TEXT, commit_ms INTEGER NOT NULL,
  PRIMARY KEY (tbl, lsn, idx)
) WITHOUT ROWID;
`;

export interface LogMigration {
  /** The format this step produces (from `to - 1`). */
  readonly to: number;
  /** What changes, for the log. */
  readonly what: string;
  readonly up: (db: Database.Database) => void;
}

export const LOG_MIGRATIONS: readonly LogMigration[] = [
  // Format 2 is format 1 with its format recorded (user_version, set after the steps).
  { to: 2, what: 'the format record (PRAGMA user_version)', up: () => {} },
  // Format 3 stores changes.row as pgoutput TupleData (a BLOB, src/core/tuple-data.ts) instead of a
  // JSON array. The table is unchanged; rows written as JSON before the step are read as before.
  { to: 3, what: 'rows as binary tuple data (rows already stored as JSON stay readable)', up: () => {} },
];

/** The format this sluice reads and writes. */
export const LOG_FORMAT = LOG_MIGRATIONS[LOG_MIGRATIONS.length - 1].to;

/** The file's format; null when it holds nothing yet. */
export function readLogFormat(db: Database.Database): number | null {
  const version = Number(db.pragma('user_version', { simple: true }));
  if (version > 0) return version;
  const meta = db.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).get() as { n: number };
  return meta.n > 0 ? 1 : null;
}

/** Refuses a file this sluice cannot read: one written by a newer sluice. */
export function assertLogReadable(file: string, format: number | null): void {
  if (format === null || format <= LOG_FORMAT) return;
  throw new SluiceError(
    'STATE_FORMAT',
    `change log ${file} is format ${format}, this sluice reads formats up to ${LOG_FORMAT}: ` +
      `this state was written by a newer sluice (format ${format}); upgrade sluice to a version that reads format ${format}, ` +
      `or, to go back to this version, restore the change log file and the _sluice schema saved before the upgrade ` +
      `(docs/operations.md, "Upgrading sluice")`,
    { context: { file, format, supported: LOG_FORMAT } },
  );
}

/**
 * Creates the log's tables in a new file, or brings an older format forward to LOG_FORMAT; refuses
 * a newer one. Returns the format found (null: a new file).
 */
export function ensureLogFormat(db: Database.Database, file: string, log?: Logger): number | null {
  // The usual case, without taking the write lock: the file is current.
  const seen = readLogFormat(db);
  assertLogReadable(file, seen);
  if (seen === LOG_FORMAT) return seen;
  const done: LogMigration[] = [];
  const found = db
    .transaction(() => {
      const at = readLogFormat(db);
      assertLogReadable(file, at);
      if (at === LOG_FORMAT) return at;
      if (at === null) db.exec(LOG_FORMAT_1_SQL);
      for (const step of LOG_MIGRATIONS) {
        if (step.to <= (at ?? 1)) continue;
        step.up(db);
        done.push(step);
      }
      db.pragma(`user_version = ${LOG_FORMAT}`);
      return at;
    })
    .immediate();
  if (found !== null) for (const step of done) log?.info(`migrated change log from format ${step.to - 1} to ${step.to}`, { file, change: step.what });
  return found;
}
