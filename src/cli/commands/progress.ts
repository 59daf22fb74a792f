/** What `sluice run` prints about itself: one compact start-up line, and a short progress line when something changed. */
import type { SluiceConfig } from '../../config/schema.js';
import type { Logger } from '../../core/logger.js';
import { redactUrl } from '../../config/load.js';
import type { Pipeline } from '../../pipeline/orchestrator.js';
import { formatCount, formatEta } from '../../pipeline/status-format.js';

/** The config on one line, passwords replaced: what this run works with. */
export function startLine(cfg: SluiceConfig): string {
  const tables = cfg.tables.map((t) => `${t.name}${t.mode !== 'online' ? `(${t.mode})` : ''}`).join(',');
  const limits = Object.entries(cfg.throttle)
    .filter(([, v]) => v !== 0 && v !== '' && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : v}`);
  const parts = [
    `pipeline=${cfg.pipeline.name}`,
    `source=${redactUrl(cfg.source.url)}`,
    ...(cfg.source.replicaUrl ? [`replica=${redactUrl(cfg.source.replicaUrl)}`] : []),
    `destination=${cfg.destination.type === 'postgres' ? redactUrl(cfg.destination.url) : `duckdb:${cfg.destination.path}`} schema=${cfg.destination.schema}`,
    `log=${cfg.log.type === 'embedded' ? cfg.log.path : cfg.log.type}`,
    `concurrency=${cfg.pipeline.concurrency}`,
    `tables=${tables}`,
    ...(limits.length ? [`throttle=${limits.join(',')}`] : []),
  ];
  return `starting: ${parts.join(' ')}`;
}

/**
 * Every `everyMs` at most, a progress line when the tables' states or percentages changed (or a
 * minute went by): `progress: 3/5 tables streaming; public.album backfilling ~45% ~2m; 1.2k changes/s`.
 */
export function startProgress(pipeline: Pipeline, log: Logger, everyMs = 5000): NodeJS.Timeout {
  let lastApplied = 0;
  let lastAt = Date.now();
  let lastKey = '';
  let lastPrinted = 0;
  const t = setInterval(() => {
    const c = pipeline.counters();
    const now = Date.now();
    const applyRate = ((c.applied - lastApplied) * 1000) / Math.max(1, now - lastAt);
    lastApplied = c.applied;
    lastAt = now;
    const tables = [...pipeline.tables.values()];
    const streaming = tables.filter((rt) => rt.state === 'streaming').length;
    const busy = tables
      .filter((rt) => rt.state !== 'streaming')
      .map((rt) => {
        if (rt.state !== 'backfilling') return `${rt.name} ${rt.state}`;
        // The honest figures of the last status write (pipeline/eta.ts): no ETA until there is evidence.
        const p = pipeline.progressOf(rt.name);
        const pct = p && p.ratio !== null ? Math.floor(p.ratio * 100) : null;
        return `${rt.name} backfilling${pct === null ? '' : ` ~${pct}%`}${p?.etaSeconds == null ? '' : ` ~${formatEta(p.etaSeconds)}`}`;
      });
    const key = `${streaming}|${busy.join(';')}`;
    if (key === lastKey && now - lastPrinted < 60_000) return;
    lastKey = key;
    lastPrinted = now;
    log.info(`progress: ${streaming}/${tables.length} tables streaming${busy.length ? `; ${busy.join('; ')}` : ''}; ${formatCount(applyRate)} changes/s`);
  }, everyMs);
  t.unref();
  return t;
}
