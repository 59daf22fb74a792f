/**
 * What a destination may ask of the source while it applies changes, handed to it by the pipeline:
 * a table's current description (after the source gained or changed columns), the names of column
 * types the change stream gives by number, and current rows by key (values an update image left out).
 * Defined here, beside neither port, so that a destination never imports a source: the pipeline
 * passes the source's implementation (sources/source.ts) through.
 */
import type { TableInfo } from './columns.js';
import type { TableName } from './types.js';

/** A column type as the change stream names it: the source's type number and modifier (-1: none). */
export type StreamType = readonly [typeId: number, typeMod: number];

export interface SourceLookups {
  /** The table as the source describes it now. */
  describeTable(table: TableName): Promise<TableInfo>;
  /** The source's name for each type (e.g. `numeric(12,2)`), in order. */
  typeNames(types: readonly StreamType[]): Promise<string[]>;
  /** Whether a type number is one of the source engine's own built-in types (the same on every server). */
  isBuiltinType(typeId: number): boolean;
  /**
   * Current rows of `table` with the given key values (one array per key column, in key order), as
   * text: each row is the key columns, then `columns`. Keys the source no longer has are left out.
   */
  rowsByKey(table: TableName, info: TableInfo, keyValues: readonly (readonly string[])[], columns: readonly string[]): Promise<(string | null)[][]>;
  /** Ends the connections it opened. */
  close(): Promise<void>;
}
