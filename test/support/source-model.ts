/**
 * The reference model of a source table for test/integration/applier-model.test.ts: its rows in
 * memory, and what one source transaction of row operations is in SQL (run on the real source) and
 * in captured changes (what pgoutput sends: a TOASTed value that an update did not change travels as
 * `false`, a primary-key change carries the old key).
 */
import type { CapturedValue, ChangeKind } from '../../src/core/types.js';

/** Keys are ids 1..MAX_ID. */
export const MAX_ID = 6;

/** A TOASTed value ('T…'): an update that leaves it alone sends it as unchanged. */
export const toasted = (t: string | null) => t !== null && t.startsWith('T');

/** A row operation; `pick` chooses an existing row (modulo their number), so every sequence is valid. */
export type RowOp =
  | { op: 'ins'; id: number; n: number; t: string | null }
  | { op: 'setN'; pick: number; n: number }
  | { op: 'setT'; pick: number; t: string | null }
  | { op: 'rekey'; pick: number; to: number; t?: string | null }
  | { op: 'del'; pick: number }
  | { op: 'trunc' };

/** One key layout of the table: an int key, or a composite key made of the same id. */
export interface Variant {
  readonly table: string;
  readonly keyCols: readonly string[];
  keyOf(id: number): string[];
  idOf(key: readonly unknown[]): number;
}

export const INT_KEY: Variant = { table: 'fc_int', keyCols: ['id'], keyOf: (id) => [String(id)], idOf: (k) => Number(k[0]) };
export const COMPOSITE_KEY: Variant = {
  table: 'fc_pair',
  keyCols: ['a', 'b'],
  keyOf: (id) => [String(id >> 2), String(id & 3)],
  idOf: (k) => Number(k[0]) * 4 + Number(k[1]),
};

export function tableDdl(v: Variant): string {
  return `CREATE TABLE public.${v.table} (${v.keyCols.map((c) => `${c} int NOT NULL`).join(', ')}, n int, t text, PRIMARY KEY (${v.keyCols.join(', ')}))`;
}

export interface Row {
  n: number;
  t: string | null;
}

export interface CapturedChange {
  kind: ChangeKind;
  row?: CapturedValue[];
  oldKey?: string[];
}

/** A transaction of the model: its SQL for the real source, its changes, and a line for the trace. */
export interface ModelTxn {
  sql: [string, unknown[]][];
  changes: CapturedChange[];
  /** Ids that an insert or update image was written for. */
  wrote: number[];
  text: string;
}

export class SourceModel {
  readonly rows = new Map<number, Row>();
  private readonly tbl: string;

  constructor(readonly v: Variant) {
    this.tbl = `public.${v.table}`;
  }

  /** The rows as [id, n, t], by id. */
  sorted(): [number, number, string | null][] {
    return [...this.rows.entries()].sort((a, b) => a[0] - b[0]).map(([id, r]) => [id, r.n, r.t]);
  }

  private image(id: number, row: Row, tSent: boolean): CapturedValue[] {
    return [...this.v.keyOf(id), String(row.n), tSent || !toasted(row.t) ? row.t : false];
  }

  private where(first: number): string {
    return this.v.keyCols.map((c, i) => `${c} = $${first + i}`).join(' AND ');
  }

  /** Applies row operations to the model (those that do not apply to its rows are skipped). */
  transact(ops: readonly RowOp[]): ModelTxn {
    const { v, tbl } = this;
    const out: ModelTxn = { sql: [], changes: [], wrote: [], text: '' };
    const did: string[] = [];
    for (const o of ops) {
      const ids = [...this.rows.keys()].sort((a, b) => a - b);
      if ('pick' in o && ids.length === 0) continue;
      const id = 'pick' in o ? ids[o.pick % ids.length] : 0;
      switch (o.op) {
        case 'ins': {
          if (this.rows.has(o.id)) continue;
          const row = { n: o.n, t: o.t };
          this.rows.set(o.id, row);
          out.sql.push([`INSERT INTO ${tbl} VALUES (${[...v.keyCols, 'n', 't'].map((_, i) => `$${i + 1}`).join(', ')})`, [...v.keyOf(o.id), o.n, o.t]]);
          out.changes.push({ kind: 'insert', row: this.image(o.id, row, true) });
          out.wrote.push(o.id);
          did.push(`ins ${o.id} n=${o.n} t=${o.t}`);
          break;
        }
        case 'setN': {
          const row = this.rows.get(id)!;
          row.n = o.n;
          out.sql.push([`UPDATE ${tbl} SET n = $1 WHERE ${this.where(2)}`, [o.n, ...v.keyOf(id)]]);
          out.changes.push({ kind: 'update', row: this.image(id, row, false) });
          out.wrote.push(id);
          did.push(`set ${id} n=${o.n}${toasted(row.t) ? ' (t unchanged)' : ''}`);
          break;
        }
        case 'setT': {
          const row = this.rows.get(id)!;
          row.t = o.t;
          out.sql.push([`UPDATE ${tbl} SET t = $1 WHERE ${this.where(2)}`, [o.t, ...v.keyOf(id)]]);
          out.changes.push({ kind: 'update', row: this.image(id, row, true) });
          out.wrote.push(id);
          did.push(`set ${id} t=${o.t}`);
          break;
        }
        case 'rekey': {
          if (this.rows.has(o.to)) continue;
          const row = this.rows.get(id)!;
          const tSet = o.t !== undefined;
          if (tSet) row.t = o.t!;
          this.rows.delete(id);
          this.rows.set(o.to, row);
          const k = v.keyCols.length;
          const sets = [...v.keyCols.map((c, i) => `${c} = $${i + 1}`), ...(tSet ? [`t = $${k + 1}`] : [])];
          out.sql.push([`UPDATE ${tbl} SET ${sets.join(', ')} WHERE ${this.where(k + (tSet ? 2 : 1))}`, [...v.keyOf(o.to), ...(tSet ? [o.t] : []), ...v.keyOf(id)]]);
          out.changes.push({ kind: 'update', row: this.image(o.to, row, tSet), oldKey: v.keyOf(id) });
          out.wrote.push(o.to);
          did.push(`rekey ${id}->${o.to}${tSet ? ` t=${o.t}` : toasted(row.t) ? ' (t unchanged)' : ''}`);
          break;
        }
        case 'del':
          this.rows.delete(id);
          out.sql.push([`DELETE FROM ${tbl} WHERE ${this.where(1)}`, v.keyOf(id)]);
          out.changes.push({ kind: 'delete', oldKey: v.keyOf(id) });
          did.push(`del ${id}`);
          break;
        case 'trunc':
          this.rows.clear();
          out.sql.push([`TRUNCATE ${tbl}`, []]);
          out.changes.push({ kind: 'truncate' });
          did.push('truncate');
          break;
      }
    }
    out.text = did.join('; ');
    return out;
  }
}
