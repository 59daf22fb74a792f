/**
 * `GET /metrics`: Prometheus text (prom-client). Names are `sluice_*`; labels are bounded: the
 * configured table (`schema.name`), closed sets (state, reason, knob, action, outcome). Never a run id,
 * request id or position. Values are read from the status snapshot when scraped.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { TRANSITIONS } from '../core/table-state.js';
import { VERSION } from '../pipeline/orchestrator.js';
import type { Snapshot } from './status-feed.js';

/** Why the throttle holds copying, as a closed set (the status says it in words). */
export const THROTTLE_REASONS = ['manual', 'rate', 'chunks', 'sessions', 'replica_lag', 'slot_lag', 'query'] as const;
const THROTTLE_KNOBS: Record<string, string> = {
  maxRowsPerSecond: 'max_rows_per_second',
  maxChunksPerSecond: 'max_chunks_per_second',
  maxActiveSessions: 'max_active_sessions',
  maxReplicaLagSeconds: 'max_replica_lag_seconds',
  maxSlotLagBytes: 'max_slot_lag_bytes',
};

/** The reason class of a throttle state ("paused: replica lag 12 s > 10 s" → replica_lag), null when open. */
export function throttleReason(state: unknown): (typeof THROTTLE_REASONS)[number] | null {
  if (typeof state !== 'string' || !state.startsWith('paused')) return null;
  if (state.includes('by an operator')) return 'manual';
  if (state.includes('rows/s')) return 'rate';
  if (state.includes('chunks/s')) return 'chunks';
  if (state.includes('active sessions')) return 'sessions';
  if (state.includes('replica lag')) return 'replica_lag';
  if (state.includes('slot retains')) return 'slot_lag';
  return 'query';
}

export class Metrics {
  readonly registry = new Registry();
  private readonly g: Record<string, Gauge<string>> = {};
  private readonly captured: Counter<string>;
  private readonly applied: Counter<string>;
  private readonly requests: Counter<string>;
  private seen = { captured: 0, applied: 0 };

  constructor(pipeline: string, slot: string) {
    collectDefaultMetrics({ register: this.registry });
    // Gauges named like counters, which promtool's lint refuses; prom-client also gives them without the suffix.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name);
    const gauge = (name: string, help: string, labelNames: string[] = []) =>
      (this.g[name] = new Gauge({ name, help, labelNames, registers: [this.registry] }));
    gauge('sluice_build_info', 'sluice version and Node.js version (always 1)', ['version', 'node_version']).set({ version: VERSION, node_version: process.version }, 1);
    gauge('sluice_pipeline_info', 'the pipeline and its replication slot (always 1)', ['pipeline', 'slot']).set({ pipeline, slot }, 1);
    gauge('sluice_pipeline_running', '1 while a sluice run holds the pipeline lock');
    gauge('sluice_table_state', '1 on the current state of each table', ['table', 'state']);
    gauge('sluice_backfill_rows_copied', 'rows copied by the current or last backfill of the table', ['table']);
    gauge('sluice_backfill_rows_estimated', 'rows the source estimated for the table at the start of the backfill', ['table']);
    gauge('sluice_backfill_progress_ratio', 'backfill progress between 0 and 1 (absent when not backfilling)', ['table']);
    gauge('sluice_backfill_rows_per_second', 'rows copied per second, averaged over 30 s', ['table']);
    gauge('sluice_backfill_eta_seconds', 'seconds left of the backfill at the current rate (absent while unknown)', ['table']);
    gauge('sluice_apply_lag_seconds', 'age of the last change applied to the table', ['table']);
    gauge('sluice_apply_lag_bytes', 'WAL between the source now and the table’s oldest unapplied change', ['table']);
    gauge('sluice_slot_retained_wal_bytes', 'WAL the replication slot retains on the source');
    gauge('sluice_slot_active', '1 while the replication slot is active');
    gauge('sluice_changelog_size_bytes', 'size of the embedded change log on disk');
    gauge('sluice_changelog_pending_changes', 'changes captured but not applied since this process started');
    gauge('sluice_throttle_active', '1 while the throttle holds copying, by reason', ['reason']);
    gauge('sluice_throttle_limit', 'throttle limits in effect (0: off)', ['knob']);
    gauge('sluice_apply_paused', '1 while an operator holds applying (capture goes on)');
    gauge('sluice_archives_bytes', 'size of the replaced tables kept by online backfills');
    gauge('sluice_archives', 'replaced tables kept by online backfills');
    this.captured = new Counter({ name: 'sluice_capture_changes_total', help: 'changes captured into the change log', registers: [this.registry] });
    this.applied = new Counter({ name: 'sluice_apply_changes_total', help: 'changes applied to the destination', registers: [this.registry] });
    this.requests = new Counter({
      name: 'sluice_control_requests_total',
      help: 'actions asked through the HTTP API, by outcome',
      labelNames: ['action', 'outcome'],
      registers: [this.registry],
    });
  }

  /** An API action and how it ended: accepted, refused or conflict. */
  countRequest(action: string, outcome: 'accepted' | 'refused' | 'conflict'): void {
    this.requests.inc({ action, outcome });
  }

  /** Sets every gauge from a snapshot; tables and states no longer there disappear. */
  update(s: Snapshot): void {
    const g = this.g;
    for (const name of Object.keys(g)) if (name !== 'sluice_build_info' && name !== 'sluice_pipeline_info') g[name].reset();
    const p = s.status.pipeline;
    g.sluice_pipeline_running.set(p.running ? 1 : 0);
    if (p.slotLagBytes !== null) g.sluice_slot_retained_wal_bytes.set(p.slotLagBytes);
    if (p.slotActive !== null) g.sluice_slot_active.set(p.slotActive ? 1 : 0);
    if (s.live.changeLogBytes !== null) g.sluice_changelog_size_bytes.set(s.live.changeLogBytes);
    g.sluice_changelog_pending_changes.set(Math.max(0, s.live.captured - s.live.applied));
    const t = p.throttle ?? {};
    const reason = throttleReason(t.state);
    for (const r of THROTTLE_REASONS) g.sluice_throttle_active.set({ reason: r }, r === reason ? 1 : 0);
    for (const [key, knob] of Object.entries(THROTTLE_KNOBS)) if (typeof t[key] === 'number') g.sluice_throttle_limit.set({ knob }, t[key] as number);
    g.sluice_apply_paused.set(t.applyPaused ? 1 : 0);
    g.sluice_archives.set(s.status.archives.count);
    g.sluice_archives_bytes.set(s.status.archives.bytes);
    for (const table of s.status.tables) {
      const l = { table: table.name };
      for (const state of Object.keys(TRANSITIONS)) g.sluice_table_state.set({ ...l, state }, state === table.state ? 1 : 0);
      g.sluice_backfill_rows_copied.set(l, table.rowsCopied);
      g.sluice_backfill_rows_estimated.set(l, table.rowsEstimated);
      g.sluice_backfill_rows_per_second.set(l, table.rowsPerSecond);
      if (table.percent !== null) g.sluice_backfill_progress_ratio.set(l, Math.min(1, table.percent / 100));
      if (table.state === 'backfilling' && table.etaSeconds !== null) g.sluice_backfill_eta_seconds.set(l, table.etaSeconds);
      if (table.lagSeconds !== null) g.sluice_apply_lag_seconds.set(l, table.lagSeconds);
      if (table.lagBytes !== null) g.sluice_apply_lag_bytes.set(l, table.lagBytes);
    }
    // Counters only go up: they follow the process's own counts (a new pipeline after a lost slot starts again at 0).
    this.captured.inc(Math.max(0, s.live.captured - this.seen.captured));
    this.applied.inc(Math.max(0, s.live.applied - this.seen.applied));
    this.seen = { captured: s.live.captured, applied: s.live.applied };
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
