/**
 * Which of sluice's own sessions in the destination wait for a lock, on which table, and who holds
 * it: read from pg_locks and pg_blocking_pids() on a separate connection, so `sluice status` can say
 * what a table waits for ("waiting for a lock on public.orders held by pid 4242 …") instead of
 * looking stuck. Sessions are sluice's by their application_name (`sluice`, `sluice-apply`,
 * `sluice-chunk`, …).
 */
import type pg from 'pg';

export interface LockHolder {
  pid: number;
  applicationName: string;
  state: string | null;
  /** The holder's current (or last) statement, shortened. */
  query: string;
  /** Seconds since the holder's transaction began. */
  transactionSeconds: number | null;
}

export interface LockWait {
  /** `schema.table` the waiting session wants (null when the wait is for a row or a transaction). */
  relation: string | null;
  /** The lock mode asked for, e.g. RowExclusiveLock. */
  mode: string;
  /** sluice's waiting session. */
  pid: number;
  applicationName: string;
  waitingSeconds: number;
  /** The waiting session's statement (to place a row-lock wait). */
  query: string;
  blockers: LockHolder[];
}

const QUERY_CHARS = 200;

/** Sessions named `sluice*` in this database that wait for a lock held by someone, with the holders. */
export async function readLockWaits(client: pg.ClientBase): Promise<LockWait[]> {
  const r = await client.query(
    `SELECT w.pid, w.application_name AS app, extract(epoch FROM now() - w.query_start)::float8 AS waited,
            left(w.query, ${QUERY_CHARS}) AS query, l.mode,
            (SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = l.relation) AS rel,
            b.pid AS bpid, b.application_name AS bapp, b.state AS bstate, left(b.query, ${QUERY_CHARS}) AS bquery,
            extract(epoch FROM now() - b.xact_start)::float8 AS bxact
       FROM pg_stat_activity w
       JOIN pg_locks l ON l.pid = w.pid AND NOT l.granted
       CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
       JOIN pg_stat_activity b ON b.pid = bp.pid
      WHERE w.datname = current_database() AND w.application_name LIKE 'sluice%' AND w.pid <> pg_backend_pid()
      ORDER BY w.pid, b.pid`,
  );
  const byPid = new Map<number, LockWait>();
  for (const x of r.rows) {
    let w = byPid.get(x.pid);
    if (!w) {
      w = {
        relation: x.rel ?? null,
        mode: x.mode,
        pid: x.pid,
        applicationName: x.app,
        waitingSeconds: Math.max(0, Math.round(Number(x.waited ?? 0))),
        query: x.query ?? '',
        blockers: [],
      };
      byPid.set(x.pid, w);
    }
    if (!w.blockers.some((b) => b.pid === x.bpid)) {
      w.blockers.push({
        pid: x.bpid,
        applicationName: x.bapp ?? '',
        state: x.bstate ?? null,
        query: (x.bquery ?? '').replace(/\s+/g, ' ').trim(),
        transactionSeconds: x.bxact === null ? null : Math.round(Number(x.bxact)),
      });
    }
  }
  return [...byPid.values()];
}

/** Whether `wait` is on `table` (`schema.name`): its lock's relation, or, for a row wait, its statement. */
export function waitIsOn(wait: LockWait, table: string): boolean {
  if (wait.relation !== null) return wait.relation === table;
  const dot = table.indexOf('.');
  const quoted = `"${table.slice(0, dot).replace(/"/g, '""')}"."${table.slice(dot + 1).replace(/"/g, '""')}"`;
  return wait.query.includes(quoted) || wait.query.includes(table);
}

/** "waiting 12 s for a lock on public.orders held by pid 4242 (application_name psql, idle in transaction for 30 s, query: LOCK TABLE …)" */
export function describeLockWait(wait: LockWait, table: string): string {
  const holders = wait.blockers
    .map((b) => {
      const parts = [`application_name ${b.applicationName === '' ? '(none)' : b.applicationName}`];
      if (b.state) parts.push(b.transactionSeconds !== null ? `${b.state}, transaction open ${b.transactionSeconds} s` : b.state);
      if (b.query) parts.push(`query: ${b.query.length >= QUERY_CHARS ? `${b.query}…` : b.query}`);
      return `pid ${b.pid} (${parts.join(', ')})`;
    })
    .join(' and ');
  return `${wait.applicationName} (pid ${wait.pid}) waiting ${wait.waitingSeconds} s for a lock on ${wait.relation ?? table} (${wait.mode}) held by ${holders}`;
}
