/**
 * DuckDB's Node client, loaded on first use. Loading it loads DuckDB's native library (about half a
 * second), which a sluice with a PostgreSQL destination never needs: the composition root names this
 * driver for every process, so nothing here may load DuckDB when a module is imported. Types are
 * imported with `import type` (erased); values come from `duckdb()`.
 */
import { createRequire } from 'node:module';

type DuckDbApi = typeof import('@duckdb/node-api');

const require = createRequire(import.meta.url);
let api: DuckDbApi | null = null;

export function duckdb(): DuckDbApi {
  if (!api) api = require('@duckdb/node-api') as DuckDbApi;
  return api;
}
