/**
 * Limits set with `sluice throttle` outlive the process that received them: they are kept in
 * `_sluice.pipelines.throttle` (key `override`: the limits changed and when) and applied again when
 * `sluice run` starts, until `sluice throttle --reset` goes back to the config's limits.
 */
import type pg from 'pg';
import type { ThrottleLimits } from './throttler.js';

export interface ThrottleOverride {
  /** When `sluice throttle` last changed them (ISO time). */
  at: string;
  /** Only the limits `sluice throttle` set; the others come from the config. */
  limits: Partial<ThrottleLimits>;
}

export const THROTTLE_KEYS = ['maxRowsPerSecond', 'maxChunksPerSecond', 'maxActiveSessions', 'maxReplicaLagSeconds', 'maxSlotLagBytes'] as const;

/** The limits a throttle request changes. */
export function limitsOf(params: Record<string, unknown>): Partial<ThrottleLimits> {
  const change: Partial<ThrottleLimits> = {};
  for (const k of THROTTLE_KEYS) if (params[k] !== undefined) change[k] = Math.max(0, Number(params[k]));
  if (typeof params.query === 'string') change.query = params.query;
  return change;
}

export async function readOverride(c: pg.ClientBase, pipeline: string): Promise<ThrottleOverride | null> {
  const r = await c.query(`SELECT throttle -> 'override' AS o FROM _sluice.pipelines WHERE name = $1`, [pipeline]);
  const o = r.rows[0]?.o as ThrottleOverride | null | undefined;
  return o && typeof o.at === 'string' && o.limits ? o : null;
}

/** Where the limits in effect come from, for status and logs. */
export function throttleSource(o: ThrottleOverride | null | undefined): string {
  return o ? `\`sluice throttle\` at ${o.at} (${Object.keys(o.limits).join(', ')}; \`sluice throttle --reset\` goes back to the config)` : 'config';
}

/** The JSON kept in `_sluice.pipelines.throttle`: limits in effect, state, and the override. */
export function throttleRecord(limits: ThrottleLimits, state: string, override: ThrottleOverride | null, applyPaused: string | null = null): string {
  return JSON.stringify({ ...limits, state, source: throttleSource(override), override, applyPaused });
}
