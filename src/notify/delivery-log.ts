/**
 * The stored log of webhook deliveries: one row per (event, webhook) with its state, and one row per
 * attempt (time, response code, error). It is an SQLite file beside the pipeline's local state
 * (`<log.path>/notify.db` by default), so a delivery still pending when sluice stops is sent after
 * the next start. Secrets are never stored: the webhook is found again by its URL in the config.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface Delivery {
  /** Stable across retries: the X-Sluice-Delivery header, for receivers to drop duplicates. */
  id: string;
  event: string;
  table: string | null;
  url: string;
  body: string;
  status: DeliveryStatus;
  attempts: number;
  /** Epoch ms of the next attempt; null once delivered or failed. */
  nextAttemptAt: number | null;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface DeliveryAttempt {
  deliveryId: string;
  attempt: number;
  at: number;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS deliveries (
  id TEXT PRIMARY KEY,
  event TEXT NOT NULL,
  table_name TEXT,
  url TEXT NOT NULL,
  body TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  last_status_code INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS attempts (
  delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  attempt INTEGER NOT NULL,
  at INTEGER NOT NULL,
  status_code INTEGER,
  error TEXT,
  duration_ms INTEGER NOT NULL,
  PRIMARY KEY (delivery_id, attempt)
);
`;

/** Delivered and failed deliveries older than this are removed (pending ones never are). */
const KEEP_MS = 7 * 24 * 3600_000;

type Row = Record<string, unknown>;

function toDelivery(r: Row): Delivery {
  return {
    id: String(r.id),
    event: String(r.event),
    table: (r.table_name as string | null) ?? null,
    url: String(r.url),
    body: String(r.body),
    status: r.status as DeliveryStatus,
    attempts: Number(r.attempts),
    nextAttemptAt: r.next_attempt_at === null ? null : Number(r.next_attempt_at),
    lastStatusCode: r.last_status_code === null ? null : Number(r.last_status_code),
    lastError: (r.last_error as string | null) ?? null,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

export class DeliveryLog {
  private readonly db: Database.Database;

  constructor(readonly file: string) {
    mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
  }

  add(d: Pick<Delivery, 'id' | 'event' | 'table' | 'url' | 'body'>, now = Date.now()): void {
    this.db
      .prepare(
        `INSERT OR IGNORE INTO deliveries (id, event, table_name, url, body, status, attempts, next_attempt_at, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)`,
      )
      .run(d.id, d.event, d.table, d.url, d.body, now, now, now);
  }

  /** Pending deliveries due at `now`, oldest first. */
  due(now = Date.now(), limit = 50): Delivery[] {
    return (this.db.prepare(`SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY created_at, id LIMIT ?`).all(now, limit) as Row[]).map(toDelivery);
  }

  /** The earliest next attempt of a pending delivery (epoch ms), or null. */
  nextDueAt(): number | null {
    const r = this.db.prepare(`SELECT min(next_attempt_at) AS t FROM deliveries WHERE status = 'pending'`).get() as Row;
    return r.t === null ? null : Number(r.t);
  }

  /** Records one attempt and the delivery's new state: delivered, pending again at `nextAttemptAt`, or failed (null). */
  recordAttempt(a: DeliveryAttempt, outcome: { status: DeliveryStatus; nextAttemptAt: number | null }): void {
    this.db.transaction(() => {
      this.db
        .prepare(`INSERT OR REPLACE INTO attempts (delivery_id, attempt, at, status_code, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?)`)
        .run(a.deliveryId, a.attempt, a.at, a.statusCode, a.error, a.durationMs);
      this.db
        .prepare(`UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status_code = ?, last_error = ?, updated_at = ? WHERE id = ?`)
        .run(outcome.status, a.attempt, outcome.nextAttemptAt, a.statusCode, a.error, a.at, a.deliveryId);
    })();
  }

  /** Removes finished deliveries older than a week. */
  prune(now = Date.now()): void {
    this.db.prepare(`DELETE FROM deliveries WHERE status <> 'pending' AND updated_at < ?`).run(now - KEEP_MS);
  }

  list(limit = 100): Delivery[] {
    return (this.db.prepare(`SELECT * FROM deliveries ORDER BY created_at DESC, id LIMIT ?`).all(limit) as Row[]).map(toDelivery);
  }

  attempts(deliveryId: string): DeliveryAttempt[] {
    return (this.db.prepare(`SELECT * FROM attempts WHERE delivery_id = ? ORDER BY attempt`).all(deliveryId) as Row[]).map((r) => ({
      deliveryId: String(r.delivery_id),
      attempt: Number(r.attempt),
      at: Number(r.at),
      statusCode: r.status_code === null ? null : Number(r.status_code),
      error: (r.error as string | null) ?? null,
      durationMs: Number(r.duration_ms),
    }));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/**
 * The latest deliveries of a delivery log file with their attempts, newest first (for the HTTP page
 * and `GET /api/v1/deliveries`); an empty list when the file does not exist yet.
 */
export function readDeliveries(file: string, limit = 100): (Delivery & { attemptLog: DeliveryAttempt[] })[] {
  if (!existsSync(file)) return [];
  const log = new DeliveryLog(file);
  try {
    return log.list(limit).map((d) => ({ ...d, attemptLog: log.attempts(d.id) }));
  } finally {
    log.close();
  }
}
