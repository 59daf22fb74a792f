/**
 * The page's read-only feeds that come from outside the pipeline's state: the webhook delivery log
 * (`GET /api/v1/deliveries`) and the in-place runs of the source's ledger (`GET /api/v1/inplace`).
 */
import type { SluiceConfig } from '../config/schema.js';
import { recentInplaceRuns, type RecentInplaceRun } from '../inplace/recent.js';
import { readDeliveries } from '../notify/delivery-log.js';
import { notifyDbPath } from '../notify/notifier.js';

export interface DeliveryView {
  id: string;
  event: string;
  table: string | null;
  /** Only the receiver's origin: a webhook's path or query may carry a token. */
  urlOrigin: string;
  status: string;
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  /** ISO time of the next attempt of a pending delivery; null once delivered or failed. */
  nextAttemptAt: string | null;
  createdAt: string;
  updatedAt: string;
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(not a URL)';
  }
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The newest webhook deliveries, newest first; an empty list when nothing was ever delivered. */
export function deliveries(cfg: SluiceConfig, limit: number): DeliveryView[] {
  return readDeliveries(notifyDbPath(cfg), limit).map((d) => ({
    id: d.id,
    event: d.event,
    table: d.table,
    urlOrigin: originOf(d.url),
    status: d.status,
    attempts: d.attempts,
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    nextAttemptAt: iso(d.nextAttemptAt),
    createdAt: iso(d.createdAt)!,
    updatedAt: iso(d.updatedAt)!,
  }));
}

/**
 * The newest in-place runs recorded in the pipeline's source database (where jobs without `database:`
 * run). In-place jobs run on PostgreSQL only: another source has none.
 */
export async function inplaceRuns(cfg: SluiceConfig, limit = 20): Promise<RecentInplaceRun[]> {
  const type: string = cfg.source.type;
  return type === 'postgres' ? recentInplaceRuns(cfg.source.url, limit) : [];
}
