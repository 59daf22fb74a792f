/**
 * The embedded change log: one SQLite file (WAL journal, synchronous=FULL, so a committed
 * transaction has been fsync'd). Chosen over a hand-rolled segment file because SQLite gives
 * crash-safe appends, per-table ordered reads and cheap purges from one dependency
 * (see docs/architecture.md).
 *
 * Its format (PRAGMA user_version) and the migrations from older formats are log-format.ts.
 *
 * Layout: changes are keyed by (table, lsn, idx) so each target's apply cursor reads its own
 * table's changes in position order with one index range scan. `meta.head_*` is the durable head;
 * rows above it belong to a transaction whose commit was not yet flushed and are deleted at open
 * (the slot re-sends that transaction, because it was never acknowledged).
 */
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { mkdirSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { SluiceError } from '../../core/errors.js';
import { Lsn, type Change, type ChangeKind, type Position, type RelationColumns } from '../../core/types.js';
import type { Logger } from '../../core/logger.js';
import type { ChangeLog, LogHead, PendingChange } from '../changelog.js';
import { decodeTuple, encodeTuple } from '../../core/tuple-data.js';
import { ensureLogFormat } from './log-format.js';

/** Changes per multi-row INSERT (8 parameters each; SQLite allows 32,766). */
const INSERT_ROWS = 64;

/** Changes read per call into SQLite (read() makes several calls for a larger limit). */
const READ_PAGE = 1024;

/** Size of the buffers that hold the rows of pending changes until a flush writes them. */
const ARENA_BYTES = 4 << 20;

const KIND_CODE: Record<ChangeKind, number> = { insert: 1, update: 2, delete: 3, truncate: 4 };
const CODE_KIND: ChangeKind[] = ['insert', 'insert', 'update', 'delete', 'truncate'];

/**
 * A row as read (raw arrays, plain numbers): the LSN in two 32-bit halves, so that only one BigInt
 * is made per transaction instead of five per change; then idx, kind, rel, row, old_key, commit_ms.
 * `row` is TupleData (format 3 on), or JSON text in a row written by format 2 or earlier.
 */
type Row = [number, number, number, number, number, Buffer | string | null, string | null, number];

export class EmbeddedChangeLog implements ChangeLog {
  private readonly db: Database.Database;
  private readonly pending: PendingChange[] = [];
  /** The row of each pending change as TupleData (views of `arena`), or null. */
  private readonly pendingRows: (Buffer | null)[] = [];
  private arena = Buffer.allocUnsafe(0);
  private arenaPos = 0;
  private readonly relations = new Map<number, RelationColumns>();
  private readonly latestVersion = new Map<string, { version: number; key: string }>();
  private pendingRelations: { version: number; table: string; json: string }[] = [];
  private nextVersion = 1;
  private durable: LogHead;
  private staged: LogHead;
  /** Set when a write failed: nothing more is written, so nothing past `durable` is ever acknowledged. */
  private failure: SluiceError | null = null;

  private readonly insertChange: Database.Statement;
  /** INSERT of INSERT_ROWS changes in one statement: one call into SQLite per group, not per change. */
  private readonly insertChanges: Database.Statement;
  private readonly setMeta: Database.Statement;
  private readonly insertRelation: Database.Statement;
  private readonly readChanges: Database.Statement;
  private readonly readChangesUpTo: Database.Statement;
  private readonly purgeChanges: Database.Statement;
  private readonly countChanges: Database.Statement;

  /**
   * `role: 'reader'` opens the file beside a writer in another thread (capture): it reads, purges and
   * learns the durable head from the writer (`setDurable`) instead of owning it. Either role creates
   * a new file, migrates an older format and refuses a newer one (log-format.ts).
   */
  constructor(readonly file: string, options: { fsync?: boolean; role?: 'writer' | 'reader'; logger?: Logger } = {}) {
    mkdirSync(dirname(file), { recursive: true });
    try {
      this.db = new Database(file);
    } catch (err) {
      throw new SluiceError('CHANGELOG_ERROR', `change log ${file}: cannot open (${(err as Error).message}); check log.path`, { cause: err });
    }
    try {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${options.fsync === false ? 'OFF' : 'FULL'}`);
      // A small page cache: writes append at the end of the index and reads follow close behind, so the
      // pages they touch are recent; a large cache (one per thread) was most of the resident memory.
      this.db.pragma('cache_size = -8192');
      this.db.pragma('busy_timeout = 10000');
      ensureLogFormat(this.db, file, options.logger);
      const meta = new Map<string, string>(
        (this.db.prepare('SELECT key, value FROM meta').all() as { key: string; value: string }[]).map((r) => [r.key, r.value]),
      );
      this.durable = {
        lsn: Lsn.of(BigInt(meta.get('head_lsn') ?? '0')),
        endLsn: Lsn.of(BigInt(meta.get('head_end_lsn') ?? '0')),
        commitTimeMs: Number(meta.get('head_commit_ms') ?? '0'),
      };
      this.staged = this.durable;
      // A transaction whose commit never became durable: the source sends it again.
      if (options.role !== 'reader') this.db.prepare('DELETE FROM changes WHERE lsn > ?').run(this.durable.lsn);
      for (const r of this.db.prepare('SELECT version, tbl, columns FROM relations ORDER BY version').all() as {
        version: number;
        tbl: string;
        columns: string;
      }[]) {
        this.relations.set(r.version, JSON.parse(r.columns) as RelationColumns);
        this.latestVersion.set(r.tbl, { version: r.version, key: r.columns });
        this.nextVersion = r.version + 1;
      }
    } catch (err) {
      this.db.close();
      // A format this sluice cannot read is named as such; anything else is a write/open failure.
      throw err instanceof SluiceError ? err : writeError(file, 'cannot open', err, null);
    }

    this.insertChange = this.db.prepare(
      'INSERT OR REPLACE INTO changes (tbl, lsn, idx, kind, rel, row, old_key, commit_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.insertChanges = this.db.prepare(
      'INSERT OR REPLACE INTO changes (tbl, lsn, idx, kind, rel, row, old_key, commit_ms) VALUES ' +
        Array.from({ length: INSERT_ROWS }, () => '(?, ?, ?, ?, ?, ?, ?, ?)').join(', '),
    );
    this.setMeta = this.db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)');
    this.insertRelation = this.db.prepare('INSERT OR REPLACE INTO relations (version, tbl, columns) VALUES (?, ?, ?)');
    this.readChanges = this.db
      .prepare(
        `SELECT lsn >> 32, lsn & 4294967295, idx, kind, rel, row, old_key, commit_ms FROM changes
         WHERE tbl = ? AND (lsn, idx) > (?, ?) AND lsn <= ? ORDER BY lsn, idx LIMIT ?`,
      )
      .raw(true);
    this.readChangesUpTo = this.db
      .prepare(
        `SELECT lsn >> 32, lsn & 4294967295, idx, kind, rel, row, old_key, commit_ms FROM changes
         WHERE tbl = ? AND (lsn, idx) > (?, ?) AND (lsn, idx) <= (?, ?) AND lsn <= ? ORDER BY lsn, idx LIMIT ?`,
      )
      .raw(true);
    this.purgeChanges = this.db.prepare('DELETE FROM changes WHERE tbl = ? AND (lsn, idx) <= (?, ?)');
    this.countChanges = this.db.prepare('SELECT count(*) AS n FROM changes WHERE tbl = ? AND (lsn, idx) > (?, ?) AND lsn <= ?');
  }

  /** A random id written when the file is created: tells one change log from another. */
  identity(): string {
    const row = this.db.prepare(`SELECT value FROM meta WHERE key = 'log_id'`).get() as { value: string } | undefined;
    if (row) return row.value;
    const id = randomUUID();
    try {
      this.setMeta.run('log_id', id);
    } catch (err) {
      throw writeError(this.file, 'cannot write its identity', err, this.durable);
    }
    return id;
  }

  get buffered(): number {
    return this.pending.length;
  }

  relationVersion(table: string, columns: RelationColumns): number {
    // A type modifier change (varchar(120) → varchar(300)) is a new version too: the Applier compares them.
    const json = JSON.stringify({ names: columns.names, typeOids: columns.typeOids, typeMods: columns.typeMods, keyIndexes: columns.keyIndexes });
    const latest = this.latestVersion.get(table);
    if (latest && latest.key === json) return latest.version;
    const version = this.nextVersion++;
    this.relations.set(version, JSON.parse(json) as RelationColumns);
    this.latestVersion.set(table, { version, key: json });
    this.pendingRelations.push({ version, table, json });
    return version;
  }

  /** The writer in the capture thread reports its durable head here (reader role). */
  setDurable(head: LogHead): void {
    if (head.lsn >= this.durable.lsn) this.durable = head;
  }

  relation(version: number): RelationColumns {
    if (!this.relations.has(version)) {
      // Written by the capture thread after this reader loaded its cache.
      const row = this.db.prepare('SELECT columns FROM relations WHERE version = ?').get(version) as { columns: string } | undefined;
      if (row) this.relations.set(version, JSON.parse(row.columns) as RelationColumns);
    }
    const r = this.relations.get(version);
    if (!r) throw new SluiceError('CHANGELOG_ERROR', `change log ${this.file}: unknown relation version ${version}`);
    return r;
  }

  previousRelation(table: string, version: number): RelationColumns | null {
    const row = this.db.prepare('SELECT version FROM relations WHERE tbl = ? AND version < ? ORDER BY version DESC LIMIT 1').get(table, version) as
      | { version: number }
      | undefined;
    return row ? this.relation(row.version) : null;
  }

  append(change: PendingChange): void {
    this.pending.push(change);
    this.pendingRows.push(change.rowData ? this.keep(change.rowData) : change.row ? encodeTuple(change.row) : null);
  }

  /** A copy of `bytes` that lives until the next write (SQLite copies what it binds). */
  private keep(bytes: Buffer): Buffer {
    const len = bytes.length;
    if (this.arenaPos + len > this.arena.length) {
      this.arena = Buffer.allocUnsafe(Math.max(ARENA_BYTES, len));
      this.arenaPos = 0;
    }
    const start = this.arenaPos;
    bytes.copy(this.arena, start);
    this.arenaPos = start + len;
    return this.arena.subarray(start, start + len);
  }

  commit(lsn: Lsn, endLsn: Lsn, commitTimeMs: number): void {
    this.staged = { lsn, endLsn: Lsn.max(endLsn, this.staged.endLsn), commitTimeMs };
  }

  advance(endLsn: Lsn): void {
    if (endLsn > this.staged.endLsn) this.staged = { ...this.staged, endLsn };
  }

  flush(): LogHead {
    if (this.failure) throw this.failure;
    try {
      return this.write();
    } catch (err) {
      this.failure = writeError(this.file, 'write failed', err, this.durable);
      throw this.failure;
    }
  }

  private write(): LogHead {
    const changes = this.pending.splice(0);
    const rows = this.pendingRows.splice(0);
    this.arenaPos = 0;
    const relations = this.pendingRelations.splice(0);
    const head = this.staged;
    const headMoved = head.lsn !== this.durable.lsn || head.endLsn !== this.durable.endLsn;
    if (changes.length === 0 && relations.length === 0 && !headMoved) return this.durable;
    this.db.transaction(() => {
      for (const r of relations) this.insertRelation.run(r.version, r.table, r.json);
      const params: unknown[] = new Array(INSERT_ROWS * 8);
      let i = 0;
      for (; i + INSERT_ROWS <= changes.length; i += INSERT_ROWS) {
        for (let j = 0; j < INSERT_ROWS; j++) changeParams(changes[i + j], rows[i + j], params, j * 8);
        this.insertChanges.run(params);
      }
      const one: unknown[] = new Array(8);
      for (; i < changes.length; i++) {
        changeParams(changes[i], rows[i], one, 0);
        this.insertChange.run(one);
      }
      if (headMoved) {
        this.setMeta.run('head_lsn', head.lsn.toString());
        this.setMeta.run('head_end_lsn', head.endLsn.toString());
        this.setMeta.run('head_commit_ms', String(head.commitTimeMs));
      }
    })();
    this.durable = head;
    return head;
  }

  head(): LogHead {
    return this.durable;
  }

  read(table: string, after: Position, limit: number, upTo?: Position): Change[] {
    return this.readBatch(table, after, { limit, maxBytes: Number.MAX_SAFE_INTEGER, upTo }).changes;
  }

  readBatch(table: string, after: Position, o: { readonly limit: number; readonly maxBytes: number; readonly upTo?: Position }): { changes: Change[]; full: boolean } {
    const out: Change[] = [];
    const budget = { bytes: o.maxBytes };
    let from = after;
    // In pages: SQLite hands every row's BLOB over as a Buffer of its own; a page's rows and Buffers
    // are garbage as soon as the page is decoded, so they die young instead of being held (and
    // promoted to the old generation) for a whole batch of up to `limit` changes.
    while (out.length < o.limit) {
      const want = Math.min(READ_PAGE, o.limit - out.length);
      const got = this.readPage(table, from, want, o.upTo, out, budget);
      if (budget.bytes <= 0) return { changes: out, full: true };
      if (got < want) return { changes: out, full: false };
      from = out[out.length - 1].position;
    }
    return { changes: out, full: true };
  }

  /**
   * Appends to `out` up to `limit` changes after `after`, taking each change's stored row size from
   * `budget.bytes` and stopping once it is spent; returns how many rows SQLite returned.
   */
  private readPage(table: string, after: Position, limit: number, upTo: Position | undefined, out: Change[], budget: { bytes: number }): number {
    const idx = BigInt(after.idx);
    const rows = (
      upTo
        ? this.readChangesUpTo.all(table, after.lsn, idx, upTo.lsn, BigInt(upTo.idx), this.durable.lsn, limit)
        : this.readChanges.all(table, after.lsn, idx, this.durable.lsn, limit)
    ) as Row[];
    let hi = -1;
    let lo = -1;
    let lsn = Lsn.zero;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      if (r[0] !== hi || r[1] !== lo) {
        hi = r[0];
        lo = r[1];
        lsn = ((BigInt(hi) << 32n) | BigInt(lo)) as Lsn;
      }
      const row = r[5];
      const oldKey = r[6];
      if (row !== null) budget.bytes -= row.length;
      out.push({
        position: { lsn, idx: r[2] },
        table,
        kind: CODE_KIND[r[3]],
        relationVersion: r[4],
        row: row === null ? undefined : typeof row === 'string' ? JSON.parse(row) : decodeTuple(row),
        oldKey: oldKey === null ? undefined : JSON.parse(oldKey),
        commitTimeMs: r[7],
      });
      if (budget.bytes <= 0) return i + 1;
    }
    return rows.length;
  }

  purge(table: string, upTo: Position): number {
    const idx = BigInt(upTo.idx);
    return this.purgeChanges.run(table, upTo.lsn, idx).changes;
  }

  count(table: string, after: Position): number {
    const idx = BigInt(after.idx);
    return Number((this.countChanges.get(table, after.lsn, idx, this.durable.lsn) as { n: number }).n);
  }

  close(): void {
    try {
      if (this.db.open) this.db.close();
    } catch {
      // Closing checkpoints the WAL into the file; on a full disk that fails, and the WAL keeps every
      // committed transaction: the next open recovers it.
    }
  }
}

/** The 8 parameters of a change's row in `changes`, written into `out` from `at`. */
function changeParams(c: PendingChange, row: Buffer | null, out: unknown[], at: number): void {
  out[at] = c.table;
  out[at + 1] = c.lsn;
  out[at + 2] = c.idx;
  out[at + 3] = KIND_CODE[c.kind];
  out[at + 4] = c.relationVersion;
  out[at + 5] = row;
  out[at + 6] = c.oldKey === undefined ? null : JSON.stringify(c.oldKey);
  out[at + 7] = c.commitTimeMs;
}

/**
 * A failed write of the log. A full disk (SQLITE_FULL, ENOSPC, or almost no space left where the
 * file lives) gets its own code and a message that names the fix and the last acknowledged position.
 */
function writeError(file: string, what: string, err: unknown, durable: LogHead | null): SluiceError {
  const dir = dirname(file);
  const code = (err as { code?: string }).code ?? '';
  const msg = (err as Error).message ?? String(err);
  const acked = durable ? `; nothing was acknowledged past position ${Lsn.format(durable.endLsn)}` : '';
  if (code === 'SQLITE_FULL' || /ENOSPC|disk is full/i.test(msg) || freeBytes(dir) < 1 << 20) {
    return new SluiceError(
      'CHANGELOG_DISK_FULL',
      `change log disk full at ${dir}: free space there or move log.path to a bigger disk, then run again${acked} (${code || msg})`,
      { cause: err, context: { path: dir, sqlite: code } },
    );
  }
  return new SluiceError('CHANGELOG_ERROR', `change log ${file}: ${what}: ${msg}${acked}; check log.path`, { cause: err, context: { sqlite: code } });
}

function freeBytes(dir: string): number {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}
