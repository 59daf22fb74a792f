/**
 * A chunk worker's writer on a DuckDB destination (ChunkWriter of destinations/destination.ts): the
 * chunk's rows are appended to the table's load table (load.ts) with the appender, and its progress
 * recorded, in one DuckDB transaction; after a crash the recorded progress is exactly what the load
 * table holds. No key is checked per row: the one dedupe after the last chunk keeps one row per key.
 *
 * The rows are read from the source before the file is taken (the file is shared, held-file.ts), and
 * a keyset chunk waits for its turn (`beforeCommit`) before taking it too, so a chunk waiting for an
 * earlier one never holds the file that chunk needs.
 */
import { crashPoint } from '../../core/crash.js';
import { SluiceError } from '../../core/errors.js';
import type { AppendChunk, ChunkWriter } from '../destination.js';
import { tableColumns } from './catalog.js';
import { readCopyText } from './copy-text.js';
import { classifyDuckDb } from './errors.js';
import type { HeldFile } from './held-file.js';
import { loadTableOf } from './load.js';
import { nextLoadSeq, recordChunk, recordRangeChunk } from './state.js';
import { appendChunk } from './writer.js';

export class DuckDbChunkWriter implements ChunkWriter {
  private closed = false;

  private constructor(
    private readonly held: HeldFile,
    private readonly pipeline: string,
  ) {}

  static async open(held: HeldFile, pipeline: string): Promise<DuckDbChunkWriter> {
    await held.acquire();
    return new DuckDbChunkWriter(held, pipeline);
  }

  async appendChunk(chunk: AppendChunk): Promise<number> {
    if (chunk.format !== 'postgres-text') {
      throw new SluiceError('INTERNAL', `chunk of ${chunk.name}: a DuckDB destination reads chunks in COPY text format, not ${chunk.format}`);
    }
    const rows = await readCopyText(chunk.open());
    await chunk.beforeCommit?.();
    const load = loadTableOf(chunk.name);
    return this.held.exclusive(async (file) => {
      const columns = await tableColumns(file, load);
      if (!columns) throw new SluiceError('INTERNAL', `chunk of ${chunk.name}: the load table ${load.schema}.${load.name} is not there; the run was not begun (loads.begin)`);
      const byName = new Map(columns.map((c) => [c.name, c]));
      const missing = chunk.columns.filter((c) => !byName.has(c));
      if (missing.length) throw new SluiceError('INTERNAL', `chunk of ${chunk.name}: the load table has no column ${missing.join(', ')}`);
      // The chunk's columns in the load table's order, the others null (a column dropped on the source since).
      const order = columns.map((c) => chunk.columns.indexOf(c.name));
      const shaped = rows.map((r) => order.map((i) => (i < 0 ? null : r[i])));
      try {
        // appendChunk's own transaction: the rows and the progress commit together.
        const rows = await appendChunk(file, load, { columns, key: [] }, shaped, await nextLoadSeq(file, this.pipeline, chunk.name), async () => {
          const p = chunk.progress;
          if (p.kind === 'key') await recordChunk(file, this.pipeline, chunk.name, p.upTo === 'done' ? 'done' : [...p.upTo], shaped.length, chunk.rowsPerSecond());
          else await recordRangeChunk(file, this.pipeline, chunk.name, p.runId, p.lo, p.hi, shaped.length, chunk.rowsPerSecond());
        });
        crashPoint('duckdb:chunk');
        return rows;
      } catch (err) {
        throw classifyDuckDb(file.path, `appending a chunk of ${chunk.name}`, err);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.held.release();
  }
}
