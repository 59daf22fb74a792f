/**
 * The composition root: the one place that maps the config's `source.type` and `destination.type`
 * to drivers. The pipeline, the verifier and the CLI see only the ports (sources/source.ts,
 * destinations/destination.ts); a new engine is a driver folder and a line here.
 */
import type { SluiceConfig } from './config/schema.js';
import { SluiceError } from './core/errors.js';
import type { Destination } from './destinations/destination.js';
import { DuckDbDestination } from './destinations/duckdb/driver.js';
import { PostgresDestination } from './destinations/postgres/driver.js';
import { configureConnections } from './postgres/session.js';
import type { Source } from './sources/source.js';
import { PostgresSource } from './sources/postgres/driver.js';

type EngineConfig = Pick<SluiceConfig, 'source' | 'destination' | 'pipeline'>;

export interface Engines {
  readonly source: Source;
  readonly destination: Destination;
}

export function sourceFor(cfg: Pick<EngineConfig, 'source' | 'pipeline'>): Source {
  const type: string = cfg.source.type;
  switch (cfg.source.type) {
    case 'postgres':
      configureConnections(cfg);
      return new PostgresSource(cfg.source.url);
    default:
      throw unknownEngine('source', type);
  }
}

export function destinationFor(cfg: Pick<EngineConfig, 'destination' | 'pipeline'>): Destination {
  const type: string = cfg.destination.type;
  switch (cfg.destination.type) {
    case 'postgres':
      configureConnections(cfg);
      return new PostgresDestination(cfg.destination.url);
    case 'duckdb':
      return new DuckDbDestination(cfg.destination.path, cfg.pipeline.name);
    default:
      throw unknownEngine('destination', type);
  }
}

export function enginesFor(cfg: EngineConfig): Engines {
  return { source: sourceFor(cfg), destination: destinationFor(cfg) };
}

function unknownEngine(side: 'source' | 'destination', type: string): SluiceError {
  const known = side === 'source' ? 'postgres' : 'postgres or duckdb';
  return new SluiceError('CONFIG_INVALID', `${side}.type: sluice has no ${side} driver named ${JSON.stringify(type)}; use ${known}`);
}
