/**
 * How sluice opens a PostgreSQL connection (source or destination), so that a dead network path
 * is noticed in bounded time instead of hanging forever:
 *
 * - a connect attempt (TCP, TLS, startup, authentication) that has not finished within
 *   CONNECT_TIMEOUT_MS fails with a retryable error;
 * - TCP keepalives start after KEEPALIVE_IDLE_MS of silence on the socket: a peer that is gone
 *   (host down, path cut) turns into a socket error once the kernel's probes go unanswered
 *   (Linux: `net.ipv4.tcp_keepalive_intvl` × `tcp_keepalive_probes`, 75 s × 9 by default);
 * - the replication stream has its own bound (`source.replicationTimeoutMs`, replication-stream.ts);
 * - a statement that hears nothing for `pipeline.deadConnectionCheckMs` is checked from a second
 *   connection (watchForDeadPath), which tells a dead path from a long statement or a lock wait.
 *
 * No statement timeout is set: a chunk, an index build or an apply batch waiting for a user's
 * lock is legitimate, however long it takes; `sluice status` says what it waits for.
 */
import pg from 'pg';
import { isConnectionError } from './errors.js';

export const CONNECT_TIMEOUT_MS = 15_000;
export const KEEPALIVE_IDLE_MS = 10_000;

export function clientConfig(url: string, extra: pg.ClientConfig = {}): pg.ClientConfig {
  return {
    connectionString: url,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
    ...extra,
  };
}

/** Drops a connection at once, without the goodbye that a dead path would never carry. */
export function destroyClient(client: pg.Client): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
  try {
    stream?.destroy();
  } catch {
    /* already gone */
  }
}

/** Ends a connection politely, but never waits more than `ms` for a peer that may be unreachable. */
export async function closeClient(client: pg.Client, ms = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.end().catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
  destroyClient(client);
}

/**
 * A statement that has heard nothing from its server for `stallMs` is checked from a second
 * connection (again after every further `stallMs` while it lasts). The connection is dropped, failing the statement
 * with a retryable error, when
 * - the server does not answer a new connection either (the path is dead), or
 * - the server has no such session any more, or
 * - the session has been idle for seconds while this side still waits for its reply (the reply was
 *   lost on the way; the session is ended too, so its locks go with it).
 * A statement that the server is still running, or that waits for a lock, is left alone however
 * long it takes. `serverPid` must be the session's pg_backend_pid() (read through the connection
 * itself: behind a pooler the key the client got is not a server pid, and then nothing is watched).
 */
export function watchForDeadPath(client: pg.Client, url: string, serverPid: number, stallMs: number): void {
  if (stallMs <= 0) return;
  const internals = client as unknown as {
    _getActiveQuery(): unknown;
    connection: { stream: { bytesRead?: number; isPaused?(): boolean; destroy(err?: Error): void } };
  };
  let lastHeard = Date.now();
  // Bytes read so far, polled (a 'data' listener of our own would upset COPY streams, which take the socket over).
  let bytesRead = internals.connection.stream.bytesRead ?? 0;
  let active: unknown = null;
  let since = Date.now();
  let probing = false;
  let nextProbeAt = 0;
  const timer = setInterval(
    () => {
      const q = internals._getActiveQuery();
      const now = Date.now();
      const read = internals.connection.stream.bytesRead ?? 0;
      if (read !== bytesRead) {
        bytesRead = read;
        lastHeard = now;
      }
      if (q !== active) {
        active = q;
        since = now;
      }
      if (!q || probing || now - since < stallMs || now - lastHeard < stallMs || now < nextProbeAt) return;
      probing = true;
      // A socket this side paused (a COPY held back by a slow consumer) leaves the server waiting to
      // write by our own doing: not a sign of a dead path then.
      void probeSession(url, serverPid, !(internals.connection.stream.isPaused?.() ?? false))
        .then((why) => {
          if (internals._getActiveQuery() !== q) return;
          // Alive (running, or waiting for a lock): look again after another quiet period.
          if (!why) return void (nextProbeAt = Date.now() + stallMs);
          const err = Object.assign(
            new Error(`dead path: no reply for ${Math.round((Date.now() - lastHeard) / 1000)} s and ${why}; the connection is dropped`),
            { code: 'ETIMEDOUT' },
          );
          internals.connection.stream.destroy(err);
        })
        .finally(() => (probing = false));
    },
    Math.max(100, Math.min(5000, Math.floor(stallMs / 3))),
  );
  timer.unref();
  client.once('end', () => clearInterval(timer));
}

/** Why the session `pid` is beyond help, or null when it is alive (or it cannot be told). */
async function probeSession(url: string, pid: number, reading: boolean): Promise<string | null> {
  const c = new pg.Client(clientConfig(url, { application_name: 'sluice-probe', query_timeout: CONNECT_TIMEOUT_MS }));
  c.on('error', () => {});
  try {
    try {
      await c.connect();
    } catch (err) {
      return isConnectionError(err) ? `the server does not answer a new connection either (${(err as Error).message})` : null;
    }
    const r = await c.query(
      `SELECT state, wait_event, extract(epoch FROM now() - state_change)::float8 AS for_s FROM pg_stat_activity WHERE pid = $1`,
      [pid],
    );
    if (r.rowCount === 0) return `its server session ${pid} is gone`;
    const { state, wait_event: waitEvent, for_s: forS } = r.rows[0] as { state: string | null; wait_event: string | null; for_s: number | null };
    if (state !== null && state.startsWith('idle') && (forS ?? 0) >= 5) {
      await c.query(`SELECT pg_terminate_backend($1)`, [pid]).catch(() => {});
      return `its server session ${pid} has been ${state} for ${Math.round(forS ?? 0)} s (the reply was lost; session ended)`;
    }
    // Blocked sending its reply to a client that has read nothing for the whole quiet period: the
    // path is dead one way (this client reads its socket whenever a query is active), and the
    // server would otherwise wait for TCP to give up, many minutes later.
    if (reading && state === 'active' && waitEvent === 'ClientWrite') {
      await c.query(`SELECT pg_terminate_backend($1)`, [pid]).catch(() => {});
      return `its server session ${pid} is stuck sending its reply (ClientWrite; the path is dead one way; session ended)`;
    }
    return null;
  } catch (err) {
    return isConnectionError(err) ? `the server stopped answering a new connection too (${(err as Error).message})` : null;
  } finally {
    destroyClient(c);
  }
}
