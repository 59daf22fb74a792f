/**
 * The PostgreSQL source: the source port (sources/source.ts) over one PostgreSQL database. Built by
 * the composition root (src/engines.ts) from `source.url`.
 */
import type { SluiceError } from '../../core/errors.js';
import type { SourceLookups } from '../../core/source-lookups.js';
import { classify, isConnectionLoss } from '../../postgres/errors.js';
import { connect } from '../../postgres/session.js';
import type { Source, SourceInspection } from '../source.js';
import { PostgresInspection } from './inspection.js';
import { PostgresSourceLookups } from './lookups.js';

export class PostgresSource implements Source {
  readonly type = 'postgres';

  constructor(private readonly url: string) {}

  openLookups(applicationName: string): SourceLookups {
    return new PostgresSourceLookups(this.url, applicationName);
  }

  async openInspection(applicationName: string): Promise<SourceInspection> {
    return new PostgresInspection(await connect('source', this.url, applicationName));
  }

  classifyError(what: string, err: unknown): SluiceError {
    return classify('source', what, err);
  }

  isConnectionLoss(err: unknown): boolean {
    return isConnectionLoss(err);
  }
}
