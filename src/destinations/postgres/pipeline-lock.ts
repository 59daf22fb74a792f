/**
 * The pipeline lock: a session-level advisory lock in the destination that the running `sluice run`
 * holds on its control connection for as long as it runs. The server releases it the moment that
 * process's connection ends (a clean stop, a crash, SIGKILL), so whether it is held answers "is a
 * pipeline running?" at once, unlike a heartbeat that only goes stale after a while.
 */
import type pg from 'pg';

/** The lock's key for a pipeline name ($1). */
export const LOCK_KEY_SQL = `hashtextextended('sluice:' || $1, 0)`;

/**
 * The backend pid holding `pipeline`'s lock in this database, or null when no process holds it.
 * Read from pg_locks (a bigint advisory key is classid = high 32 bits, objid = low 32 bits,
 * objsubid = 1), so asking never takes the lock, not even for a moment.
 */
export async function pipelineLockHolder(c: pg.ClientBase, pipeline: string): Promise<number | null> {
  const r = await c.query(
    `SELECT l.pid FROM pg_locks l, (SELECT ${LOCK_KEY_SQL} AS k) key
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid::int8 = ((key.k >> 32) & 4294967295) AND l.objid::int8 = (key.k & 4294967295)
      LIMIT 1`,
    [pipeline],
  );
  return r.rowCount ? Number(r.rows[0].pid) : null;
}
