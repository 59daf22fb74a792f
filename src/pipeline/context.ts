/** What every part of a running pipeline shares: config, connections, the change log, the logger. */
import pg from 'pg';
import type { ChangeLog } from '../changelog/changelog.js';
import type { SluiceConfig } from '../config/schema.js';
import type { Logger } from '../core/logger.js';
import { clientConfig } from '../sources/postgres/connection.js';
import { connectError, redactUrl } from '../sources/postgres/errors.js';
import type { Throttler } from './throttler.js';

/**
 * Session settings for every source and destination connection: values travel as text in some
 * paths (CDC, text COPY), and these make their rendering exact and identical on both sides.
 */
export const SESSION_OPTIONS = '-c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c TimeZone=UTC -c bytea_output=hex';

export interface PipelineContext {
  readonly cfg: SluiceConfig;
  readonly pipeline: string;
  readonly slot: string;
  readonly publication: string;
  readonly logger: Logger;
  readonly changeLog: ChangeLog;
  readonly throttler: Throttler;
  readonly version: string;
}

export async function connect(side: 'source' | 'destination', url: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(url, { application_name: applicationName, options: SESSION_OPTIONS }));
  try {
    await client.connect();
  } catch (err) {
    throw connectError(side, redactUrl(url), err);
  }
  // An idle client whose server goes away emits 'error'; the next query reports it instead.
  client.on('error', () => {});
  return client;
}

export async function withTransaction<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const out = await fn();
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
