/**
 * How sluice opens a PostgreSQL connection (source or destination), so that a dead network path
 * is noticed in bounded time instead of hanging forever:
 *
 * - a connect attempt (TCP, TLS, startup, authentication) that has not finished within
 *   CONNECT_TIMEOUT_MS fails with a retryable error;
 * - TCP keepalives start after KEEPALIVE_IDLE_MS of silence on the socket: a peer that is gone
 *   (host down, path cut) turns into a socket error once the kernel's probes go unanswered
 *   (Linux: `net.ipv4.tcp_keepalive_intvl` × `tcp_keepalive_probes`, 75 s × 9 by default);
 * - the replication stream has its own, tighter bound (`source.replicationTimeoutMs`,
 *   replication-stream.ts), because it is the connection that legitimately waits the longest.
 *
 * No statement timeout is set: a chunk, an index build or an apply batch waiting for a user's
 * lock is legitimate, however long it takes; `sluice status` says what it waits for.
 */
import type pg from 'pg';

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
