/**
 * When a failed webhook delivery is tried again: 1 s after the first failure, then doubling
 * (2 s, 4 s, 8 s …) up to 5 minutes between attempts. No jitter: deliveries of one event to one
 * receiver are already spread by when each failed, and a fixed schedule is what the docs promise.
 */
export const FIRST_RETRY_MS = 1000;
export const MAX_RETRY_MS = 5 * 60_000;

/** Milliseconds to wait after failed attempt number `attempt` (1-based). */
export function retryDelayMs(attempt: number): number {
  const n = Math.max(1, Math.floor(attempt));
  return Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(n - 1, 30));
}
