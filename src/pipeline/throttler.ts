/**
 * The Throttler: every chunk passes through `acquire()` before it is read (contract 8), gh-ost's
 * stack for PostgreSQL:
 * - a rows/s ceiling and a chunks/s ceiling (token buckets, one second of burst each), shared by
 *   all backfills; with a rows/s ceiling set, chunks are also capped at a quarter second of it
 *   (`ceilingCap` in chunking.ts);
 * - pauses while the source has more than N active sessions (other than sluice's own) on average
 *   over the last second, while the replica lags more than N seconds, while sluice's slot retains
 *   more than N bytes of WAL, or while a user query returns a number > 0.
 * Conditions are probed once a second by one loop (not per chunk); active sessions are sampled every
 * 100 ms, because an OLTP session is "active" only for the moments its statements run and a single
 * sample a second mostly sees none. Every limit can be changed while running (`sluice throttle …`).
 * The reason it is closed is visible in status.
 */
import pg from 'pg';
import type { ThrottleConfig } from '../config/schema.js';
import type { Logger } from '../core/logger.js';
import { sleep } from '../core/retry.js';
import { clientConfig } from '../postgres/connection.js';

export type ThrottleLimits = ThrottleConfig;

export interface ThrottleSources {
  readonly sourceUrl: string;
  readonly replicaUrl?: string;
  readonly slot: string;
}

const PROBE_INTERVAL_MS = 1000;
const ACTIVE_SAMPLE_MS = 100;
const ACTIVE_WINDOW_MS = 1000;
const ACTIVE_SQL = `SELECT count(*)::int AS v FROM pg_stat_activity
  WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
    AND coalesce(application_name, '') NOT LIKE 'sluice%'`;

export class Throttler {
  private readonly rowBucket: Bucket;
  private readonly chunkBucket: Bucket;
  private limitsNow: ThrottleLimits;
  /** Why chunks wait now, or null when the throttle is open. */
  private paused: string | null = null;
  /** Why an operator holds copying (`sluice pause`), or null; it outranks the probed conditions. */
  private held: string | null = null;
  private src: pg.Client | null = null;
  private replica: pg.Client | null = null;
  private timer: NodeJS.Timeout | null = null;
  private probing = false;
  /** Active-session counts of the last second, sampled every 100 ms on a connection of their own. */
  private activeSamples: { at: number; n: number }[] = [];
  private sampler: pg.Client | null = null;
  private sampleTimer: NodeJS.Timeout | null = null;
  private sampling = false;
  /** Hears every change of the reason (null: open), for the throttle.engaged/released events. */
  onChange: ((reason: string | null, was: string | null) => void) | null = null;

  constructor(
    limits: ThrottleLimits,
    private readonly sources: ThrottleSources | null = null,
    private readonly logger: Logger | null = null,
  ) {
    this.limitsNow = { ...limits };
    this.rowBucket = new Bucket(() => this.limitsNow.maxRowsPerSecond);
    this.chunkBucket = new Bucket(() => this.limitsNow.maxChunksPerSecond);
  }

  get limits(): ThrottleLimits {
    return { ...this.limitsNow };
  }

  /** "open", or why chunks are waiting ("paused: replica lag 12 s > 10 s"). */
  get reason(): string {
    return this.held ?? this.paused ?? 'open';
  }

  /** Holds copying until called with null (`sluice pause` / `sluice resume`); capture and apply go on. */
  hold(reason: string | null): void {
    this.held = reason;
  }

  setLimits(change: Partial<ThrottleLimits>): void {
    this.limitsNow = { ...this.limitsNow, ...change };
    this.logger?.info('throttle limits changed', { ...this.limitsNow });
    void this.probe();
  }

  /** Legacy single-knob setter. */
  setMaxRowsPerSecond(n: number): void {
    this.setLimits({ maxRowsPerSecond: Math.max(0, n) });
  }

  get limit(): number {
    return this.limitsNow.maxRowsPerSecond;
  }

  start(): void {
    if (this.timer || !this.sources) return;
    this.timer = setInterval(() => void this.probe(), PROBE_INTERVAL_MS);
    this.timer.unref();
    this.sampleTimer = setInterval(() => void this.sampleActive(), ACTIVE_SAMPLE_MS);
    this.sampleTimer.unref();
    void this.probe();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.sampleTimer) clearInterval(this.sampleTimer);
    this.timer = null;
    this.sampleTimer = null;
    await this.sampler?.end().catch(() => {});
    this.sampler = null;
    await this.src?.end().catch(() => {});
    await this.replica?.end().catch(() => {});
    this.src = null;
    this.replica = null;
  }

  /**
   * Waits until `rows` may be read: while a condition holds, then for the rows/s budget. `onWait`
   * hears the reason while it waits and null when it goes on.
   */
  async acquire(rows: number, signal?: AbortSignal, onWait?: (reason: string | null) => void): Promise<void> {
    let waited = false;
    while ((this.held ?? this.paused) && !signal?.aborted) {
      waited = true;
      onWait?.(this.held ?? this.paused);
      await sleep(250, signal);
    }
    if (await this.rowBucket.take(rows, signal, (rate) => onWait?.(`paused: rows/s ceiling ${rate}`))) waited = true;
    if (await this.chunkBucket.take(1, signal, (rate) => onWait?.(`paused: chunks/s ceiling ${rate}`))) waited = true;
    if (waited) onWait?.(null);
  }

  /** Evaluates the conditions; the first that holds is the reason. Probe errors leave the throttle as it was. */
  private async probe(): Promise<void> {
    if (this.probing || !this.sources) return;
    this.probing = true;
    try {
      const l = this.limitsNow;
      let reason: string | null = null;
      if (l.maxActiveSessions > 0) {
        const n = await this.meanActive();
        if (n > l.maxActiveSessions) reason = `paused: ${n} active sessions on the source > ${l.maxActiveSessions} (mean of the last second)`;
      }
      if (!reason && l.maxReplicaLagSeconds > 0) {
        const lag = await this.replicaLagSeconds();
        if (lag !== null && lag > l.maxReplicaLagSeconds) reason = `paused: replica lag ${Math.round(lag)} s > ${l.maxReplicaLagSeconds} s`;
      }
      if (!reason && l.maxSlotLagBytes > 0) {
        const bytes = await this.sourceValue(
          `SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::float8 AS v FROM pg_replication_slots WHERE slot_name = $1`,
          [this.sources.slot],
        );
        if (bytes > l.maxSlotLagBytes) reason = `paused: slot retains ${bytes} bytes of WAL > ${l.maxSlotLagBytes}`;
      }
      if (!reason && l.query.trim() !== '') {
        const c = await this.sourceClient();
        const r = await c.query({ text: l.query, rowMode: 'array' });
        const v = Number(r.rows[0]?.[0] ?? 0);
        if (v > 0) reason = `paused: throttle query returned ${v}`;
      }
      if (reason !== this.paused) {
        if (reason) this.logger?.warn('backfill throttled', { reason });
        else if (this.paused) this.logger?.info('throttle open again', { was: this.paused });
        this.onChange?.(reason, this.paused);
      }
      this.paused = reason;
    } catch (err) {
      this.logger?.debug('throttle probe failed', { error: (err as Error).message });
      await this.src?.end().catch(() => {});
      await this.replica?.end().catch(() => {});
      this.src = null;
      this.replica = null;
    } finally {
      this.probing = false;
    }
  }

  /** One sample of the active sessions, when that limit is set; errors drop the sampling connection. */
  private async sampleActive(): Promise<void> {
    if (this.sampling || !this.sources) return;
    if (this.limitsNow.maxActiveSessions <= 0) {
      this.activeSamples = [];
      return;
    }
    this.sampling = true;
    try {
      if (!this.sampler) this.sampler = await open(this.sources.sourceUrl);
      const r = await this.sampler.query(ACTIVE_SQL);
      const now = Date.now();
      this.activeSamples.push({ at: now, n: Number(r.rows[0]?.v ?? 0) });
      while (this.activeSamples.length > 0 && this.activeSamples[0].at < now - ACTIVE_WINDOW_MS) this.activeSamples.shift();
    } catch (err) {
      this.logger?.debug('active sessions sample failed', { error: (err as Error).message });
      await this.sampler?.end().catch(() => {});
      this.sampler = null;
    } finally {
      this.sampling = false;
    }
  }

  /** Mean active sessions over the last second (one decimal); sampled now when there is no recent sample. */
  private async meanActive(): Promise<number> {
    const recent = this.activeSamples.filter((x) => x.at >= Date.now() - ACTIVE_WINDOW_MS);
    if (recent.length === 0) return this.sourceValue(ACTIVE_SQL);
    return Math.round((recent.reduce((a, x) => a + x.n, 0) / recent.length) * 10) / 10;
  }

  private async replicaLagSeconds(): Promise<number | null> {
    if (this.sources?.replicaUrl) {
      if (!this.replica) this.replica = await open(this.sources.replicaUrl);
      const r = await this.replica.query(
        `SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                     ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8 AS v`,
      );
      return r.rows[0].v;
    }
    // No replica configured: the slowest streaming standby of the source.
    const v = await this.sourceValue(`SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 AS v FROM pg_stat_replication`);
    return v;
  }

  private async sourceClient(): Promise<pg.Client> {
    if (!this.src) this.src = await open(this.sources!.sourceUrl);
    return this.src;
  }

  private async sourceValue(sql: string, params: unknown[] = []): Promise<number> {
    const c = await this.sourceClient();
    const r = await c.query(sql, params);
    return Number(r.rows[0]?.v ?? 0);
  }
}

/**
 * A token bucket with one second of burst, at a rate read live (0: no limit). A take that overdraws
 * waits in short steps at the rate of the moment, so a limit changed while it waits (`sluice
 * throttle`) applies to that wait at once, not only to the next one.
 */
class Bucket {
  private tokens: number;
  private last = Date.now();

  constructor(private readonly rate: () => number) {
    this.tokens = rate();
  }

  /** Takes `n` tokens; true when it had to wait. `onWait` hears the rate it waits at. */
  async take(n: number, signal: AbortSignal | undefined, onWait: (rate: number) => void): Promise<boolean> {
    const max = this.rate();
    if (max <= 0 || signal?.aborted) return false;
    const now = Date.now();
    this.tokens = Math.min(max, this.tokens + ((now - this.last) / 1000) * max);
    this.last = now;
    this.tokens -= n;
    if (this.tokens >= 0) return false;
    let owed = -this.tokens;
    while (owed > 0 && !signal?.aborted) {
      const rate = this.rate();
      if (rate <= 0) break;
      onWait(rate);
      const stepMs = Math.min(250, Math.ceil((owed / rate) * 1000));
      await sleep(stepMs, signal);
      owed -= (stepMs / 1000) * rate;
    }
    return true;
  }
}

async function open(url: string): Promise<pg.Client> {
  // A probe that hears nothing back within 30 s is on a dead path: it fails, and the next probe opens a new connection.
  const c = new pg.Client(clientConfig(url, { application_name: 'sluice-throttle', query_timeout: 30_000 }));
  c.on('error', () => {});
  await c.connect();
  return c;
}
