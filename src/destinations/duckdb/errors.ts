/**
 * DuckDB's errors, classified at the driver boundary. DuckDB reports no SQLSTATE: its messages start
 * with the error's type ("IO Error: …", "Constraint Error: …"), and that word is what is classified.
 * Everything above looks only at the SluiceError's `code` and `retryable`.
 */
import { SluiceError } from '../../core/errors.js';

/** The type word of a DuckDB error message ("Conversion", "IO", "TransactionContext"), or null. */
export function duckErrorType(err: unknown): string | null {
  const m = /^([A-Za-z]+(?: [A-Za-z]+)*?) Error: /.exec(err instanceof Error ? err.message : String(err));
  return m ? m[1] : null;
}

/**
 * The error for a file another process holds, from DuckDB's lock message; null when `err` is not
 * a lock conflict.
 */
export function lockConflictError(path: string, err: unknown): SluiceError | null {
  const message = err instanceof Error ? err.message : String(err);
  if (!/Could not set lock on file/i.test(message)) return null;
  const m = /Conflicting lock is held in (.*?) \(PID (\d+)\)/.exec(message);
  const holder = m ? `process ${m[2]} (${m[1]})` : 'another process';
  return new SluiceError(
    'DESTINATION_UNREACHABLE',
    `destination DuckDB file ${path} is in use by ${holder}: DuckDB allows one process per database file, and sluice holds it for as long as ` +
      `\`sluice run\` runs; stop that process first (if it is another sluice run of this pipeline, let it be the one), ` +
      `or point destination.path at another file`,
    { cause: err, context: { path, pid: m ? Number(m[2]) : null, program: m ? m[1] : null } },
  );
}

/** A DuckDB error met while doing `what` on the file at `path`. SluiceErrors pass through. */
export function classifyDuckDb(path: string, what: string, err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const type = duckErrorType(err);
  const context = { path, duckdbError: type };
  if (/No space left on device/i.test(message)) {
    return new SluiceError('DESTINATION_ERROR', `destination DuckDB file ${path}: the disk is full while ${what}; free space on its file system, then start sluice again`, { cause: err, context });
  }
  if (type === 'Out of Memory') {
    return new SluiceError('DESTINATION_ERROR', `destination DuckDB file ${path}: out of memory while ${what} (${message}); lower chunkRows, or raise DuckDB's memory_limit`, { cause: err, context });
  }
  if (type === 'INTERNAL' || type === 'FATAL' || type === 'Fatal') {
    return new SluiceError('DESTINATION_ERROR', `destination DuckDB file ${path}: DuckDB stopped on an internal error while ${what} (${message}); start sluice again, which reopens the file and resumes from its state`, { cause: err, context });
  }
  // Two transactions of one file touching the same rows: the later may try again.
  const retryable = type === 'TransactionContext' && /conflict/i.test(message);
  return new SluiceError('DESTINATION_ERROR', `destination DuckDB file ${path}: ${what}: ${message}`, { cause: err, context, retryable });
}
