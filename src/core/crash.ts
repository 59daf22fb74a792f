/**
 * Named crash points for fault tests: when SLUICE_CRASH_AT names a point, the process kills itself
 * with SIGKILL on reaching it (no cleanup, no flush: exactly what a power cut or OOM kill does).
 * Points: online:load, online:replay, online:before-swap, online:in-swap.
 */
export function crashPoint(name: string): void {
  if (process.env.SLUICE_CRASH_AT === name) process.kill(process.pid, 'SIGKILL');
}
