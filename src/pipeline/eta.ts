/**
 * Honest progress and ETA, as pure functions (unit-tested in test/unit/eta.test.ts):
 *
 * - progress is measured in the strategy's own unit: ctid in heap pages, interval and daterange in
 *   key span, keyset in rows against the planner's estimate. It never reads above 100 %, and below
 *   100 % until the copy is done;
 * - when the rows copied pass the estimate (keyset), it says so and gives no ETA, instead of a
 *   number that would be wrong;
 * - the rate counts active copy time only: time paused by the throttle (or waiting for a ceiling)
 *   is left out, and the rate is smoothed (an exponentially weighted average, half-life 30 s);
 * - an ETA only after enough evidence: 30 s of active copying and 1 % of the work;
 * - the state (throttled or not) and the ETA are separate fields;
 * - catching up: the backlog shrinks at apply rate minus capture rate; when that stays ≤ 0 for
 *   long enough the table is "not converging".
 */

export const RATE_HALF_LIFE_MS = 30_000;
export const MIN_ACTIVE_MS = 30_000;
export const MIN_RATIO = 0.01;

export type ProgressUnit = 'pages' | 'keys' | 'rows';

/** What is remembered between two samples of one table's copy. */
export interface RateState {
  readonly lastAtMs: number | null;
  readonly lastUnits: number;
  /** Active (not throttled) copy time so far. */
  readonly activeMs: number;
  readonly throttledMs: number;
  /** Smoothed units per active second; null before the first active interval. */
  readonly rate: number | null;
}

export const NO_RATE: RateState = { lastAtMs: null, lastUnits: 0, activeMs: 0, throttledMs: 0, rate: null };

/**
 * The state after one more sample: `units` done at `atMs`, and whether the copy was held back
 * (throttled or paused) since the last sample. Held-back time adds to `throttledMs` only; units
 * that went back (a new run) start again.
 */
export function sampleRate(s: RateState, atMs: number, units: number, heldBack: boolean, halfLifeMs = RATE_HALF_LIFE_MS): RateState {
  if (s.lastAtMs === null || units < s.lastUnits) return { ...NO_RATE, lastAtMs: atMs, lastUnits: units };
  const dt = atMs - s.lastAtMs;
  if (dt <= 0) return s;
  const moved = units - s.lastUnits;
  if (heldBack && moved === 0) return { ...s, lastAtMs: atMs, throttledMs: s.throttledMs + dt };
  const instant = (moved * 1000) / dt;
  // The weight of the new interval grows with its length, so the half-life is in time, not in samples.
  const alpha = 1 - Math.pow(0.5, dt / halfLifeMs);
  const rate = s.rate === null ? instant : s.rate + alpha * (instant - s.rate);
  return { lastAtMs: atMs, lastUnits: units, activeMs: s.activeMs + dt, throttledMs: s.throttledMs, rate };
}

export interface ProgressInput {
  /** The table is copying now (backfilling); a done copy reads 100 %. */
  readonly copying: boolean;
  readonly done: boolean;
  readonly unit: ProgressUnit;
  /** Units done and the total of the space (pages, key span), or rows and the estimate for `rows`. */
  readonly unitsDone: number;
  readonly unitsTotal: number;
  readonly rowsCopied: number;
  readonly rowsEstimated: number;
  readonly rate: RateState;
  /** Why the copy is held back now (the throttle's reason), or null. */
  readonly heldBack: string | null;
}

export interface Progress {
  unit: ProgressUnit;
  unitsDone: number;
  unitsTotal: number;
  /** 0…1 in the strategy's unit; null when the total is unknown. Below 1 until done. */
  ratio: number | null;
  /** Rows copied passed the estimate (keyset): the ratio is held and there is no ETA. */
  overEstimate: boolean;
  /** Smoothed units per active second. */
  unitsPerSecond: number | null;
  activeSeconds: number;
  throttledSeconds: number;
  /** Held back now (the throttle's reason): a state, shown beside the ETA, not instead of it. */
  heldBack: string | null;
  etaSeconds: number | null;
  /** Why there is no ETA, when there is none. */
  etaNote: string | null;
}

const HOLD_BELOW_DONE = 0.999;

export function estimateProgress(p: ProgressInput): Progress {
  const overEstimate = p.unit === 'rows' && p.copying && p.rowsEstimated > 0 && p.rowsCopied > p.rowsEstimated;
  let ratio: number | null = null;
  if (p.done) ratio = 1;
  else if (p.unitsTotal > 0) ratio = Math.min(HOLD_BELOW_DONE, Math.max(0, p.unitsDone / p.unitsTotal));
  const rate = p.rate.rate;
  const base = {
    unit: p.unit,
    unitsDone: p.unitsDone,
    unitsTotal: p.unitsTotal,
    ratio,
    overEstimate,
    unitsPerSecond: rate === null ? null : round2(rate),
    activeSeconds: Math.round(p.rate.activeMs / 1000),
    throttledSeconds: Math.round(p.rate.throttledMs / 1000),
    heldBack: p.copying ? p.heldBack : null,
  };
  const none = (etaNote: string | null): Progress => ({ ...base, etaSeconds: null, etaNote });
  if (p.done) return none(null);
  if (!p.copying) return none('not copying');
  if (overEstimate) return none(`copied ${p.rowsCopied} rows, past the estimate of ${p.rowsEstimated}: the estimate was low`);
  if (ratio === null) return none('the size of the table is unknown');
  if (p.rate.activeMs < MIN_ACTIVE_MS) return none(`measuring the rate (${Math.floor(p.rate.activeMs / 1000)} s of ${MIN_ACTIVE_MS / 1000} s copied)`);
  if (ratio < MIN_RATIO) return none('measuring the rate (under 1 % done)');
  if (rate === null || rate <= 0) return none(p.heldBack ? 'no progress while held back' : 'no progress in the last samples');
  const left = Math.max(0, p.unitsTotal - p.unitsDone);
  return { ...base, etaSeconds: Math.round(left / rate), etaNote: null };
}

/** What is remembered between two samples of a catching-up table's backlog. */
export interface CatchUpState {
  readonly lastAtMs: number | null;
  readonly lastBacklog: number;
  /** Smoothed backlog shrink per second (apply rate minus capture rate). */
  readonly shrinkRate: number | null;
  /** Since when the smoothed shrink rate has been ≤ 0 (epoch ms), or null. */
  readonly stalledSinceMs: number | null;
}

export const NO_CATCH_UP: CatchUpState = { lastAtMs: null, lastBacklog: 0, shrinkRate: null, stalledSinceMs: null };

export interface CatchUp {
  /** Backlog (bytes of WAL pending for the table) at the last sample. */
  backlog: number;
  /** Apply rate minus capture rate, in backlog units per second (smoothed). */
  shrinkPerSecond: number | null;
  etaSeconds: number | null;
  /** The backlog has not shrunk for `notConvergingMs`: capture outpaces apply. */
  notConverging: boolean;
}

export function sampleCatchUp(s: CatchUpState, atMs: number, backlog: number, halfLifeMs = RATE_HALF_LIFE_MS): CatchUpState {
  if (s.lastAtMs === null) return { ...NO_CATCH_UP, lastAtMs: atMs, lastBacklog: backlog };
  const dt = atMs - s.lastAtMs;
  if (dt <= 0) return s;
  const instant = ((s.lastBacklog - backlog) * 1000) / dt;
  const alpha = 1 - Math.pow(0.5, dt / halfLifeMs);
  const shrinkRate = s.shrinkRate === null ? instant : s.shrinkRate + alpha * (instant - s.shrinkRate);
  // An empty backlog is converged whatever the rate says.
  const stalled = backlog > 0 && shrinkRate <= 0;
  return { lastAtMs: atMs, lastBacklog: backlog, shrinkRate, stalledSinceMs: stalled ? (s.stalledSinceMs ?? s.lastAtMs) : null };
}

export function estimateCatchUp(s: CatchUpState, nowMs: number, notConvergingMs: number): CatchUp {
  const rate = s.shrinkRate;
  const notConverging = s.stalledSinceMs !== null && nowMs - s.stalledSinceMs >= notConvergingMs;
  let etaSeconds: number | null = null;
  if (s.lastBacklog === 0 && s.lastAtMs !== null) etaSeconds = 0;
  else if (rate !== null && rate > 0) etaSeconds = Math.round(s.lastBacklog / rate);
  return { backlog: s.lastBacklog, shrinkPerSecond: rate === null ? null : round2(rate), etaSeconds, notConverging };
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
