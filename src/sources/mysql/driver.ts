/**
 * The MariaDB source: the source port (sources/source.ts) over one MariaDB server (MySQL where the
 * protocol is shared). Built by the composition root (src/engines.ts) from `source.url` and the
 * replica identity capture registers under (`serverId`, unique among the source's replicas).
 */
import type { SluiceError } from '../../core/errors.js';
import type { SourceLookups } from '../../core/source-lookups.js';
import type { Source, SourceInspection } from '../source.js';
import { connectSource } from './connection.js';
import { classify, isConnectionLoss } from './errors.js';
import { MysqlInspection } from './inspection.js';
import { MysqlSourceLookups } from './lookups.js';

export interface MysqlSourceOptions {
  readonly url: string;
  /** The server_id capture registers under. */
  readonly serverId: number;
  /** The host name capture reports in SHOW SLAVE HOSTS (e.g. `sluice:<pipeline>`). */
  readonly replicaName: string;
}

export class MysqlSource implements Source {
  readonly type = 'mysql';

  constructor(private readonly options: MysqlSourceOptions) {}

  openLookups(applicationName: string): SourceLookups {
    return new MysqlSourceLookups(this.options.url, applicationName);
  }

  async openInspection(applicationName: string): Promise<SourceInspection> {
    return new MysqlInspection(await connectSource(this.options.url, applicationName), {
      serverId: this.options.serverId,
      replicaName: this.options.replicaName,
    });
  }

  classifyError(what: string, err: unknown): SluiceError {
    return classify(what, err);
  }

  isConnectionLoss(err: unknown): boolean {
    return isConnectionLoss(err);
  }
}
