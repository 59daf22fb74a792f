import { createPipeline, type Pipeline } from '../../pipeline/orchestrator.js';

import { EventBus } from '../../core/events.js';
import { errorMessage, SluiceError } from '../../core/errors.js';
import { Notifier } from '../../notify/notifier.js';
import { makeLogger, readConfig, type GlobalOptions } from '../shared.js';
import { startLine, startProgress } from './progress.js';
import { ProgressBars } from './progress-bars.js';
import { startHttp, type HttpSurface } from '../../http/server.js';
import { httpSettings } from '../../http/security.js';

export { startProgress };

/** `sluice run`: capture, backfill, apply until SIGINT/SIGTERM; then a clean stop and exit 0. `--http`: with the operator's surface. */
export async function runCommand(opts: GlobalOptions, flags: { http?: string | boolean } = {}): Promise<number> {
  const cfg = readConfig(opts);
  // In a terminal with human logs: live bars per table, log lines above them. Otherwise plain progress lines.
  const bars = process.stderr.isTTY && opts.logFormat !== 'json' && process.env.SLUICE_LOG_FORMAT !== 'json' ? new ProgressBars(process.stderr) : null;
  const log = makeLogger(opts, bars?.write);
  // Checked before anything starts: a non-loopback address without a token exits 2.
  const http = httpSettings(cfg, flags.http, process.env);
  log.info(startLine(cfg));
  // One bus for the whole run (a restart after a lost slot keeps it): webhooks, hooks and the page's stream listen on it.
  const events = new EventBus(cfg.pipeline.name);
  const notifier = new Notifier(cfg, log).start(events);
  let pipeline: Pipeline = createPipeline(cfg, { logger: log, events });
  let progress: NodeJS.Timeout | null = null;
  let surface: HttpSurface | null = null;
  const follow = () => {
    if (bars) bars.follow(pipeline);
    else progress = startProgress(pipeline, log);
  };
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
    await pipeline.start();
    if (http) {
      try {
        surface = await startHttp(cfg, () => pipeline, http, log);
      } catch (err) {
        await pipeline.stop();
        throw new SluiceError('CONFIG_INVALID', `cannot listen on ${http.host}:${http.port} for the HTTP API (${errorMessage(err)}): choose another address with --http or api.listen`);
      }
    }
    follow();
    for (;;) {
      try {
        await pipeline.done;
        break;
      } catch (err) {
        // The slot went away under a running pipeline: with onSlotLost: rebackfill, start again,
        // which recreates the slot and reloads every table online.
        if (!(err instanceof SluiceError && err.code === 'SLOT_LOST' && cfg.source.onSlotLost === 'rebackfill') || signals > 0) throw err;
        log.warn('replication slot lost while running; restarting to recreate it and reload every table online', { error: err.message });
        if (progress) clearInterval(progress);
        pipeline = createPipeline(cfg, { logger: log, events });
        await pipeline.start();
        follow();
      }
    }
    log.info('stopped');
    return 0;
  } finally {
    if (progress) clearInterval(progress);
    bars?.stop();
    await surface?.close();
    await notifier.stop();
  }
}
