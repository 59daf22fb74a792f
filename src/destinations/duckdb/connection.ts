/**
 * Opening a DuckDB destination file, and the one-writer rule.
 *
 * DuckDB lets one process write a database file at a time: opening it takes an exclusive lock on
 * the file, and a second process (even one that only wants to read) fails with "Could not set lock
 * on file … Conflicting lock is held in <program> (PID n)". sluice opens the file once for the whole
 * run and holds it; a second `sluice run` on the same file gets a DESTINATION_UNREACHABLE error (a
 * usage error: exit 2) that names the file, the process holding it and what to do (errors.ts,
 * lockConflictError). Inside one process DuckDB does not stop a second
 * instance of the same file (two instances would each think they own it and corrupt it), so a
 * process-wide registry refuses that too.
 *
 * Every statement goes through one connection; `transaction()` runs a function between BEGIN and
 * COMMIT (ROLLBACK on any error), which is how a chunk and its progress, or a batch and its cursor,
 * commit together.
 */
import { realpathSync } from 'node:fs';
import { dirname, basename, resolve, join } from 'node:path';
import type { DuckDBConnection, DuckDBInstance, DuckDBValue } from '@duckdb/node-api';
import { duckdb } from './native.js';
import { SluiceError } from '../../core/errors.js';
import { classifyDuckDb, lockConflictError } from './errors.js';

/** Paths (resolved) of the DuckDB files this process holds open. */
const heldHere = new Set<string>();

/** A value bound to a `$n` or `?` parameter. */
export type Param = DuckDBValue;

export interface DuckDbFile {
  /** The path as resolved (what the one-writer registry and messages name). */
  readonly path: string;
  readonly connection: DuckDBConnection;
  /** Runs statements (several, `;`-separated, when `params` is empty); returns nothing. */
  run(sql: string, params?: readonly Param[]): Promise<void>;
  /** Rows as plain JS values (bigint for BIGINT/HUGEINT, strings for VARCHAR). */
  all(sql: string, params?: readonly Param[]): Promise<Record<string, unknown>[]>;
  /** Runs `fn` in one transaction: COMMIT when it resolves, ROLLBACK when it throws. Not reentrant. */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  readonly inTransaction: boolean;
  /** Closes the connection and the database, and lets the file go. Idempotent. */
  close(): void;
}

/** Where a path points, resolving the directory's symlinks (the file itself may not exist yet). */
function resolvedPath(path: string): string {
  const abs = resolve(path);
  try {
    return realpathSync(abs);
  } catch {
    try {
      return join(realpathSync(dirname(abs)), basename(abs));
    } catch {
      return abs;
    }
  }
}

function inUseHere(path: string): SluiceError {
  return new SluiceError(
    'DESTINATION_UNREACHABLE',
    `destination DuckDB file ${path} is already open in this process (pid ${process.pid}): DuckDB allows one writer per database file; ` +
      `close the other DuckDB destination of this file first, or point destination.path at another file`,
    { context: { path, pid: process.pid } },
  );
}

/** Opens (creating when absent) the DuckDB database at `path` for writing, and holds it. */
export async function openDuckDb(path: string): Promise<DuckDbFile> {
  const real = resolvedPath(path);
  if (heldHere.has(real)) throw inUseHere(real);
  heldHere.add(real);
  let instance: DuckDBInstance;
  let connection: DuckDBConnection;
  try {
    instance = await duckdb().DuckDBInstance.create(real);
    connection = await instance.connect();
  } catch (err) {
    heldHere.delete(real);
    throw (
      lockConflictError(real, err) ??
      new SluiceError('DESTINATION_UNREACHABLE', `cannot open destination DuckDB file ${real}: ${(err as Error).message}; check destination.path`, {
        cause: err,
        context: { path: real },
      })
    );
  }
  return new OpenFile(real, instance, connection);
}

class OpenFile implements DuckDbFile {
  private closed = false;
  private txn = false;

  constructor(
    readonly path: string,
    private readonly instance: DuckDBInstance,
    readonly connection: DuckDBConnection,
  ) {}

  get inTransaction(): boolean {
    return this.txn;
  }

  async run(sql: string, params: readonly Param[] = []): Promise<void> {
    try {
      await this.connection.run(sql, params.length ? [...params] : undefined);
    } catch (err) {
      throw classifyDuckDb(this.path, `running ${sql.trim().split(/\s+/).slice(0, 3).join(' ')}`, err);
    }
  }

  async all(sql: string, params: readonly Param[] = []): Promise<Record<string, unknown>[]> {
    try {
      const reader = await this.connection.runAndReadAll(sql, params.length ? [...params] : undefined);
      return reader.getRowObjectsJS() as Record<string, unknown>[];
    } catch (err) {
      throw classifyDuckDb(this.path, `reading ${sql.trim().split(/\s+/).slice(0, 3).join(' ')}`, err);
    }
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    if (this.txn) throw new Error('DuckDB destination: a transaction is already open on this connection');
    await this.run('BEGIN TRANSACTION');
    this.txn = true;
    try {
      const out = await fn();
      await this.run('COMMIT');
      return out;
    } catch (err) {
      await this.run('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      this.txn = false;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.connection.closeSync();
      this.instance.closeSync();
    } finally {
      heldHere.delete(this.path);
    }
  }
}
