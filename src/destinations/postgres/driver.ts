/**
 * The PostgreSQL destination: the destination port (destinations/destination.ts) over one
 * PostgreSQL database. Built by the composition root (src/engines.ts) from `destination.url`.
 */
import type { ForeignKey } from '../../core/columns.js';
import type { SluiceError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { classify, isConnectionLoss } from '../../postgres/errors.js';
import { connect } from '../../postgres/session.js';
import type { ApplySession, ApplySessionOptions, ChunkWriter, Destination, DestinationCapabilities, DestinationControl } from '../destination.js';
import { PostgresApplySession } from './apply-session.js';
import { PostgresChunkWriter } from './chunk-writer.js';
import { PostgresControl } from './control.js';
import { validateForeignKeysLater } from './foreign-key-validation.js';

/** SQLSTATE lock_not_available: a `lock_timeout` ran out. */
const LOCK_NOT_AVAILABLE = '55P03';

export class PostgresDestination implements Destination {
  readonly type = 'postgres';
  readonly capabilities: DestinationCapabilities = { supportsForeignKeys: true, supportsOnlineSwap: true, readsBinaryChunks: true, appendThenDedupe: false };

  constructor(private readonly url: string) {}

  openApplySession(options: ApplySessionOptions): ApplySession {
    return new PostgresApplySession(this.url, options);
  }

  classifyError(what: string, err: unknown): SluiceError {
    return classify('destination', what, err);
  }

  isConnectionLoss(err: unknown): boolean {
    return isConnectionLoss(err);
  }

  isLockTimeout(err: SluiceError): boolean {
    return (err.context.sqlstate as string | undefined) === LOCK_NOT_AVAILABLE;
  }

  openChunkWriter(options: { readonly pipeline: string }): Promise<ChunkWriter> {
    return PostgresChunkWriter.open(this.url, options.pipeline);
  }

  validateForeignKeysLater(foreignKeys: readonly ForeignKey[], log: Logger, runId?: number): void {
    validateForeignKeysLater(this.url, foreignKeys, log, runId);
  }

  async openControl(applicationName: string): Promise<DestinationControl> {
    return new PostgresControl(await connect('destination', this.url, applicationName));
  }
}
