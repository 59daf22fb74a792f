/**
 * The Applier: moves every live table's apply cursor towards the change log's head, in batches,
 * committing each batch and its cursor in one destination transaction (contract 2). Replay after
 * a backfill is the same loop starting from L0 (docs/architecture.md, "One mechanism for apply, replay and
 * catch-up").
 *
 * A batch is compacted per primary key (only the last image of a key matters), then applied set-wise:
 * COPY of the final images into a session temp table, one DELETE for removed keys, and one
 * INSERT … ON CONFLICT (or UPDATE + INSERT when some images left TOASTed columns out: those keep the
 * destination's value for a plain update of a row it has, and are read from the source by key for
 * everything else, contract 5; see resolveUnknownValues).
 * A TRUNCATE or a new column set splits the batch into segments, still in the same transaction.
 */
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { SluiceError } from '../core/errors.js';
import { crashPoint } from '../core/crash.js';
import { sleep, backoffMs } from '../core/retry.js';
import { Position, TableName, type CapturedValue, type Change, type RelationColumns } from '../core/types.js';
import {
  columnDefSql,
  copyTextValue,
  deleteByKeysSql,
  insertMissingSql,
  qualified,
  quoteIdent,
  updateKeepingUnchangedSql,
  upsertFromSql,
} from '../destinations/postgres/dialect.js';
import { setRunStatus, setTableState, writeCursor } from '../destinations/postgres/state.js';
import { destinationCollations } from '../destinations/postgres/collations.js';
import { classify, isConnectionLoss } from '../postgres/errors.js';
import { introspectTable } from '../sources/postgres/introspect.js';
import { closeClient } from '../postgres/connection.js';
import { connect, withTransaction, type PipelineContext } from './context.js';
import { Mutex, type TableRuntime } from './runtime.js';
import { columnTypes, syncColumnTypes } from './type-sync.js';
import { isReferenced, setReplicaRole, replicaRoleGrant } from '../destinations/postgres/foreign-keys.js';
import { withGrantHint } from './foreign-keys.js';

export interface ApplierHooks {
  onCaughtUp(rt: TableRuntime): void;
  onTableFailed(rt: TableRuntime, err: SluiceError): void;
  onApplied?(rt: TableRuntime, changes: number): void;
  /** An online backfill's staging table has reached the live table's position: time to swap. */
  onStagingCaughtUp?(rt: TableRuntime): void;
}

interface Shape {
  /** Columns written, in relation order (all exist in the destination). */
  columns: string[];
  destTypes: string[];
  /** Index (into relation columns) of each primary-key column. */
  keyIdx: number[];
  keyTypes: string[];
  upTable: string;
  delTable: string;
}

interface ApplyTarget {
  readonly kind: 'live' | 'staging';
  readonly table: TableName;
  cursor: Position;
}

interface Image {
  row: CapturedValue[];
  /** The old key to fill unchanged columns from (a key change whose old image is not in the batch). */
  fromKey?: (string | null)[];
}

const IDLE_CURSOR_ADVANCE_MS = 1000;

export class Applier {
  private dst: pg.Client | null = null;
  private src: pg.Client | null = null;
  /**
   * One user of the Applier's connections at a time. The apply loop (one table after another) and
   * `exclusive` (the swap, a cancel: another table than the one the loop is on) would otherwise
   * interleave their statements on one session, and one's COMMIT would end the other's transaction.
   * Always taken after the table's lock, never before it.
   */
  private readonly session = new Mutex();
  private stopping = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private shapes = new Map<string, Shape>();
  private tempSeq = 0;
  private lastIdleAdvance = new Map<string, number>();
  /** The next batch of a target, read while the destination worked on the previous one. */
  private readonly readAhead = new Map<string, { after: Position; changes: Change[] }>();
  private lastPurge = 0;
  private failures = 0;
  /** Whether the apply session runs with session_replication_role = replica (null: not asked yet). */
  private replicaRole: boolean | null = null;
  /** Changes applied since start (for status and benchmarks). */
  applied = 0;

  constructor(
    private readonly ctx: PipelineContext,
    private readonly tables: Map<string, TableRuntime>,
    private readonly hooks: ApplierHooks,
  ) {}

  start(): void {
    if (this.loop) return;
    this.loop = this.run();
  }

  /** Wakes the loop: new changes are durable. */
  poke(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.poke();
    await this.loop;
    this.loop = null;
    await this.session.run(async () => {
      await this.dst?.end().catch(() => {});
      await this.src?.end().catch(() => {});
      this.dst = null;
      this.src = null;
    });
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      let busy = false;
      try {
        for (const rt of this.tables.values()) {
          if (this.stopping) break;
          if (await this.step(rt)) busy = true;
        }
        this.purge();
        this.failures = 0;
      } catch (err) {
        // Connection-level trouble: drop the session (temp tables go with it) and back off.
        this.failures++;
        const e = err instanceof SluiceError ? err : classify('destination', 'applying changes', err);
        this.ctx.logger.warn('apply failed; retrying', { error: e.message, attempt: this.failures });
        await this.session.run(() => this.resetSession());
        // An absent destination is asked again every few seconds, so applies resume soon after it is back.
        await sleep(backoffMs(this.failures, 200, isConnectionLoss(e) ? 5000 : 10_000));
        continue;
      }
      if (!busy && !this.stopping) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, this.ctx.cfg.apply.flushIntervalMs);
          this.wake = done;
          function done() {
            clearTimeout(t);
            resolve();
          }
        });
        this.wake = null;
      }
    }
  }

  private async resetSession(): Promise<void> {
    const d = this.dst;
    const s = this.src;
    this.dst = null;
    this.src = null;
    this.shapes.clear();
    // The source connection (filling unchanged columns) may be the one that was lost.
    await Promise.all([d && closeClient(d), s && closeClient(s)]);
  }

  private async destination(): Promise<pg.Client> {
    if (!this.dst) {
      const dst = await connect('destination', this.ctx.cfg.destination.url, 'sluice-apply');
      // Every apply statement joins a batch (≤ apply.batchRows keys, in an unanalyzed temp table)
      // to the target by its primary key. Left to itself the planner picks a merge join, which
      // walks the target's key index from its first key up to the batch's last: cost grows with
      // the table (a batch of 20k deletes near the end of a 1M-row table took 410 ms instead of
      // 34 ms). Index probes per staged row cost the same whatever the table's size. This relies on
      // every apply target having the primary key (checkTarget; a deferred key is built before the replay).
      try {
        await dst.query('SET enable_mergejoin = off; SET enable_hashjoin = off');
        // Each table applies in its own transactions, so a child row may arrive before its parent
        // (foreign keys in the destination): as PostgreSQL's logical replication workers do, apply
        // with foreign-key (and other ordinary) triggers off. Without the right, say what to grant.
        const had = this.replicaRole;
        this.replicaRole = await setReplicaRole(dst);
        if (!this.replicaRole && had === null) {
          const user = (await dst.query('SELECT current_user AS u')).rows[0].u as string;
          this.ctx.logger.warn(
            'cannot set session_replication_role = replica: foreign keys between replicated tables in the destination may stop applies until the parent rows arrive',
            { grant: replicaRoleGrant(user) },
          );
        }
      } catch (err) {
        await dst.end().catch(() => {});
        throw err;
      }
      this.dst = dst;
    }
    return this.dst;
  }

  /** The destination tables of `rt` that receive its changes now, with their cursors. */
  private targetsOf(rt: TableRuntime): ApplyTarget[] {
    const out: ApplyTarget[] = [];
    if (rt.cursor !== null && !rt.applyHalted) out.push({ kind: 'live', table: rt.target, cursor: rt.cursor });
    if (rt.staging?.cursor) out.push({ kind: 'staging', table: rt.staging.target, cursor: rt.staging.cursor });
    return out;
  }

  /** Applies one batch to each target of one table. Returns true when it applied something. */
  private async step(rt: TableRuntime): Promise<boolean> {
    if (this.targetsOf(rt).length === 0) return false;
    return rt.lock.run(() => this.session.run(async () => {
      let busy = false;
      const dst = await this.destination();
      for (const target of this.targetsOf(rt)) {
        let r: { applied: number; drained: boolean };
        try {
          r = await this.applyBatch(dst, rt, target);
        } catch (err) {
          const e = withGrantHint(classify('destination', `applying changes to ${TableName.format(target.table)}`, err), this.replicaRole !== false);
          if (e.retryable) throw e;
          // Without the replica role a row may arrive before its parent: the other table's apply
          // brings the parent, so try again rather than fail the table.
          if (this.replicaRole === false && (e.context.sqlstate as string | undefined) === '23503') {
            throw new SluiceError(e.code, e.message, { cause: e, retryable: true, context: e.context });
          }
          // The temp tables may be gone with the aborted transaction's DDL; rebuild them next time.
          this.shapes.clear();
          if (target.kind === 'live') rt.applyHalted = true;
          this.hooks.onTableFailed(rt, e);
          return false;
        }
        if (r.applied > 0) busy = true;
        if (r.applied > 0 && (target.kind === 'staging' || rt.state === 'catching_up')) crashPoint('replay:batch');
        if (!r.drained) continue;
        if (target.kind === 'live' && rt.state === 'catching_up' && !rt.staging) await this.caughtUp(dst, rt);
        // Drained: the staging table has replayed up to the head; the swap brings both tables to one position.
        if (target.kind === 'staging') {
          crashPoint('online:replay');
          this.hooks.onStagingCaughtUp?.(rt);
        }
      }
      return busy;
    }));
  }

  /**
   * Applies the next batch of `target` (up to `upTo` when given) in one transaction with its cursor.
   * `drained` means nothing more was pending: the cursor then moves to the head (or `upTo`) now and then,
   * so lag and purging see it current even when the table has no changes.
   */
  private async applyBatch(dst: pg.Client, rt: TableRuntime, target: ApplyTarget, upTo?: Position): Promise<{ applied: number; drained: boolean }> {
    const log = this.ctx.changeLog;
    const head = log.head();
    const limit = this.ctx.cfg.apply.batchRows;
    const key = `${TableName.format(target.table)}|${rt.name}`;
    const ahead = this.readAhead.get(key);
    this.readAhead.delete(key);
    const changes =
      ahead && !upTo && Position.compare(ahead.after, target.cursor) === 0 && ahead.changes.length > 0
        ? ahead.changes
        : log.read(rt.name, target.cursor, limit, upTo);
    if (changes.length === 0) {
      const at: Position = upTo ?? { lsn: head.lsn, idx: Number.MAX_SAFE_INTEGER };
      const key = `${rt.name}|${target.kind}`;
      const now = Date.now();
      const due = upTo !== undefined || now - (this.lastIdleAdvance.get(key) ?? 0) >= IDLE_CURSOR_ADVANCE_MS;
      if (due && Position.compare(at, target.cursor) > 0) {
        this.lastIdleAdvance.set(key, now);
        await writeCursor(dst, this.ctx.pipeline, rt.name, TableName.format(target.table), at, null, 0);
        this.setCursor(rt, target, at);
        if (target.kind === 'live' && !upTo) rt.lastCommitTimeMs = head.commitTimeMs || rt.lastCommitTimeMs;
      }
      return { applied: 0, drained: true };
    }
    const last = changes[changes.length - 1];
    // While the destination works on this batch's main statement, read the next batch from the log
    // (the read and its JSON parsing are the Applier's largest cost on this thread).
    let prefetched = false;
    const prefetch =
      upTo || changes.length < limit
        ? undefined
        : () => {
            if (prefetched) return;
            prefetched = true;
            this.readAhead.set(key, { after: last.position, changes: log.read(rt.name, last.position, limit) });
          };
    await withTransaction(dst, async () => {
      let start = 0;
      for (let i = 1; i <= changes.length; i++) {
        const boundary =
          i === changes.length ||
          changes[i].kind === 'truncate' ||
          changes[i - 1].kind === 'truncate' ||
          changes[i].relationVersion !== changes[start].relationVersion;
        if (boundary) {
          await this.applySegment(dst, rt, target.table, changes.slice(start, i), i === changes.length ? prefetch : undefined);
          start = i;
        }
      }
      await writeCursor(dst, this.ctx.pipeline, rt.name, TableName.format(target.table), last.position, last.commitTimeMs, changes.length);
    });
    this.setCursor(rt, target, last.position);
    if (target.kind === 'live') {
      rt.changesApplied += changes.length;
      rt.lastCommitTimeMs = last.commitTimeMs;
    }
    this.applied += changes.length;
    this.hooks.onApplied?.(rt, changes.length);
    return { applied: changes.length, drained: changes.length < limit };
  }

  private setCursor(rt: TableRuntime, target: ApplyTarget, at: Position): void {
    target.cursor = at;
    if (target.kind === 'live') rt.cursor = at;
    else if (rt.staging) rt.staging.cursor = at;
  }

  /**
   * Runs `fn` while nothing else applies to the table, on the Applier's connection, which nothing
   * else uses meanwhile (the loop waits, whatever table it is on). `bringTo(p)`
   * applies every target of the table up to position `p` and leaves each cursor exactly at `p`
   * (the online swap needs the live and the staging table at the same position).
   */
  async exclusive<T>(rt: TableRuntime, fn: (dst: pg.Client, bringTo: (p: Position) => Promise<void>) => Promise<T>): Promise<T> {
    return rt.lock.run(() => this.session.run(async () => {
      const dst = await this.destination();
      const bringTo = async (p: Position) => {
        for (const target of this.targetsOf(rt)) {
          for (;;) {
            const r = await this.applyBatch(dst, rt, target, p);
            if (r.drained) break;
          }
        }
      };
      const names = [rt.target, rt.staging?.target].filter((t): t is TableName => !!t).map((t) => `${TableName.format(t)}#`);
      try {
        return await fn(dst, bringTo);
      } finally {
        // A swap or a cancel changes which table stands under these names: describe them afresh next time.
        for (const k of [...this.shapes.keys()]) if (names.some((n) => k.startsWith(n))) this.shapes.delete(k);
        this.readAhead.clear();
      }
    }));
  }

  /** Nothing pending after a reload's replay: the table is streaming. */
  private async caughtUp(dst: pg.Client, rt: TableRuntime): Promise<void> {
    await withTransaction(dst, async () => {
      await setTableState(dst, this.ctx.pipeline, rt.name, 'streaming', { error: null, detail: null });
      await setRunStatus(dst, this.ctx.pipeline, rt.name, 'done');
    });
    rt.state = 'streaming';
    rt.l0 = null;
    rt.error = null;
    this.hooks.onCaughtUp(rt);
  }

  private async applySegment(dst: pg.Client, rt: TableRuntime, target: TableName, changes: Change[], prefetch?: () => void): Promise<void> {
    if (changes[0].kind === 'truncate') {
      // PostgreSQL cannot TRUNCATE a table other tables reference; the source truncated those too,
      // and their own TRUNCATE comes in their own apply: empty this one row by row instead.
      await dst.query((await isReferenced(dst, target)) ? `DELETE FROM ${qualified(target)}` : `TRUNCATE ${qualified(target)}`);
      return;
    }
    const rel = this.ctx.changeLog.relation(changes[0].relationVersion);
    const shape = await this.shape(dst, rt, target, changes[0].relationVersion, rel);
    const { upserts, deletes } = compact(changes, rel, shape.keyIdx);

    let anyUnchanged = false;
    if (upserts.size > 0) {
      const lines: string[] = [];
      for (const img of upserts.values()) {
        let bits = '';
        let unchanged = false;
        const vals: string[] = new Array(img.row.length);
        for (let i = 0; i < img.row.length; i++) {
          const v = img.row[i];
          if (v === false) {
            unchanged = true;
            bits += '1';
            vals[i] = '\\N';
          } else {
            bits += '0';
            vals[i] = copyTextValue(v);
          }
        }
        // `_sluice_from_*` marks an image born of a key change in the batch: its unknown values
        // belong to another row's history, never to whatever row the destination holds at its key.
        const from = img.fromKey && unchanged ? img.fromKey.map((v) => copyTextValue(v)) : shape.keyIdx.map(() => '\\N');
        if (unchanged) anyUnchanged = true;
        lines.push(`${vals.join('\t')}\t${unchanged ? bits : '\\N'}\t${from.join('\t')}\n`);
      }
      await copyLines(dst, `COPY ${shape.upTable} FROM STDIN`, lines);
      if (anyUnchanged) await this.resolveUnknownValues(dst, rt, target, shape);
    }
    if (deletes.size > 0) {
      const lines: string[] = [];
      for (const key of deletes.values()) lines.push(`${key.map((v) => copyTextValue(v)).join('\t')}\n`);
      await copyLines(dst, `COPY ${shape.delTable} FROM STDIN`, lines);
      await dst.query(deleteByKeysSql(target, shape.delTable, keyNames(shape)));
    }
    if (upserts.size > 0) {
      if (anyUnchanged) {
        await dst.query(updateKeepingUnchangedSql(target, shape.upTable, shape.columns, keyNames(shape)));
        await dst.query(insertMissingSql(target, shape.upTable, shape.columns, keyNames(shape)));
      } else {
        const upsert = dst.query(upsertFromSql(target, shape.upTable, shape.columns, keyNames(shape)));
        prefetch?.();
        await upsert;
      }
    }
    // ON COMMIT DELETE ROWS empties them at commit; within one transaction segments reuse them.
    await dst.query(`TRUNCATE ${shape.upTable}, ${shape.delTable}`);
  }

  /**
   * Update images that left unchanged TOASTed columns out carry no value for them. The destination's
   * value may be kept only when the destination holds the same row's own history at that key: a
   * plain update of a row it has. Everything else reads the columns from the source by key, now:
   * - an image born of a key change (`_sluice_from_*` set): during a replay from L0 the destination
   *   is ahead of the change being replayed, so the row it holds at the old key (or at the new key)
   *   may be a later row that reuses the key, or not the row at all;
   * - an image whose key the destination lacks (a row copied after it moved, a key change whose old
   *   row was never loaded).
   * The source's current value is at least as new as the change; every later change of it is in
   * the log after this one and replays over it. A key the source no longer has was deleted or moved
   * by a later change, also in the log: such an image is dropped, and a stale destination row at a
   * born key is deleted, rather than written with values nobody knows (that once put NULLs into
   * rows that later key changes carried on).
   */
  private async resolveUnknownValues(dst: pg.Client, rt: TableRuntime, target: TableName, shape: Shape): Promise<void> {
    const keys = keyNames(shape);
    const match = keys.map((k) => `t.${quoteIdent(k)} = s.${quoteIdent(k)}`).join(' AND ');
    const unknown = `s._sluice_unchanged IS NOT NULL AND (s._sluice_from_0 IS NOT NULL OR NOT EXISTS (SELECT 1 FROM ${qualified(target)} t WHERE ${match}))`;
    const need = await dst.query({
      text: `SELECT ${keys.map((k) => `s.${quoteIdent(k)}::text`).join(', ')}, s._sluice_unchanged FROM ${shape.upTable} s WHERE ${unknown}`,
      rowMode: 'array',
    });
    if (!need.rowCount) return;
    const rows = need.rows as string[][];
    const cols = shape.columns.filter((_, i) => rows.some((r) => r[keys.length][i] === '1'));
    if (!this.src) this.src = await connect('source', this.ctx.cfg.source.url, 'sluice-apply');
    const byName = new Map(rt.info.columns.map((c) => [c.name, c.typeSql]));
    const keyArrays = keys.map((_, i) => rows.map((r) => r[i]));
    const src = this.src;
    const got = await src
      .query({
        text:
          `SELECT ${[...keys, ...cols].map((c) => `${quoteIdent(c)}::text`).join(', ')} FROM ${qualified(rt.source)}` +
          ` WHERE (${keys.map(quoteIdent).join(', ')}) IN (SELECT ${keys.map((k, i) => `u.k${i}::${byName.get(k)}`).join(', ')}` +
          ` FROM unnest(${keys.map((_, i) => `$${i + 1}::text[]`).join(', ')}) AS u(${keys.map((_, i) => `k${i}`).join(', ')}))`,
        values: keyArrays,
        rowMode: 'array',
      })
      .catch((err) => {
        throw classify('source', `reading the columns left out of update images of ${rt.name}`, err);
      });
    if (got.rowCount) {
      const fetched = got.rows as (string | null)[][];
      const columnArrays = [...keys, ...cols].map((_, j) => fetched.map((r) => r[j]));
      const typeOf = new Map(shape.columns.map((c, i) => [c, shape.destTypes[i]]));
      const sets = cols.map((c, j) => {
        const i = shape.columns.indexOf(c);
        return `${quoteIdent(c)} = CASE WHEN substr(s._sluice_unchanged, ${i + 1}, 1) = '1' THEN f.c${j}::${typeOf.get(c)} ELSE s.${quoteIdent(c)} END`;
      });
      await dst.query(
        `UPDATE ${shape.upTable} s SET ${sets.join(', ')}, _sluice_unchanged = NULL` +
          ` FROM unnest(${columnArrays.map((_, j) => `$${j + 1}::text[]`).join(', ')}) AS f(${[...keys.map((_, i) => `k${i}`), ...cols.map((_, j) => `c${j}`)].join(', ')})` +
          ` WHERE ${keys.map((k, i) => `s.${quoteIdent(k)} = f.k${i}::${typeOf.get(k)}`).join(' AND ')}`,
        columnArrays,
      );
    }
    const gone = rows.length - (got.rowCount ?? 0);
    if (gone > 0) {
      await dst.query(
        `DELETE FROM ${qualified(target)} t USING ${shape.upTable} s WHERE ${match} AND s._sluice_unchanged IS NOT NULL AND s._sluice_from_0 IS NOT NULL`,
      );
      await dst.query(`DELETE FROM ${shape.upTable} s WHERE ${unknown}`);
    }
    this.ctx.logger.debug('read columns left out of update images from the source', { table: rt.name, rows: rows.length, gone });
  }

  /**
   * The destination-side shape of a column set: widens columns the source widened (type-sync.ts),
   * adds columns the source gained (with their DEFAULT, read from the source catalog) and creates
   * the session's temp tables for it.
   */
  private async shape(dst: pg.Client, rt: TableRuntime, table: TableName, version: number, rel: RelationColumns): Promise<Shape> {
    const cacheKey = `${TableName.format(table)}#${version}`;
    const hit = this.shapes.get(cacheKey);
    if (hit) return hit;
    const target = qualified(table);
    const destCols = () => columnTypes(dst, table);
    const source = async () => {
      if (!this.src) this.src = await connect('source', this.ctx.cfg.source.url, 'sluice-apply');
      return this.src;
    };
    let have = await destCols();
    // A column type the source changed since the previous column set: widened here, or the table stops.
    const alsoTable = rt.staging && TableName.format(rt.staging.target) !== TableName.format(table) ? rt.staging.target : undefined;
    const prev = this.ctx.changeLog.previousRelation(rt.name, version);
    if (await syncColumnTypes(dst, source, { name: rt.name, table, alsoTable, rel, prev, destTypes: have }, this.ctx.logger)) {
      have = await destCols();
      rt.info = await introspectTable(await source(), rt.source);
    }
    const missing = rel.names.filter((n) => !have.has(n));
    if (missing.length > 0) {
      const info = await introspectTable(await source(), rt.source);
      rt.info = info;
      for (const name of missing) {
        const col = info.columns.find((c) => c.name === name);
        if (!col) throw new SluiceError('SOURCE_ERROR', `source ${rt.name}: column ${name} is in the change stream but not in the catalog`);
        // Sorted as in the source, whatever the destination's default collation (as when the table was made).
        const collations = await destinationCollations(dst, [col]);
        for (const w of collations.warnings) this.ctx.logger.warn(`adding a column to ${target}: ${w}`, { table: rt.name });
        const definition = columnDefSql(col, collations.clauses.get(col.name));
        this.ctx.logger.info('adding a column the source gained', { table: rt.name, column: name, definition });
        // Serialised with readers; the source already rewrote or defaulted its existing rows the same way.
        await dst.query(`ALTER TABLE ${target} ADD COLUMN IF NOT EXISTS ${definition}`);
      }
      have = await destCols();
    }
    const keyIdx = rt.info.primaryKey.map((k) => rel.names.indexOf(k));
    if (keyIdx.some((i) => i < 0)) {
      throw new SluiceError('SOURCE_ERROR', `source ${rt.name}: the change stream lacks primary key columns (${rt.info.primaryKey.join(', ')})`);
    }
    const id = ++this.tempSeq;
    const destTypes = rel.names.map((n) => have.get(n)!);
    const keyTypes = keyIdx.map((i) => destTypes[i]);
    const upTable = `_sluice_up_${id}`;
    const delTable = `_sluice_del_${id}`;
    const defs = rel.names.map((n, i) => `${quoteIdent(n)} ${destTypes[i]}`);
    await dst.query(
      `CREATE TEMP TABLE ${upTable} (${defs.join(', ')}, _sluice_unchanged text, ${keyTypes
        .map((t, i) => `_sluice_from_${i} ${t}`)
        .join(', ')}) ON COMMIT DELETE ROWS`,
    );
    await dst.query(
      `CREATE TEMP TABLE ${delTable} (${keyIdx.map((ki, i) => `${quoteIdent(rel.names[ki])} ${keyTypes[i]}`).join(', ')}) ON COMMIT DELETE ROWS`,
    );
    const shape: Shape = { columns: [...rel.names], destTypes, keyIdx, keyTypes, upTable, delTable };
    this.shapes.set(cacheKey, shape);
    return shape;
  }

  /** Drops changes every target has applied, keeping each pending backfill's changes since its L0. */
  private purge(): void {
    const now = Date.now();
    if (now - this.lastPurge < 1000) return;
    this.lastPurge = now;
    const log = this.ctx.changeLog;
    const head = log.head();
    for (const rt of this.tables.values()) {
      let bound: Position | null = rt.cursor;
      const staging = rt.staging?.cursor ?? null;
      if (staging !== null && (bound === null || Position.compare(staging, bound) < 0)) bound = staging;
      if (rt.l0 !== null) {
        const keep = Position.before(rt.l0);
        if (bound === null || Position.compare(keep, bound) < 0) bound = keep;
      }
      if (bound === null) {
        // Not loaded and no backfill under way: its next backfill fixes a new L0 past the head.
        bound = { lsn: head.lsn, idx: Number.MAX_SAFE_INTEGER };
      }
      log.purge(rt.name, bound);
    }
  }
}

function keyNames(shape: Shape): string[] {
  return shape.keyIdx.map((i) => shape.columns[i]);
}

/** compact()'s map key of a primary key: the text itself for a one-column key (no JSON per change). */
export function compactKey(key: readonly (string | null)[]): string {
  return key.length === 1 ? (key[0] === null ? '\u0000' : `=${key[0]}`) : JSON.stringify(key);
}

/**
 * Compacts a segment per primary key: the result holds the last image of each surviving key and
 * the keys to delete; the two are disjoint. Unchanged (TOASTed) values are filled from an earlier
 * image of the same row in the batch when there is one.
 */
export function compact(
  changes: readonly Change[],
  rel: RelationColumns,
  keyIdx: readonly number[],
): { upserts: Map<string, Image>; deletes: Map<string, (string | null)[]> } {
  const upserts = new Map<string, Image>();
  const deletes = new Map<string, (string | null)[]>();
  const keyOfRow = (row: readonly CapturedValue[]) => keyIdx.map((i) => row[i] as string | null);
  const oldKeyOf = (c: Change): (string | null)[] | null => {
    const old = c.oldKey;
    if (!old) return null;
    // Under REPLICA IDENTITY FULL the old "key" is the whole old row.
    return old.length === rel.names.length && old.length !== keyIdx.length ? keyIdx.map((i) => old[i]) : [...old];
  };
  for (const c of changes) {
    if (c.kind === 'insert') {
      // Rows read from the log are this batch's own arrays: an insert keeps its array.
      const row = c.row as CapturedValue[];
      const k = compactKey(keyOfRow(row));
      deletes.delete(k);
      upserts.set(k, { row });
    } else if (c.kind === 'update') {
      const newKey = keyOfRow(c.row!);
      const nk = compactKey(newKey);
      let base = upserts.get(nk);
      let fromKey: (string | null)[] | undefined = base?.fromKey;
      const oldKey = oldKeyOf(c);
      if (oldKey) {
        const ok = compactKey(oldKey);
        if (ok !== nk) {
          const oldImg = upserts.get(ok);
          upserts.delete(ok);
          deletes.set(ok, oldKey);
          base = oldImg;
          fromKey = oldImg ? (oldImg.fromKey ?? oldKey) : oldKey;
        }
      }
      let row = c.row as CapturedValue[];
      let unchanged = false;
      for (let i = 0; i < row.length; i++) {
        if (row[i] === false) {
          if (base && base.row[i] !== false) {
            if (row === c.row) row = [...row];
            row[i] = base.row[i];
          } else unchanged = true;
        }
      }
      deletes.delete(nk);
      upserts.set(nk, unchanged && fromKey ? { row, fromKey } : { row });
    } else if (c.kind === 'delete') {
      const key = oldKeyOf(c)!;
      const k = compactKey(key);
      upserts.delete(k);
      deletes.set(k, key);
    }
  }
  return { upserts, deletes };
}

async function copyLines(dst: pg.Client, sql: string, lines: string[]): Promise<void> {
  const stream = dst.query(copyFrom(sql));
  await new Promise<void>((resolve, reject) => {
    stream.on('error', reject);
    stream.on('finish', resolve);
    const CHUNK = 2000;
    for (let i = 0; i < lines.length; i += CHUNK) stream.write(lines.slice(i, i + CHUNK).join(''));
    stream.end();
  });
}
