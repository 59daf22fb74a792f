/** CPU seconds a PostgreSQL cluster has used, read from /proc (for benchmarks that report CPU next to wall time). */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster } from '../src/embedded/clusters.js';

/**
 * CPU seconds (user + system) used so far by a cluster: its postmaster, its live children, and its
 * children that have exited (the kernel adds those to the postmaster's cutime/cstime).
 */
export function clusterCpuSeconds(c: Pick<Cluster, 'dataDir'>): number {
  const hz = 100; // USER_HZ on Linux
  let pm: number;
  try {
    pm = Number(readFileSync(join(c.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return NaN;
  }
  const f = procStat(pm);
  if (!f) return NaN;
  // After the ')' : [0]=state [1]=ppid ... [11]=utime [12]=stime [13]=cutime [14]=cstime
  let ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const g = procStat(pid);
    if (g && Number(g[1]) === pm) ticks += Number(g[11]) + Number(g[12]);
  }
  return ticks / hz;
}

/** CPU seconds of the children this process has waited for (psql, pgbench, …). */
export function childrenCpuSeconds(): number {
  const f = procStat('self')!;
  return (Number(f[13]) + Number(f[14])) / 100;
}

function procStat(pid: string | number): string[] | null {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}
