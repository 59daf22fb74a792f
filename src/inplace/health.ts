/**
 * The health gate of an in-place job, checked before every chunk on a connection of its own. The
 * database's own signals, in three grades:
 * - hold (hard): more active sessions than allowed (mean of ten samples over a second, because an OLTP
 *   session is active only while its statements run), a standby replaying too far behind, a sluice
 *   replication slot retaining too much WAL (a pipeline that cannot keep up with the job's changes),
 *   autovacuum on the table, a user query returning > 0. The job waits, re-checking every second; a hold longer
 *   than maxHoldSeconds fails the run (critical).
 * - slow down (soft): the rows/s ceiling and the WAL bytes/s budget, paced after each chunk; sessions
 *   that waited on the job's locks during a chunk halve the next one.
 * Every change of the decision is logged with its reason.
 */
import type pg from 'pg';
import { SluiceError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { sleep } from '../core/retry.js';
import type { InplaceThrottle } from './job.js';

const RECHECK_MS = 1000;

const PROBE_SQL = `SELECT
  (SELECT count(*)::int FROM pg_stat_activity
    WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
      AND coalesce(application_name, '') NOT LIKE 'sluice%') AS active,
  (SELECT coalesce(max(extract(epoch FROM greatest(write_lag, flush_lag, replay_lag))), 0)::float8 FROM pg_stat_replication) AS replica_lag,
  (SELECT count(*)::int FROM pg_stat_progress_vacuum v JOIN pg_stat_activity a ON a.pid = v.pid
    WHERE v.relid = $1::oid AND a.backend_type = 'autovacuum worker') AS autovacuum,
  (SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), 0)::float8 FROM pg_replication_slots
    WHERE slot_name LIKE 'sluice%' AND restart_lsn IS NOT NULL) AS slot_retained`;

export class HealthGate {
  private held: string | null = null;

  constructor(
    private readonly c: pg.Client,
    private readonly tableOid: number,
    private limits: InplaceThrottle,
    private readonly logger: Logger,
  ) {}

  setLimits(l: InplaceThrottle): void {
    this.limits = l;
  }

  /** Why the job would hold now, or null. */
  async holdReason(): Promise<string | null> {
    const l = this.limits;
    if (!l.maxActiveSessions && !l.maxReplicaLagSeconds && !l.maxSlotRetainedBytes && !l.pauseWhileAutovacuum && !l.query.trim()) return null;
    const p = (await this.c.query(PROBE_SQL, [this.tableOid])).rows[0] as { active: number; replica_lag: number; autovacuum: number; slot_retained: number };
    if (l.maxActiveSessions > 0 && p.active > l.maxActiveSessions) {
      const mean = await this.meanActive();
      if (mean > l.maxActiveSessions) return `active sessions ${mean.toFixed(1)} > ${l.maxActiveSessions}`;
    }
    if (l.maxReplicaLagSeconds > 0 && p.replica_lag > l.maxReplicaLagSeconds) return `replica lag ${p.replica_lag.toFixed(1)} s > ${l.maxReplicaLagSeconds} s`;
    if (l.maxSlotRetainedBytes > 0 && p.slot_retained > l.maxSlotRetainedBytes) {
      return `a sluice replication slot retains ${Math.round(p.slot_retained / 1024)} KiB of WAL > ${Math.round(l.maxSlotRetainedBytes / 1024)} KiB`;
    }
    if (l.pauseWhileAutovacuum && p.autovacuum > 0) return 'autovacuum is working on the table';
    if (l.query.trim()) {
      const r = await this.c.query(l.query);
      const v = Number(Object.values(r.rows[0] ?? {})[0] ?? 0);
      if (v > 0) return `throttle query returned ${v}`;
    }
    return null;
  }

  private async meanActive(): Promise<number> {
    let sum = 0;
    for (let i = 0; i < 10; i++) {
      sum += (await this.c.query(PROBE_SQL, [this.tableOid])).rows[0].active as number;
      await sleep(100);
    }
    return sum / 10;
  }

  /** Waits until no hard signal holds; returns the milliseconds waited. `onHold` sees each reason. */
  async waitOpen(shouldStop: () => boolean, onHold?: (reason: string) => void): Promise<number> {
    const start = Date.now();
    for (;;) {
      const reason = await this.holdReason();
      if (reason !== this.held) {
        if (reason) this.logger.info('holding', { reason });
        else this.logger.info('throttle open again', { heldSeconds: Math.round((Date.now() - start) / 1000) });
        this.held = reason;
      }
      if (!reason || shouldStop()) return Date.now() - start;
      onHold?.(reason);
      const max = this.limits.maxHoldSeconds;
      if (max > 0 && Date.now() - start > max * 1000) {
        throw new SluiceError('SOURCE_ERROR', `held for more than throttle.maxHoldSeconds (${max} s): ${reason}; the run stops here and resumes with \`sluice inplace run\` again`);
      }
      await sleep(RECHECK_MS);
    }
  }

  /** Milliseconds to wait after a chunk so that its rows and WAL stay within the ceilings. */
  paceMs(rows: number, walBytes: number, chunkMs: number): number {
    const l = this.limits;
    const byRows = l.maxRowsPerSecond > 0 ? (rows / l.maxRowsPerSecond) * 1000 : 0;
    const byWal = l.maxWalBytesPerSecond > 0 ? (walBytes / l.maxWalBytesPerSecond) * 1000 : 0;
    return Math.max(0, Math.max(byRows, byWal) - chunkMs);
  }

  /** The most rows a chunk may have under the rows/s ceiling (a quarter second of it). */
  ceiling(): number {
    return this.limits.maxRowsPerSecond > 0 ? Math.max(1, Math.floor(this.limits.maxRowsPerSecond / 4)) : Number.MAX_SAFE_INTEGER;
  }

  /**
   * Samples, every 100 ms while a chunk runs, how many sessions wait on a lock the chunk's session
   * holds; `stop()` gives the most seen at once.
   */
  watchBlocked(pid: number): { stop: () => Promise<number> } {
    let most = 0;
    const done = new AbortController();
    const loop = (async () => {
      // The first sample after 100 ms: a chunk that ends sooner blocked nobody for long.
      while (!done.signal.aborted) {
        await sleep(100, done.signal);
        if (done.signal.aborted) return;
        try {
          const n = (await this.c.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))`, [pid])).rows[0].n as number;
          most = Math.max(most, n);
        } catch {
          return;
        }
      }
    })();
    return {
      stop: async () => {
        done.abort();
        await loop;
        return most;
      },
    };
  }
}
