/**
 * Sessions on a PostgreSQL server (source or destination) for sluice's statements: the session
 * settings that make values render the same on both sides, a bounded connect with a dead-path watch,
 * and transactions.
 */
import pg from 'pg';
import { clientConfig, destroyClient, watchForDeadPath } from './connection.js';
import { connectError, redactUrl } from './errors.js';

/**
 * Session settings for every source and destination connection: values travel as text in some
 * paths (CDC, text COPY), and these make their rendering exact and identical on both sides.
 */
export const SESSION_OPTIONS =
  '-c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c TimeZone=UTC -c bytea_output=hex' +
  // The server probes an idle connection too, so a session whose client vanished (path cut) ends
  // within about a minute and releases its locks, instead of after the kernel's 2 h default.
  ' -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=6';

/** How connections made by `connect()` watch for a dead path (set from the config at start). */
const connectionSettings = { deadConnectionCheckMs: 30_000 };

export function configureConnections(cfg: { readonly pipeline: { readonly deadConnectionCheckMs: number } }): void {
  connectionSettings.deadConnectionCheckMs = cfg.pipeline.deadConnectionCheckMs;
}

/**
 * A connection for the pipeline's statements: bounded connect, TCP keepalives both ways, and a
 * statement that hears nothing for `pipeline.deadConnectionCheckMs` is checked for a dead path
 * (postgres/connection.ts).
 */
export async function connect(side: 'source' | 'destination', url: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(url, { application_name: applicationName, options: SESSION_OPTIONS }));
  // An idle client whose server goes away emits 'error'; the next query reports it instead.
  client.on('error', () => {});
  try {
    await client.connect();
    const pid = (await client.query(`SELECT pg_backend_pid() AS pid`)).rows[0].pid as number;
    if (pid === (client as unknown as { processID: number | null }).processID) watchForDeadPath(client, url, pid, connectionSettings.deadConnectionCheckMs);
  } catch (err) {
    destroyClient(client);
    throw connectError(side, redactUrl(url), err);
  }
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
