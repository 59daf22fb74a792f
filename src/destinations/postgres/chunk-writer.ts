/**
 * A chunk worker's session on a PostgreSQL destination (ChunkWriter of destinations/destination.ts):
 * a chunk is COPYed in and its progress recorded in one transaction (contract 3), so after a crash
 * the recorded progress is exactly what the table holds.
 */
import { pipeline as pipe } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { closeClient } from '../../postgres/connection.js';
import { classify } from '../../postgres/errors.js';
import { connect, withTransaction } from '../../postgres/session.js';
import type { AppendChunk, ChunkWriter } from '../destination.js';
import { copyInSql, qualified, quoteIdent, upsertFromSql } from './dialect.js';
import { setReplicaRole, withGrantHint } from './foreign-keys.js';
import { recordChunk, recordRangeChunk } from './state.js';

export class PostgresChunkWriter implements ChunkWriter {
  private constructor(
    private readonly dst: pg.Client,
    private readonly pipeline: string,
    /** Whether the session runs with session_replication_role = replica. */
    private readonly replicaRole: boolean,
  ) {}

  static async open(url: string, pipeline: string): Promise<PostgresChunkWriter> {
    const dst = await connect('destination', url, 'sluice-chunk');
    // Chunks of a child table may land before its parent's (foreign keys in the destination):
    // the role keeps foreign-key triggers from firing for sluice's writes (foreign-keys.ts).
    const replicaRole = await setReplicaRole(dst).catch(() => false);
    return new PostgresChunkWriter(dst, pipeline, replicaRole);
  }

  async appendChunk(chunk: AppendChunk): Promise<number> {
    const dst = this.dst;
    const read = (into: string) => {
      const out = chunk.open();
      const inp = dst.query(copyFrom(copyInSql(into, chunk.columns, chunk.format === 'postgres-binary')));
      return pipe(out, inp).then(
        () => Number((inp as unknown as { rowCount: number }).rowCount ?? 0),
        (err) => {
          throw withGrantHint(classify('destination', `copying a chunk of ${chunk.name}`, err), this.replicaRole);
        },
      );
    };
    if (chunk.merge) return this.mergedChunk(chunk, chunk.merge, read);
    return withTransaction(dst, async () => {
      const rows = await read(qualified(chunk.target));
      await chunk.beforeCommit?.();
      await this.record(chunk, rows);
      return rows;
    });
  }

  /**
   * Through a temp table built from the source's column types (not LIKE the target), then merged and
   * committed under the table's apply lock with the chunk's progress. The Applier holds the same lock
   * for each batch, so the two never hold row locks of the same table at once: no deadlock between
   * sluice's own sessions (contract 10), and no wait on the lock while holding one of the table's.
   */
  private async mergedChunk(chunk: AppendChunk, merge: NonNullable<AppendChunk['merge']>, read: (into: string) => Promise<number>): Promise<number> {
    const dst = this.dst;
    await dst.query('BEGIN');
    try {
      const defs = merge.sourceColumns.map((c) => `${quoteIdent(c.name)} ${c.typeSql}`);
      await dst.query(`CREATE TEMP TABLE _sluice_chunk (${defs.join(', ')}) ON COMMIT DROP`);
      const rows = await read('_sluice_chunk');
      return await merge.underApplyLock(async () => {
        await dst.query(upsertFromSql(chunk.target, '_sluice_chunk', merge.columns, merge.key));
        await this.record(chunk, rows);
        await dst.query('COMMIT');
        return rows;
      });
    } catch (err) {
      await dst.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  private async record(chunk: AppendChunk, rows: number): Promise<void> {
    const p = chunk.progress;
    if (p.kind === 'key') await recordChunk(this.dst, this.pipeline, chunk.name, p.upTo === 'done' ? 'done' : [...p.upTo], rows, chunk.rowsPerSecond());
    else await recordRangeChunk(this.dst, this.pipeline, chunk.name, p.runId, p.lo, p.hi, rows, chunk.rowsPerSecond());
  }

  async close(): Promise<void> {
    await closeClient(this.dst);
  }
}
