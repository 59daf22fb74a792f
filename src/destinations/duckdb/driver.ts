/**
 * The DuckDB destination: the destination port (destinations/destination.ts) over one DuckDB file.
 * Built by the composition root (src/engines.ts) from `destination.path`.
 *
 * A warehouse's load (capabilities.appendThenDedupe): a backfill appends its chunks to a load table
 * and deduplicates once when the last is in (load.ts); changes are applied a batch at a time, one
 * MERGE per table per batch (apply-session.ts). One process writes the file: every part of the
 * running pipeline shares the one connection (held-file.ts), and another process gets exit 2.
 * No foreign keys (DuckDB's would check every appended row), so none are dropped, added back or validated.
 */
import type { ForeignKey } from '../../core/columns.js';
import type { SluiceError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { ApplySession, ApplySessionOptions, ChunkWriter, Destination, DestinationCapabilities, DestinationControl, LoadLifecycle, RangeHashes } from '../destination.js';
import { DuckDbApplySession } from './apply-session.js';
import { DuckDbChunkWriter } from './chunk-writer.js';
import { DuckDbControl } from './control.js';
import { classifyDuckDb } from './errors.js';
import { HeldFile } from './held-file.js';
import { DuckDbLoads } from './load.js';
import { DuckDbRangeHashes } from './range-hashes.js';

export class DuckDbDestination implements Destination {
  readonly type = 'duckdb';
  readonly capabilities: DestinationCapabilities = { supportsForeignKeys: false, supportsOnlineSwap: true, readsBinaryChunks: false, appendThenDedupe: true };
  readonly loads: LoadLifecycle;
  private readonly held: HeldFile;
  /** Open apply sessions per pipeline: a pipeline with one runs in this process. */
  private readonly applying = new Map<string, number>();

  constructor(path: string, pipeline: string) {
    this.held = new HeldFile(path);
    this.loads = new DuckDbLoads(this.held, pipeline);
  }

  openApplySession(options: ApplySessionOptions): ApplySession {
    return new DuckDbApplySession(this.held, options, (open) => {
      const n = (this.applying.get(options.pipeline) ?? 0) + (open ? 1 : -1);
      if (n > 0) this.applying.set(options.pipeline, n);
      else this.applying.delete(options.pipeline);
    });
  }

  classifyError(what: string, err: unknown): SluiceError {
    return classifyDuckDb(this.held.path, what, err);
  }

  /** An embedded file is never out of reach: its errors are DuckDB's own. */
  isConnectionLoss(): boolean {
    return false;
  }

  /** DuckDB takes no table locks that a swap would wait for. */
  isLockTimeout(): boolean {
    return false;
  }

  openChunkWriter(options: { readonly pipeline: string }): Promise<ChunkWriter> {
    return DuckDbChunkWriter.open(this.held, options.pipeline);
  }

  validateForeignKeysLater(_foreignKeys: readonly ForeignKey[], _log: Logger): void {
    // No foreign keys in a DuckDB destination.
  }

  openRangeHashes(): Promise<RangeHashes> {
    return DuckDbRangeHashes.open(this.held);
  }

  async openControl(): Promise<DestinationControl> {
    await this.held.acquire();
    return new DuckDbControl(this.held, (pipeline) => this.applying.has(pipeline));
  }
}
