/**
 * The words of sluice (see docs/architecture.md):
 *
 * - position: a total order over captured changes. For PostgreSQL it is the commit LSN of the
 *   change's transaction plus the change's index inside that transaction (`Position`).
 * - change: one captured row event (insert, update, delete) or a truncate, with its position.
 * - change log: the durable, ordered buffer of changes between capture and apply.
 * - target: a destination table that sluice writes (the live table; later a staging table). Each
 *   target has an apply cursor: the position of the last change whose effect is committed there.
 * - backfill run: one load of one table (a mode, a strategy, its chunks).
 * - chunk: a bounded key range of the source table, copied in one destination transaction.
 * - mode: what a backfill does to the destination table: online (staging table + atomic swap), upsert,
 *   truncate, drop.
 * - L0: the LSN from which a table's changes are guaranteed to be in the change log, fixed before
 *   the first chunk is read.
 */

/** A PostgreSQL log sequence number. A branded bigint so it is never mixed up with a count. */
export type Lsn = bigint & { readonly __brand: 'Lsn' };

export const Lsn = {
  zero: 0n as Lsn,
  of(value: bigint | number): Lsn {
    return BigInt(value) as Lsn;
  },
  /** Parses the `XXX/XXXXXXXX` text form that PostgreSQL prints. */
  parse(text: string): Lsn {
    const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
    if (!m) throw new Error(`not an LSN: ${JSON.stringify(text)}`);
    return ((BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`)) as Lsn;
  },
  format(lsn: Lsn): string {
    return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
  },
  max(a: Lsn, b: Lsn): Lsn {
    return a > b ? a : b;
  },
  min(a: Lsn, b: Lsn): Lsn {
    return a < b ? a : b;
  },
};

/** Where a change sits in the total order: its transaction's commit LSN, then its index in it. */
export interface Position {
  readonly lsn: Lsn;
  readonly idx: number;
}

export const Position = {
  /** Before every change: the cursor of a target that has applied nothing. */
  start: { lsn: Lsn.zero, idx: -1 } as Position,
  /** The cursor that makes a target replay every change committed at or after `lsn`. */
  before(lsn: Lsn): Position {
    return { lsn: (lsn > 0n ? lsn - 1n : 0n) as Lsn, idx: lsn > 0n ? Number.MAX_SAFE_INTEGER : -1 };
  },
  compare(a: Position, b: Position): number {
    if (a.lsn !== b.lsn) return a.lsn < b.lsn ? -1 : 1;
    return a.idx === b.idx ? 0 : a.idx < b.idx ? -1 : 1;
  },
  format(p: Position): string {
    return `${Lsn.format(p.lsn)}#${p.idx}`;
  },
};

/**
 * A column value as captured: PostgreSQL's text representation, null, or `false` for
 * "unchanged TOASTed value not sent" (pgoutput's 'u'). `false` is never a real value because
 * every real value travels as text.
 */
export type CapturedValue = string | null | false;
export const UNCHANGED = false as const;

export type ChangeKind = 'insert' | 'update' | 'delete' | 'truncate';

/** A source table's column set as the change stream last described it. */
export interface RelationColumns {
  /** Column names in the source's attribute order. */
  readonly names: readonly string[];
  readonly typeOids: readonly number[];
  /** Type modifiers (`atttypmod`, -1 for none), e.g. varchar(120) → 124; absent in logs written before sluice kept them. */
  readonly typeMods?: readonly number[];
  /** Indexes (into names) of the replica identity (primary key) columns. */
  readonly keyIndexes: readonly number[];
}

export interface Change {
  readonly position: Position;
  /** Qualified source table, `schema.name`. */
  readonly table: string;
  readonly kind: ChangeKind;
  /** Id of the column-set version (the change log keeps one per distinct `RelationColumns`). */
  readonly relationVersion: number;
  /** The new row for insert and update, in relation column order. */
  readonly row?: readonly CapturedValue[];
  /** For delete, and for an update that changed the key: the old key values in key order. */
  readonly oldKey?: readonly (string | null)[];
  /** Commit time of the change's transaction, epoch milliseconds. */
  readonly commitTimeMs: number;
}

export type BackfillMode = 'online' | 'upsert' | 'truncate' | 'drop';
export type BackfillStrategy = 'keyset' | 'interval' | 'ctid' | 'daterange';

/** The lifecycle of a table in a pipeline; see table-state.ts for the allowed transitions. */
export type TableState =
  | 'queued'
  | 'backfilling'
  | 'catching_up'
  | 'swapping'
  | 'streaming'
  | 'failed'
  | 'cancelled';

/** A qualified table name. */
export interface TableName {
  readonly schema: string;
  readonly name: string;
}

export const TableName = {
  parse(text: string, defaultSchema = 'public'): TableName {
    const parts = splitQualified(text);
    if (parts.length === 1) return { schema: defaultSchema, name: parts[0] };
    if (parts.length === 2) return { schema: parts[0], name: parts[1] };
    throw new Error(`not a table name: ${JSON.stringify(text)} (expected schema.table)`);
  },
  format(t: TableName): string {
    return `${t.schema}.${t.name}`;
  },
};

function splitQualified(text: string): string[] {
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      if (quoted && text[i + 1] === '"') {
        cur += '"';
        i++;
      } else quoted = !quoted;
    } else if (c === '.' && !quoted) {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  if (quoted || parts.some((p) => p.length === 0)) throw new Error(`not a table name: ${JSON.stringify(text)}`);
  return parts;
}
