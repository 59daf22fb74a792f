import { createPipeline, type Pipeline } from '../../pipeline/orchestrator.js';

import type { Logger } from '../../core/logger.js';
import { SluiceError } from '../../core/errors.js';
import { makeLogger, readConfig, redactConfig, type GlobalOptions } from '../shared.js';

/** `sluice run`: capture, backfill, apply until SIGINT/SIGTERM; then a clean stop and exit 0. */
export async function runCommand(opts: GlobalOptions): Promise<number> {
  const cfg = readConfig(opts);
  const log = makeLogger(opts);
  log.info('starting', { config: redactConfig(cfg) as Record<string, unknown> });
  let pipeline: Pipeline = createPipeline(cfg, { logger: log });
  await pipeline.start();
  let progress = startProgress(pipeline, log);
  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals > 1) {
      log.warn('second signal: exiting without waiting', { signal: sig });
      process.exit(130);
    }
    log.info('signal received; stopping cleanly', { signal: sig });
    void pipeline.stop();
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  try {
    for (;;) {
      try {
        await pipeline.done;
        break;
      } catch (err) {
        // The slot went away under a running pipeline: with onSlotLost: rebackfill, start again,
        // which recreates the slot and reloads every table online.
        if (!(err instanceof SluiceError && err.code === 'SLOT_LOST' && cfg.source.onSlotLost === 'rebackfill') || signals > 0) throw err;
        log.warn('replication slot lost while running; restarting to recreate it and reload every table online', { error: err.message });
        clearInterval(progress);
        pipeline = createPipeline(cfg, { logger: log });
        await pipeline.start();
        progress = startProgress(pipeline, log);
      }
    }
    log.info('stopped');
    return 0;
  } finally {
    clearInterval(progress);
  }
}

/** A progress line every few seconds: per table state, rows, rate, lag. */
export function startProgress(pipeline: Pipeline, log: Logger, everyMs = 5000): NodeJS.Timeout {
  let lastApplied = 0;
  let lastAt = Date.now();
  const t = setInterval(() => {
    const c = pipeline.counters();
    const now = Date.now();
    const applyRate = Math.round(((c.applied - lastApplied) * 1000) / Math.max(1, now - lastAt));
    lastApplied = c.applied;
    lastAt = now;
    const parts = [...pipeline.tables.values()].map((rt) => {
      const pct = rt.rowsEstimated > 0 && rt.state === 'backfilling' ? ` ${Math.min(100, Math.floor((rt.rowsCopied / rt.rowsEstimated) * 100))}%` : '';
      const rate = rt.state === 'backfilling' && rt.rowsPerSecond ? ` ${rt.rowsPerSecond.toLocaleString('en-US')} rows/s` : '';
      return `${rt.name} ${rt.state}${pct} ${rt.rowsCopied.toLocaleString('en-US')} rows${rate}`;
    });
    log.info(`progress: ${parts.join('; ')}`, { captured: c.captured, applied: c.applied, appliedPerSecond: applyRate });
  }, everyMs);
  t.unref();
  return t;
}

