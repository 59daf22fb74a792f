/** Figures and words `sluice status` and the progress line share: percent, ETA, the throttle's one description. */

/** Rows copied / rows estimated in percent; capped at 99 while not done (the estimate is the planner's). */
export function percentCopied(copied: number, estimated: number): number | null {
  if (estimated <= 0) return null;
  return Math.min(99, Math.floor((copied / estimated) * 100));
}

/** Seconds left at `rate` rows/s, or null without a rate or an estimate. */
export function etaSeconds(copied: number, estimated: number, rate: number): number | null {
  if (rate <= 0 || estimated <= 0) return null;
  return Math.max(0, Math.round((estimated - copied) / rate));
}

export function formatEta(seconds: number): string {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))}s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
  const h = Math.floor(seconds / 3600);
  return `${h}h${String(Math.round((seconds - h * 3600) / 60)).padStart(2, '0')}m`;
}

export function formatCount(n: number): string {
  if (n < 1000) return String(Math.round(n));
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

/**
 * The one throttle description: its state ("open", or why it pauses), a rows/s or chunks/s ceiling
 * that is holding chunks back (told by tables waiting on it), the limits that are set, and where they
 * come from.
 */
export function describeThrottle(t: Record<string, unknown>, tableDetails: (string | null)[] = []): string {
  const state = String(t.state ?? 'open');
  const ceiling = state === 'open' ? tableDetails.find((d) => d && /^paused: (rows|chunks)\/s ceiling/.test(d)) : undefined;
  const limits = Object.entries(t)
    .filter(([k, v]) => !['state', 'source', 'override'].includes(k) && v !== 0 && v !== '' && v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : v}`);
  const head = ceiling ? `open, held to the ${ceiling.replace(/^paused: /, '')}` : state === 'not running' ? 'not running; applied again at the next start' : state;
  return `${head}; limits ${limits.length ? limits.join(' ') : 'none'}; from ${t.source ?? 'config'}`;
}
