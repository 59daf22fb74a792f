/** The one place that sleeps in a loop: jittered exponential backoff with a cap. */
import { SluiceError } from './errors.js';

export interface RetryOptions {
  /** Attempts in all, the first included. */
  attempts?: number;
  baseMs?: number;
  capMs?: number;
  signal?: AbortSignal;
  /** Whether an error is worth another attempt; defaults to SluiceError.retryable. */
  retryable?: (err: unknown) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export function backoffMs(attempt: number, baseMs = 200, capMs = 10_000): number {
  const exp = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + Math.random() * (exp / 2));
}

export async function retry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 8;
  const isRetryable = opts.retryable ?? ((e: unknown) => e instanceof SluiceError && e.retryable);
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= attempts || !isRetryable(err) || opts.signal?.aborted) throw err;
      const delay = backoffMs(attempt, opts.baseMs, opts.capMs);
      opts.onRetry?.(err, attempt, delay);
      await sleep(delay, opts.signal);
    }
  }
}
