/**
 * Named crash points for fault tests: when SLUICE_CRASH_AT names a point, the process kills itself
 * with SIGKILL on reaching it (no cleanup, no flush: exactly what a power cut or OOM kill does).
 * Points: online:load (a chunk into staging committed), replay:batch (a batch of the replay since L0
 * committed, into staging or the live table; more may be pending), online:replay (the staging table
 * replayed to the head), online:before-swap, online:in-swap; a DuckDB destination adds duckdb:chunk (a
 * chunk appended to the load table committed) and duckdb:dedupe (the one dedupe committed).
 */
export function crashPoint(name: string): void {
  if (process.env.SLUICE_CRASH_AT === name) process.kill(process.pid, 'SIGKILL');
}
