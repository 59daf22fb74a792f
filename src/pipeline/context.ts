/** What every part of a running pipeline shares: config, connections, the change log, the logger. */
import type { ChangeLog } from '../changelog/changelog.js';
import type { SluiceConfig } from '../config/schema.js';
import type { EventBus } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import { enginesFor, type Engines } from '../engines.js';
import type { Throttler } from './throttler.js';

// PostgreSQL sessions for the pipeline parts that still run their own SQL (docs/architecture.md, "Ports").
export { configureConnections, connect, SESSION_OPTIONS, withTransaction } from '../postgres/session.js';

export interface PipelineContext {
  readonly cfg: SluiceConfig;
  readonly pipeline: string;
  readonly slot: string;
  readonly publication: string;
  readonly logger: Logger;
  readonly changeLog: ChangeLog;
  readonly throttler: Throttler;
  /** Lifecycle events for the operator (src/core/events.ts). */
  readonly events: EventBus;
  readonly version: string;
}


const enginesByConfig = new WeakMap<SluiceConfig, Engines>();

/** The source and destination drivers of the pipeline's config (the composition root picks them by type). */
export function enginesOf(ctx: Pick<PipelineContext, 'cfg'>): Engines {
  let engines = enginesByConfig.get(ctx.cfg);
  if (!engines) {
    engines = enginesFor(ctx.cfg);
    enginesByConfig.set(ctx.cfg, engines);
  }
  return engines;
}
