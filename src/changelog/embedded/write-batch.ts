/**
 * The changes of one write of the embedded change log, packed so that another thread can write them:
 * the fields of every change in one Float64Array, the row bytes (TupleData) in a few large buffers,
 * the strings (table names, old keys as JSON) in two short arrays. Handed over with postMessage,
 * the typed arrays move (transfer) instead of being copied, and come back to be used again.
 *
 * The same batch is what the log writes in its own thread (`EmbeddedChangeLog.flush`), so there is one
 * way to write changes whichever thread does it.
 */
import type { ChangeKind } from '../../core/types.js';
import type { LogHead, PendingChange } from '../changelog.js';
import { encodeTuple } from '../../core/tuple-data.js';

/** Numbers per change in `meta`: table, lsn high, lsn low, idx, kind, relation version, buffer, offset, length, commit ms, old key. */
export const FIELDS = 11;

/** Size of the buffers that hold the rows of pending changes until a write takes them. */
const ARENA_BYTES = 4 << 20;

/** Changes the first `meta` array holds (it doubles when a batch is larger). */
const META_CHANGES = 16_384;

/** How many returned buffers of each kind are kept for later batches. */
const SPARES = 8;

export const KIND_CODE: Record<ChangeKind, number> = { insert: 1, update: 2, delete: 3, truncate: 4 };

export interface PendingRelation {
  readonly version: number;
  readonly table: string;
  readonly json: string;
}

export interface WriteBatch {
  /** Changes in `meta` (its length may be larger). */
  readonly count: number;
  readonly meta: Float64Array;
  /** The buffers the rows are in: a change's row is `buffers[b]` from `offset`, `length` bytes (b = -1: no row). */
  readonly buffers: ArrayBuffer[];
  readonly tables: string[];
  readonly oldKeys: string[];
  readonly relations: PendingRelation[];
  /** The head to store with the changes (null: it did not move). */
  readonly head: LogHead | null;
}

/** The changes appended since the last write, packed as they arrive. */
export class PendingBatch {
  count = 0;
  private meta: Float64Array = new Float64Array(META_CHANGES * FIELDS);
  private buffers: Buffer[] = [];
  private arena: Buffer | null = null;
  private arenaPos = 0;
  private tableIndex = new Map<string, number>();
  private tables: string[] = [];
  private oldKeys: string[] = [];
  private lastLsn = -1n;
  private lsnHigh = 0;
  private lsnLow = 0;
  private readonly spareMeta: Float64Array[] = [];
  private readonly spareBuffers: ArrayBuffer[] = [];

  append(c: PendingChange): void {
    if ((this.count + 1) * FIELDS > this.meta.length) {
      const bigger: Float64Array = new Float64Array(this.meta.length * 2);
      bigger.set(this.meta);
      this.meta = bigger;
    }
    const m = this.meta;
    const at = this.count++ * FIELDS;
    let t = this.tableIndex.get(c.table);
    if (t === undefined) {
      t = this.tables.push(c.table) - 1;
      this.tableIndex.set(c.table, t);
    }
    if (c.lsn !== this.lastLsn) {
      this.lastLsn = c.lsn;
      this.lsnHigh = Number(c.lsn >> 32n);
      this.lsnLow = Number(c.lsn & 0xffffffffn);
    }
    m[at] = t;
    m[at + 1] = this.lsnHigh;
    m[at + 2] = this.lsnLow;
    m[at + 3] = c.idx;
    m[at + 4] = KIND_CODE[c.kind];
    m[at + 5] = c.relationVersion;
    const row = c.rowData ?? (c.row ? encodeTuple(c.row) : null);
    if (row) this.keep(row, at);
    else m[at + 6] = -1;
    m[at + 9] = c.commitTimeMs;
    m[at + 10] = c.oldKey === undefined ? -1 : this.oldKeys.push(JSON.stringify(c.oldKey)) - 1;
  }

  /** Copies the row into the current buffer (SQLite copies what it binds; the caller may reuse `bytes`). */
  private keep(bytes: Buffer, at: number): void {
    const len = bytes.length;
    if (this.arena === null || this.arenaPos + len > this.arena.length) {
      const spare = len <= ARENA_BYTES ? this.spareBuffers.pop() : undefined;
      this.arena = Buffer.from(spare ?? new ArrayBuffer(Math.max(ARENA_BYTES, len)));
      this.arenaPos = 0;
      this.buffers.push(this.arena);
    }
    bytes.copy(this.arena, this.arenaPos);
    this.meta[at + 6] = this.buffers.length - 1;
    this.meta[at + 7] = this.arenaPos;
    this.meta[at + 8] = len;
    this.arenaPos += len;
  }

  /** Everything appended, as one batch; starts a new one. */
  take(relations: PendingRelation[], head: LogHead | null): WriteBatch {
    const batch: WriteBatch = {
      count: this.count,
      meta: this.meta,
      buffers: this.buffers.map((b) => b.buffer as ArrayBuffer),
      tables: this.tables,
      oldKeys: this.oldKeys,
      relations,
      head,
    };
    this.count = 0;
    this.meta = this.spareMeta.pop() ?? new Float64Array(META_CHANGES * FIELDS);
    this.buffers = [];
    this.arena = null;
    this.tableIndex = new Map();
    this.tables = [];
    this.oldKeys = [];
    return batch;
  }

  /** Takes back the arrays of a written batch for later batches. */
  recycle(batch: Pick<WriteBatch, 'meta' | 'buffers'>): void {
    if (batch.meta.length === META_CHANGES * FIELDS && this.spareMeta.length < SPARES) this.spareMeta.push(batch.meta);
    for (const b of batch.buffers) if (b.byteLength === ARENA_BYTES && this.spareBuffers.length < SPARES) this.spareBuffers.push(b);
  }

  /** Bytes held by rows not yet written. */
  get bytes(): number {
    return this.buffers.length === 0 ? 0 : (this.buffers.length - 1) * ARENA_BYTES + this.arenaPos;
  }
}

/** The row parameter of each change: a view of the batch's buffers, or null. */
export function batchRows(batch: WriteBatch): (i: number) => Buffer | null {
  const views = batch.buffers.map((b) => Buffer.from(b));
  const m = batch.meta;
  return (i) => {
    const at = i * FIELDS;
    const b = m[at + 6];
    return b < 0 ? null : views[b].subarray(m[at + 7], m[at + 7] + m[at + 8]);
  };
}
