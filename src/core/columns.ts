/**
 * What sluice knows of a table and its columns, in the engine-neutral words every driver shares:
 * a source describes its tables with these, a destination creates and checks targets from them.
 * No I/O. Type text (`typeSql`, `baseSql`) is the source engine's own spelling; a destination maps it.
 */
import type { TableName } from './types.js';

export type TypeSupport =
  /** A built-in type: text I/O everywhere, binary COPY safe. */
  | 'builtin'
  /** An enum or domain that sluice re-creates in the destination. */
  | 'user'
  /** A base type from an extension: carried as text when the destination has the same type. */
  | 'external';

export interface ColumnInfo {
  readonly name: string;
  readonly attnum: number;
  readonly typeOid: number;
  /** `format_type()` output, schema-qualified for user types: usable in DDL and casts. */
  readonly typeSql: string;
  readonly notNull: boolean;
  readonly defaultSql: string | null;
  /** Expression of a STORED generated column, else null. */
  readonly generatedSql: string | null;
  readonly support: TypeSupport;
  /** Whether binary COPY can carry this column between databases (no embedded user type OIDs). */
  readonly binarySafe: boolean;
  /** How the column sorts and compares text; null for a type that is not collatable. */
  readonly collation: CollationInfo | null;
}

/**
 * A column's collation as it behaves: the database default resolved to the database's own provider
 * and locale, so that two servers can be compared (the name "default" says nothing by itself).
 */
export interface CollationInfo {
  /** pg_collation's schema and name ("pg_catalog"."default" for the database default). */
  readonly schema: string;
  readonly name: string;
  /** 'c' libc, 'i' ICU, 'b' builtin (PostgreSQL 17). */
  readonly provider: string;
  /** The locale: lc_collate for libc, the ICU or builtin locale otherwise. */
  readonly locale: string;
  readonly deterministic: boolean;
  /** Whether it is the database default. */
  readonly isDefault: boolean;
}

/**
 * Whether a collation orders text byte by byte (the same on every server): libc C/POSIX, builtin C,
 * and builtin C.UTF-8 (code point order, which is UTF-8's byte order; it exists only in UTF-8 databases).
 */
export function byteOrdered(c: Pick<CollationInfo, 'provider' | 'locale'>): boolean {
  return (c.provider === 'c' && (c.locale === 'C' || c.locale === 'POSIX')) || (c.provider === 'b' && /^C(\.UTF-?8)?$/i.test(c.locale));
}

export type UserTypeDef =
  | { readonly kind: 'enum'; readonly schema: string; readonly name: string; readonly labels: readonly string[] }
  | {
      readonly kind: 'domain';
      readonly schema: string;
      readonly name: string;
      readonly baseSql: string;
      readonly notNull: boolean;
      readonly defaultSql: string | null;
      readonly checks: readonly string[];
    };

export interface TableInfo {
  readonly table: TableName;
  readonly oid: number;
  readonly relkind: string;
  readonly columns: readonly ColumnInfo[];
  /** Primary key column names in key order (empty when the table has none). */
  readonly primaryKey: readonly string[];
  readonly replicaIdentity: 'd' | 'n' | 'f' | 'i';
  readonly rowsEstimated: number;
  readonly bytes: number;
  /** Enums and domains used by the columns, dependencies first. */
  readonly userTypes: readonly UserTypeDef[];
  /** Columns that sluice copies (generated columns are computed by the destination). */
  readonly copyColumns: readonly ColumnInfo[];
  readonly binarySafe: boolean;
}

/** A secondary index of a source table (every index but the primary key's), as the source defines it. */
export interface SourceIndex {
  /** The index's name (unquoted). */
  readonly name: string;
  /** `pg_get_indexdef()` of the index. */
  readonly definition: string;
  /** The definition's text after `ON <table> `: `USING method (...) [INCLUDE …] [WITH …] [WHERE …]`. */
  readonly body: string;
  readonly unique: boolean;
  /** Has a WHERE predicate. */
  readonly partial: boolean;
  /** Indexes an expression (not only columns). */
  readonly expression: boolean;
  readonly method: string;
  /** Backs a constraint (unique or exclusion), by the constraint's name; null otherwise. */
  readonly constraint: string | null;
  /** Unusable in the source (a failed CREATE INDEX CONCURRENTLY): not carried. */
  readonly valid: boolean;
}

/** A foreign key between two tables of one database (a destination carries them across reloads and swaps). */
export interface ForeignKey {
  readonly name: string;
  /** The table that has the constraint. */
  readonly table: TableName;
  /** The referenced table. */
  readonly references: TableName;
  /** pg_get_constraintdef without a trailing NOT VALID (names resolve by this session's search_path). */
  readonly definition: string;
  readonly validated: boolean;
}
