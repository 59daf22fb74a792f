/**
 * The source port: what the pipeline needs of a database it reads from, named in the pipeline's
 * words. A driver (sources/postgres/, later sources/mysql/) implements it; only the composition root
 * (src/engines.ts) names a driver. docs/architecture.md ("Ports") shows who implements what.
 */
import type { TableInfo } from '../core/columns.js';
import type { SluiceError } from '../core/errors.js';
import type { SourceLookups } from '../core/source-lookups.js';
import type { TableName } from '../core/types.js';

/** What a backfill asks of the source table (from the config, or a request's flags). */
export interface BackfillOptions {
  readonly mode: string;
  readonly strategy: string;
  readonly parallelism: number;
  readonly where: string;
  /** daterange: the column the chunks are time ranges of. */
  readonly dateColumn?: string;
}

/** What sluice checks on the source before anything runs (one connection). */
export interface SourceInspection {
  describeTable(table: TableName): Promise<TableInfo>;
  /**
   * Refuses a strategy, parallelism or scope the table cannot take, with a BAD_USAGE error whose
   * message starts with `label(option)` (a config path or a --flag).
   */
  checkBackfillOptions(info: TableInfo, options: BackfillOptions, label: (option: string) => string): Promise<void>;
  /**
   * Checks that the source can capture changes of `tables` (server settings, grants, primary keys),
   * refusing with a usage error whose message names the fix. Optional: a driver whose checks run
   * elsewhere (PostgreSQL: the pipeline's preflight) leaves it out.
   */
  checkCapture?(tables: readonly TableName[]): Promise<void>;
  close(): Promise<void>;
}

export interface Source {
  /** The config's `source.type`. */
  readonly type: string;
  /**
   * Reads a destination's apply session asks for while it applies (a table's columns, type names,
   * current rows by key), on a connection of their own named `applicationName`.
   */
  openLookups(applicationName: string): SourceLookups;
  openInspection(applicationName: string): Promise<SourceInspection>;
  /** Classifies an error met while talking to the source (retryable or not, with the server's fields). */
  classifyError(what: string, err: unknown): SluiceError;
  /** Whether a (classified) error means the source could not be reached. */
  isConnectionLoss(err: unknown): boolean;
}
