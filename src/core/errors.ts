/**
 * One error type with stable codes people can grep for. Drivers classify their own errors at the
 * boundary (sources/postgres/errors.ts); everything above only looks at `code` and `retryable`.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_NOT_FOUND'
  | 'SOURCE_UNREACHABLE'
  | 'DESTINATION_UNREACHABLE'
  | 'WAL_LEVEL_NOT_LOGICAL'
  | 'MISSING_REPLICATION_PRIVILEGE'
  | 'TABLE_NOT_FOUND'
  | 'NO_PRIMARY_KEY'
  | 'UNSUPPORTED_TYPE'
  | 'SLOT_IN_USE'
  | 'UNSUPPORTED_MODE'
  | 'BAD_USAGE'
  | 'CURSOR_STUCK'
  | 'SOURCE_ERROR'
  | 'DESTINATION_ERROR'
  | 'CHANGELOG_ERROR'
  | 'STATE_FORMAT'
  | 'MISSING_PRIVILEGE'
  | 'CHANGELOG_DISK_FULL'
  | 'CHANGELOG_UNREACHABLE'
  | 'CHANGELOG_FENCED'
  | 'CHANGELOG_NO_QUORUM'
  | 'CHUNK_LEASE_LOST'
  | 'SLOT_LOST'
  | 'INTERNAL';

/** Codes that mean "the environment or the input cannot work": the CLI exits with 2 for them. */
const USAGE_CODES: ReadonlySet<ErrorCode> = new Set([
  'CONFIG_INVALID',
  'CONFIG_NOT_FOUND',
  'SOURCE_UNREACHABLE',
  'DESTINATION_UNREACHABLE',
  'WAL_LEVEL_NOT_LOGICAL',
  'MISSING_REPLICATION_PRIVILEGE',
  'TABLE_NOT_FOUND',
  'NO_PRIMARY_KEY',
  'UNSUPPORTED_TYPE',
  'SLOT_IN_USE',
  'UNSUPPORTED_MODE',
  'BAD_USAGE',
  'STATE_FORMAT',
  'MISSING_PRIVILEGE',
  // The environment stopped working under a running pipeline; the message names the fix.
  'CHANGELOG_DISK_FULL',
  // The log's server cannot be reached, or runs without JetStream.
  'CHANGELOG_UNREACHABLE',
  'SLOT_LOST',
]);

export interface SluiceErrorOptions {
  retryable?: boolean;
  cause?: unknown;
  context?: Record<string, unknown>;
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly context: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.context = options.context ?? {};
  }

  /** True when the input or the environment is wrong, rather than a run failing. */
  get isUsageError(): boolean {
    return USAGE_CODES.has(this.code);
  }
}

export function isSluiceError(err: unknown): err is SluiceError {
  return err instanceof SluiceError;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** A rollback asked of a table whose newest archive is gone (or never was): what keeps one, and where to look. */
export function noArchiveToRollBack(table: string): SluiceError {
  return new SluiceError(
    'BAD_USAGE',
    `${table} has no archive to roll back to: an online backfill keeps the table it replaced for online.archiveRetentionHours ` +
      `(or for good with --keep-archive), and only the newest one, while it is kept, can be swapped back (\`sluice archives list\` shows them)`,
  );
}
