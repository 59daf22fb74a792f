import { createPipeline, type Pipeline } from '../../pipeline/orchestrator.js';

import { errorMessage, SluiceError } from '../../core/errors.js';
import { makeLogger, readConfig, type GlobalOptions } from '../shared.js';
import { startLine, startProgress } from './progress.js';
import { startHttp, type HttpSurface } from '../../http/server.js';
import { httpSettings } from '../../http/security.js';

export { startProgress };

/** `sluice run`: capture, backfill, apply until SIGINT/SIGTERM; then a clean stop and exit 0. `--http`: with the operator's surface. */
export async function runCommand(opts: GlobalOptions, flags: { http?: string | boolean } = {}): Promise<number> {
  const cfg = readConfig(opts);
  const log = makeLogger(opts);
  // Checked before anything starts: a non-loopback address without a token exits 2.
  const http = httpSettings(cfg, flags.http, process.env);
  log.info(startLine(cfg));
  let pipeline: Pipeline = createPipeline(cfg, { logger: log });
  await pipeline.start();
  let surface: HttpSurface | null = null;
  if (http) {
    try {
      surface = await startHttp(cfg, () => pipeline, http, log);
    } catch (err) {
      await pipeline.stop();
      throw new SluiceError('CONFIG_INVALID', `cannot listen on ${http.host}:${http.port} for the HTTP API (${errorMessage(err)}): choose another address with --http or api.listen`);
    }
  }
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
    await surface?.close();
  }
}
