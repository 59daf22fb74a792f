/**
 * Applying changes to a PostgreSQL destination (the ApplySession of destinations/destination.ts):
 * one connection, each batch and its cursor in one transaction (contract 2).
 *
 * A segment's final images are COPYed into a session temp table, then applied set-wise: one DELETE
 * for removed keys, and one INSERT … ON CONFLICT (or UPDATE + INSERT when some images left TOASTed
 * columns out: those keep the destination's value for a plain update of a row it has, and are read
 * from the source by key for everything else, contract 5; see resolveUnknownValues).
 */
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { SluiceError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { SourceLookups } from '../../core/source-lookups.js';
import { Position, TableName, type RelationColumns, type TableState } from '../../core/types.js';
import { closeClient } from '../../postgres/connection.js';
import { classify } from '../../postgres/errors.js';
import { connect, withTransaction } from '../../postgres/session.js';
import type {
  RestoreArchiveRequest,
  RestoreArchiveResult,
  ApplySegment,
  ApplySession,
  ApplySessionOptions,
  ApplyTable,
  BatchCursor,
  CancelStagingRequest,
  SwapRequest,
  SwapResult,
} from '../destination.js';
import { destinationCollations } from './collations.js';
import { columnDefSql, copyTextValue, deleteByKeysSql, insertMissingSql, qualified, quoteIdent, updateKeepingUnchangedSql, upsertFromSql } from './dialect.js';
import { isReferenced, replicaRoleGrant, setReplicaRole, withGrantHint } from './foreign-keys.js';
import { cancelStaging, swapTables } from './online-swap.js';
import { restoreArchive } from './restore.js';
import { setRunStatus, setTableState, writeCursor } from './state.js';
import { columnTypes, syncColumnTypes } from './type-sync.js';

interface Shape {
  /** Columns written, in relation order (all exist in the destination). */
  columns: string[];
  destTypes: string[];
  /** Index (into relation columns) of each primary-key column. */
  keyIdx: readonly number[];
  keyTypes: string[];
  upTable: string;
  delTable: string;
}

type RowsSegment = Extract<ApplySegment, { kind: 'rows' }>;

export class PostgresApplySession implements ApplySession {
  private dst: pg.Client | null = null;
  private readonly shapes = new Map<string, Shape>();
  private tempSeq = 0;
  /** Whether the session runs with session_replication_role = replica (null: not asked yet). */
  private replicaRole: boolean | null = null;
  private readonly pipeline: string;
  private readonly logger: Logger;
  private readonly source: SourceLookups;

  constructor(
    private readonly url: string,
    options: ApplySessionOptions,
  ) {
    this.pipeline = options.pipeline;
    this.logger = options.logger;
    this.source = options.source;
  }

  private async destination(): Promise<pg.Client> {
    if (!this.dst) {
      const dst = await connect('destination', this.url, 'sluice-apply');
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
          this.logger.warn(
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

  async open(): Promise<void> {
    await this.destination();
  }

  async applyBatch(table: ApplyTable, target: TableName, segments: readonly ApplySegment[], cursor: BatchCursor, whileWriting?: () => void): Promise<void> {
    const dst = await this.destination();
    await withTransaction(dst, async () => {
      for (let i = 0; i < segments.length; i++) {
        const s = segments[i];
        await this.applySegment(dst, table, target, s, i === segments.length - 1 ? whileWriting : undefined);
      }
      await writeCursor(dst, this.pipeline, table.name, TableName.format(target), cursor.position, cursor.commitTimeMs, cursor.changes);
    });
  }

  async advanceCursor(name: string, target: TableName, at: Position): Promise<void> {
    await writeCursor(await this.destination(), this.pipeline, name, TableName.format(target), at, null, 0);
  }

  async markCaughtUp(name: string): Promise<void> {
    const dst = await this.destination();
    await withTransaction(dst, async () => {
      await setTableState(dst, this.pipeline, name, 'streaming', { error: null, detail: null });
      await setRunStatus(dst, this.pipeline, name, 'done');
    });
  }

  async setTableState(name: string, state: TableState): Promise<void> {
    await setTableState(await this.destination(), this.pipeline, name, state, {});
  }

  async swap(request: SwapRequest): Promise<SwapResult> {
    return swapTables(await this.destination(), this.pipeline, request);
  }

  async cancelStaging(request: CancelStagingRequest): Promise<number> {
    return cancelStaging(await this.destination(), this.pipeline, request);
  }

  async restoreArchive(request: RestoreArchiveRequest): Promise<RestoreArchiveResult> {
    return restoreArchive(await this.destination(), this.pipeline, request);
  }

  batchFailure(what: string, err: unknown): SluiceError {
    const e = withGrantHint(classify('destination', what, err), this.replicaRole !== false);
    // Without the replica role a row may arrive before its parent: the other table's apply brings
    // the parent, so the batch is tried again rather than the table failed.
    if (!e.retryable && this.replicaRole === false && (e.context.sqlstate as string | undefined) === '23503') {
      return new SluiceError(e.code, e.message, { cause: e, retryable: true, context: e.context });
    }
    return e;
  }

  forget(tables?: readonly TableName[]): void {
    if (!tables) {
      this.shapes.clear();
      return;
    }
    const names = tables.map((t) => `${TableName.format(t)}#`);
    for (const k of [...this.shapes.keys()]) if (names.some((n) => k.startsWith(n))) this.shapes.delete(k);
  }

  async close(): Promise<void> {
    const d = this.dst;
    this.dst = null;
    this.shapes.clear();
    if (d) await closeClient(d);
  }

  private async applySegment(dst: pg.Client, table: ApplyTable, target: TableName, segment: ApplySegment, whileWriting?: () => void): Promise<void> {
    if (segment.kind === 'truncate') {
      // PostgreSQL cannot TRUNCATE a table other tables reference; the source truncated those too,
      // and their own TRUNCATE comes in their own apply: empty this one row by row instead.
      await dst.query((await isReferenced(dst, target)) ? `DELETE FROM ${qualified(target)}` : `TRUNCATE ${qualified(target)}`);
      return;
    }
    const shape = await this.shape(dst, table, target, segment);
    const { upserts, deletes } = segment;

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
      if (anyUnchanged) await this.resolveUnknownValues(dst, table, target, shape);
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
        whileWriting?.();
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
  private async resolveUnknownValues(dst: pg.Client, table: ApplyTable, target: TableName, shape: Shape): Promise<void> {
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
    const keyArrays = keys.map((_, i) => rows.map((r) => r[i]));
    const fetched = await this.source.rowsByKey(table.source, table.info, keyArrays, cols);
    if (fetched.length > 0) {
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
    const gone = rows.length - fetched.length;
    if (gone > 0) {
      await dst.query(
        `DELETE FROM ${qualified(target)} t USING ${shape.upTable} s WHERE ${match} AND s._sluice_unchanged IS NOT NULL AND s._sluice_from_0 IS NOT NULL`,
      );
      await dst.query(`DELETE FROM ${shape.upTable} s WHERE ${unknown}`);
    }
    this.logger.debug('read columns left out of update images from the source', { table: table.name, rows: rows.length, gone });
  }

  /**
   * The destination-side shape of a column set: widens columns the source widened (type-sync.ts),
   * adds columns the source gained (with their DEFAULT, read from the source catalog) and creates
   * the session's temp tables for it.
   */
  private async shape(dst: pg.Client, table: ApplyTable, target: TableName, segment: RowsSegment): Promise<Shape> {
    const cacheKey = `${TableName.format(target)}#${segment.relationVersion}`;
    const hit = this.shapes.get(cacheKey);
    if (hit) return hit;
    const rel: RelationColumns = segment.columns;
    const name = qualified(target);
    const destCols = () => columnTypes(dst, target);
    let have = await destCols();
    // A column type the source changed since the previous column set: widened here, or the table stops.
    const alsoTable = table.staging && TableName.format(table.staging.target) !== TableName.format(target) ? table.staging.target : undefined;
    if (await syncColumnTypes(dst, this.source, { name: table.name, table: target, alsoTable, rel, prev: segment.previous, destTypes: have }, this.logger)) {
      have = await destCols();
      table.info = await this.source.describeTable(table.source);
    }
    const missing = rel.names.filter((n) => !have.has(n));
    if (missing.length > 0) {
      const info = await this.source.describeTable(table.source);
      table.info = info;
      for (const column of missing) {
        const col = info.columns.find((c) => c.name === column);
        if (!col) throw new SluiceError('SOURCE_ERROR', `source ${table.name}: column ${column} is in the change stream but not in the catalog`);
        // Sorted as in the source, whatever the destination's default collation (as when the table was made).
        const collations = await destinationCollations(dst, [col]);
        for (const w of collations.warnings) this.logger.warn(`adding a column to ${name}: ${w}`, { table: table.name });
        const definition = columnDefSql(col, collations.clauses.get(col.name));
        this.logger.info('adding a column the source gained', { table: table.name, column, definition });
        // Serialised with readers; the source already rewrote or defaulted its existing rows the same way.
        await dst.query(`ALTER TABLE ${name} ADD COLUMN IF NOT EXISTS ${definition}`);
      }
      have = await destCols();
    }
    const keyIdx = segment.keyIdx;
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
}

function keyNames(shape: Shape): string[] {
  return shape.keyIdx.map((i) => shape.columns[i]);
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
