/**
 * Drives the real Applier and the real embedded change log over a real source and destination
 * PostgreSQL, against an in-memory reference of the source table (used by
 * test/integration/applier-model.test.ts).
 *
 * - The reference model (source-model.ts) is the source table. Every source transaction is executed
 *   on the real source too (the Applier reads rows from it by key) and appended to the change log
 *   as pgoutput would send it, at the next commit LSN (index = place in the transaction); it is
 *   durable, and visible to the Applier, once flushed.
 * - The Applier runs its own loop. The test holds the table's lock (as the Copier does) between
 *   steps and lets the loop through for a number of batches: the hook of the last one queues the
 *   lock again, so the loop stops exactly at a batch boundary.
 * - A crash abandons the Applier (its loop stays parked on the old lock), kills its sessions,
 *   reopens the change log (unflushed transactions are lost and sent again, as the slot does) and
 *   starts a new Applier whose cursor is read back from `_sluice.cursors`.
 * - A backfill fixes L0, empties the table (truncate mode) or keeps it streaming (upsert mode),
 *   copies key-range chunks of the source's rows of the moment, and rewinds the cursor to just
 *   before L0 like the Copier's armReplay.
 */
import { EventBus } from '../../src/core/events.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import type { PendingChange } from '../../src/changelog/changelog.js';
import { EmbeddedChangeLog } from '../../src/changelog/embedded/embedded-change-log.js';
import { configSchema, type SluiceConfig } from '../../src/config/schema.js';
import type { Logger } from '../../src/core/logger.js';
import { Lsn, Position } from '../../src/core/types.js';
import { readCursors, cursorKey, writeCursor } from '../../src/destinations/postgres/state.js';
import { Applier } from '../../src/pipeline/applier.js';
import { connect, type PipelineContext } from '../../src/pipeline/context.js';
import { Mutex, type TableRuntime } from '../../src/pipeline/runtime.js';
import { Throttler } from '../../src/pipeline/throttler.js';
import type { TableInfo } from '../../src/sources/postgres/introspect.js';
import { MAX_ID, SourceModel, type RowOp, type Variant } from './source-model.js';

export const PIPELINE = 'fc';
/** A backfill copies the keys in CHUNKS ranges of CHUNK_IDS ids. */
const CHUNK_IDS = 2;
const CHUNKS = Math.ceil(MAX_ID / CHUNK_IDS);

interface Txn {
  lsn: Lsn;
  commitMs: number;
  changes: PendingChange[];
}

/** The parked lock: held by the test whenever the Applier may not apply. */
class Gate {
  private release: (() => void) | null = null;
  constructor(private readonly lock: Mutex) {}
  /** Queues for the lock now (behind a batch in progress); resolves once held. */
  close(): Promise<void> {
    return new Promise<void>((held) => {
      void this.lock.run(() => new Promise<void>((r) => ((this.release = r), held())));
    });
  }
  open(): void {
    const r = this.release;
    this.release = null;
    r?.();
  }
}

export class ApplierWorld {
  private readonly model: SourceModel;
  /** What happened, for the report of a failing sequence. */
  readonly trace: string[] = [];
  private readonly problems: string[] = [];
  private nextLsn = 0x1000n;
  private unflushed: Txn[] = [];
  /** The backfill in progress: its L0, its next chunk, the ids written since L0 (a ctid load may miss those). */
  private bf: { mode: 'upsert' | 'truncate'; l0: Lsn; next: number; written: Set<number> } | null = null;
  private dir = mkdtempSync(join(tmpdir(), 'sluice-fc-'));
  private log: EmbeddedChangeLog;
  private relVersion: number;
  private readonly cfg: SluiceConfig;
  private readonly name: string;
  private applier!: Applier;
  private rt!: TableRuntime;
  private gate!: Gate;
  private onBatch: (() => void) | null = null;

  private constructor(
    private readonly v: Variant,
    private readonly src: pg.Client,
    private readonly dst: pg.Client,
    private readonly info: TableInfo,
    urls: { source: string; destination: string },
    batchRows: number,
  ) {
    this.name = `public.${v.table}`;
    this.model = new SourceModel(v);
    this.cfg = configSchema.parse({
      pipeline: { name: PIPELINE },
      source: { type: 'postgres', url: urls.source },
      destination: { type: 'postgres', url: urls.destination },
      log: { type: 'embedded', path: this.dir },
      apply: { batchRows, flushIntervalMs: 5 },
      tables: [{ name: this.name, mode: 'upsert' }],
    });
    // A crash here is the process's, not the machine's: what SQLite wrote survives without fsync.
    this.log = new EmbeddedChangeLog(join(this.dir, 'changes.db'), { fsync: false });
    this.relVersion = this.describe();
  }

  /** What capture does on a Relation message (the source sends one before a table's first change in each session). */
  private describe(): number {
    const names = [...this.v.keyCols, 'n', 't'];
    return this.log.relationVersion(this.name, {
      names,
      typeOids: names.map((c) => (c === 't' ? 25 : 23)),
      keyIndexes: this.v.keyCols.map((_, i) => i),
    });
  }

  /** A fresh world: empty source and destination tables, an empty change log, the cursor at the start. */
  static async create(
    v: Variant,
    clients: { src: pg.Client; dst: pg.Client },
    info: TableInfo,
    urls: { source: string; destination: string },
    batchRows: number,
  ): Promise<ApplierWorld> {
    await clients.src.query(`TRUNCATE public.${v.table}`);
    await clients.dst.query(`TRUNCATE public.${v.table}`);
    await clients.dst.query(`DELETE FROM _sluice.cursors WHERE pipeline = $1`, [PIPELINE]);
    await clients.dst.query(`DELETE FROM _sluice.tables WHERE pipeline = $1`, [PIPELINE]);
    const w = new ApplierWorld(v, clients.src, clients.dst, info, urls, batchRows);
    await writeCursor(clients.dst, PIPELINE, w.name, w.name, Position.start, null, 0);
    await w.startApplier();
    return w;
  }

  // ---- source transactions --------------------------------------------------------------------

  /** Runs row operations as one transaction on the model and the real source, and sends its changes to the log. */
  async txn(ops: readonly RowOp[], flush: boolean): Promise<void> {
    const t = this.model.transact(ops);
    if (t.changes.length === 0) return;
    const lsn = Lsn.of(this.nextLsn);
    this.nextLsn += 0x100n;
    await this.src.query('BEGIN');
    for (const [text, values] of t.sql) await this.src.query(text, values);
    await this.src.query('COMMIT');
    const txn: Txn = {
      lsn,
      commitMs: Date.now(),
      changes: t.changes.map((c, idx) => ({ table: this.name, lsn, idx, relationVersion: this.relVersion, commitTimeMs: 0, ...c })),
    };
    for (const id of t.wrote) this.bf?.written.add(id);
    this.send(txn);
    if (flush) this.flush();
    else this.unflushed.push(txn);
    this.trace.push(`txn ${Lsn.format(lsn)}${flush ? '' : ' (not flushed)'}: ${t.text}`);
  }

  private send(txn: Txn): void {
    for (const c of txn.changes) this.log.append({ ...c, commitTimeMs: txn.commitMs });
    this.log.commit(txn.lsn, Lsn.of(txn.lsn + 8n), txn.commitMs);
  }

  /** Makes every appended transaction durable (visible to the Applier). */
  flush(): void {
    this.log.flush();
    this.unflushed = [];
  }

  // ---- the Applier ----------------------------------------------------------------------------

  private logger(): Logger {
    const emit = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
      const line = `  [${level}] ${msg} ${JSON.stringify(fields ?? {}, (_k, x) => (typeof x === 'bigint' ? x.toString() : x))}`;
      this.trace.push(line);
      if (level === 'warn' || level === 'error') {
        this.problems.push(line);
        // A failed batch is retried after a back-off: stop the loop there and report.
        this.onBatch?.();
      }
    };
    const l: Logger = { debug() {}, info: emit('info'), warn: emit('warn'), error: emit('error'), child: () => l };
    return l;
  }

  private async startApplier(): Promise<void> {
    const cursors = await readCursors(this.dst, PIPELINE);
    const cursor = cursors.get(cursorKey(this.name, this.name))?.position ?? null;
    this.rt = {
      name: this.name,
      source: { schema: 'public', name: this.v.table },
      target: { schema: 'public', name: this.v.table },
      config: this.cfg.tables[0],
      info: this.info,
      state: this.bf ? 'backfilling' : 'streaming',
      mode: this.bf?.mode ?? null,
      cursor,
      applyHalted: false,
      staging: null,
      keepArchive: false,
      detail: null,
      l0: this.bf?.l0 ?? null,
      rollbackFrom: null,
      lock: new Mutex(),
      rowsCopied: 0,
      rowsEstimated: 0,
      rowsPerSecond: 0,
      changesApplied: 0,
      lastCommitTimeMs: null,
      error: null,
      abort: null,
      pending: null,
    };
    const ctx: PipelineContext = {
      cfg: this.cfg,
      pipeline: PIPELINE,
      slot: 'unused',
      publication: 'unused',
      logger: this.logger(),
      changeLog: this.log,
      throttler: new Throttler(this.cfg.throttle),
      events: new EventBus(PIPELINE),
      version: 'test',
    };
    this.applier = new Applier(ctx, new Map([[this.name, this.rt]]), {
      onCaughtUp: () => {},
      onTableFailed: (_rt, err) => {
        this.problems.push(`table failed: ${err.message}`);
        this.onBatch?.();
      },
      onApplied: () => this.onBatch?.(),
    });
    this.gate = new Gate(this.rt.lock);
    await this.gate.close();
    this.applier.start();
  }

  private pending(): boolean {
    const rt = this.rt;
    return rt.cursor !== null && !rt.applyHalted && this.log.read(rt.name, rt.cursor, 1).length > 0;
  }

  private cursorText(): string {
    return this.rt.cursor ? Position.format(this.rt.cursor) : 'none';
  }

  /** Lets the Applier's loop apply up to `batches` batches (Infinity: until nothing is pending). */
  async apply(batches: number): Promise<void> {
    if (!this.pending()) return;
    const from = this.cursorText();
    let left = batches;
    const parked = new Promise<void>((resolve) => {
      this.onBatch = () => {
        left--;
        if (left > 0 && this.pending() && this.problems.length === 0) return;
        this.onBatch = null;
        // Queued behind the batch in progress: the loop's next step waits behind it.
        void this.gate.close().then(resolve);
      };
    });
    this.gate.open();
    this.applier.poke();
    await within(parked, 60_000, `the Applier did not stop after ${batches} batch(es) from ${from}`);
    this.trace.push(`apply ${batches === Infinity ? 'until drained' : `${batches} batch(es)`}: cursor ${from} -> ${this.cursorText()}`);
    this.assertHealthy();
  }

  /** Lets the loop idle once with nothing pending: its cursor moves to the log's head. */
  async idle(): Promise<void> {
    if (this.rt.cursor === null || this.pending()) return;
    const at: Position = { lsn: this.log.head().lsn, idx: Number.MAX_SAFE_INTEGER };
    if (Position.compare(this.rt.cursor, at) >= 0) return;
    const from = this.cursorText();
    this.gate.open();
    this.applier.poke();
    const deadline = Date.now() + 10_000;
    while (this.rt.cursor && Position.compare(this.rt.cursor, at) < 0 && Date.now() < deadline) await sleep(5);
    await this.gate.close();
    this.trace.push(`idle: cursor ${from} -> ${this.cursorText()}`);
    this.assertHealthy();
  }

  /** Abandons the Applier and everything it held in memory; a new one starts from the destination's state. */
  async crash(): Promise<void> {
    this.onBatch = null;
    // Its loop is parked on the old lock (or idle, and then it ends): it never applies again.
    void this.applier.stop().catch(() => {});
    await this.killSessions();
    this.log.close();
    this.log = new EmbeddedChangeLog(join(this.dir, 'changes.db'), { fsync: false });
    this.relVersion = this.describe();
    const lost = this.unflushed;
    this.unflushed = [];
    // The slot sends the transactions that never became durable again.
    for (const t of lost) this.send({ ...t, changes: t.changes.map((c) => ({ ...c, relationVersion: this.relVersion })) });
    if (lost.length) this.flush();
    await this.startApplier();
    this.trace.push(`crash: restarted at cursor ${this.cursorText()}${lost.length ? `, ${lost.length} lost transaction(s) sent again` : ''}`);
  }

  private async killSessions(): Promise<void> {
    const sql = `SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = 'sluice-apply' AND pid <> pg_backend_pid()`;
    await this.dst.query(sql);
    await this.src.query(sql);
  }

  // ---- backfills ------------------------------------------------------------------------------

  /** Fixes L0 at the next commit; truncate mode empties the table and drops its cursor. */
  async backfillBegin(mode: 'upsert' | 'truncate'): Promise<void> {
    if (this.bf) return;
    const l0 = Lsn.of(this.nextLsn);
    this.bf = { mode, l0, next: 0, written: new Set() };
    this.rt.l0 = l0;
    this.rt.state = 'backfilling';
    this.rt.mode = mode;
    if (mode === 'truncate') {
      await this.dst.query('BEGIN');
      await this.dst.query(`TRUNCATE public.${this.v.table}`);
      await this.dst.query(`DELETE FROM _sluice.cursors WHERE pipeline = $1 AND name = $2`, [PIPELINE, this.name]);
      await this.dst.query('COMMIT');
      this.rt.cursor = null;
    }
    this.trace.push(`backfill ${mode} begins: L0 ${Lsn.format(l0)}, cursor ${this.cursorText()}`);
  }

  /**
   * Copies the next key range of the source as it is now (a chunk read at a later time than L0).
   * `miss`: leaves out the rows written since L0, as a ctid load misses a row that an update moved
   * to a page it had already read (the row's changes since L0 are in the log).
   */
  async backfillChunk(miss = false): Promise<void> {
    if (!this.bf || this.bf.next >= CHUNKS) return;
    const lo = this.bf.next * CHUNK_IDS;
    const hi = lo + CHUNK_IDS;
    this.bf.next++;
    const keys = this.v.keyCols.join(', ');
    const got = await this.src.query({ text: `SELECT ${keys}, n, t FROM public.${this.v.table} ORDER BY ${keys}`, rowMode: 'array' });
    const k = this.v.keyCols.length;
    let rows = (got.rows as unknown[][]).filter((r) => {
      const id = this.v.idOf(r.slice(0, k));
      return id > lo && (id <= hi || this.bf!.next === CHUNKS);
    });
    const missed = miss ? rows.filter((r) => this.bf!.written.has(this.v.idOf(r.slice(0, k)))) : [];
    rows = rows.filter((r) => !missed.includes(r));
    await this.dst.query('BEGIN');
    for (const r of rows) {
      await this.dst.query(
        `INSERT INTO public.${this.v.table} VALUES (${r.map((_, i) => `$${i + 1}`).join(', ')})
         ON CONFLICT (${keys}) DO UPDATE SET n = EXCLUDED.n, t = EXCLUDED.t`,
        r,
      );
    }
    await this.dst.query('COMMIT');
    const text = rows.map((r) => JSON.stringify(r)).join(' ') || 'no rows';
    this.trace.push(`backfill chunk (${lo}, ${this.bf.next === CHUNKS ? '∞' : hi}]: ${text}${missed.length ? `; missed ${missed.map((r) => JSON.stringify(r)).join(' ')}` : ''}`);
  }

  /** Copies the remaining chunks and rewinds the cursor to just before L0 (Copier.armReplay). */
  async backfillFinish(): Promise<void> {
    if (!this.bf) return;
    while (this.bf.next < CHUNKS) await this.backfillChunk();
    const replayFrom = Position.before(this.bf.l0);
    const cursor = this.rt.cursor && Position.compare(this.rt.cursor, replayFrom) < 0 ? this.rt.cursor : replayFrom;
    await writeCursor(this.dst, PIPELINE, this.name, this.name, cursor, null, 0);
    this.rt.cursor = cursor;
    this.rt.state = 'catching_up';
    this.bf = null;
    this.trace.push(`backfill armed: replay from ${this.cursorText()}`);
  }

  // ---- checks ---------------------------------------------------------------------------------

  private assertHealthy(): void {
    if (this.problems.length) throw new Error(`the Applier reported trouble:\n${this.problems.join('\n')}`);
  }

  /** Flushes, finishes a backfill in progress, applies everything and compares the destination with the reference. */
  async settleAndCompare(what: string): Promise<void> {
    this.flush();
    await this.backfillFinish();
    await this.apply(Infinity);
    const want = this.model.sorted();
    const read = async (c: pg.Client) => {
      const keys = this.v.keyCols.join(', ');
      const r = await c.query({ text: `SELECT ${keys}, n, t FROM public.${this.v.table} ORDER BY ${keys}`, rowMode: 'array' });
      const k = this.v.keyCols.length;
      return (r.rows as unknown[][]).map((x) => [this.v.idOf(x.slice(0, k)), x[k], x[k + 1]]);
    };
    const source = await read(this.src);
    if (JSON.stringify(source) !== JSON.stringify(want)) {
      throw new Error(`test bug: the source ${JSON.stringify(source)} differs from the reference ${JSON.stringify(want)}`);
    }
    const got = await read(this.dst);
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      throw new Error(
        `${what}: destination differs from the source (cursor ${this.cursorText()})\n` +
          `  source:      ${JSON.stringify(want)}\n  destination: ${JSON.stringify(got)}`,
      );
    }
    this.trace.push(`${what}: equal (${want.length} rows)`);
  }

  /** Ends the Applier and removes the change log. */
  async dispose(): Promise<void> {
    this.onBatch = null;
    void this.applier.stop().catch(() => {});
    await this.killSessions();
    this.log.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function openClients(urls: { source: string; destination: string }): Promise<{ src: pg.Client; dst: pg.Client }> {
  return { src: await connect('source', urls.source, 'fc-test'), dst: await connect('destination', urls.destination, 'fc-test') };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
