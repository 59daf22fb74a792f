/**
 * `sluice demo --destination duckdb`: the story into a DuckDB file. A throwaway source cluster, the
 * demo table with live writes, `run` into `analytics.duckdb` (an online load: appended, deduplicated
 * once, replayed, swapped in), changes streaming in, then the writes stop, the pipeline lets the file
 * go, `sluice verify` compares both sides, and the demo ends with a query a user would run on the file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { parseConfig } from '../../config/load.js';
import { createLogger } from '../../core/logger.js';
import { sleep } from '../../core/retry.js';
import { createDemoTable, Workload } from '../../demo/workload.js';
import { startCluster } from '../../embedded/clusters.js';
import { createPipeline } from '../../pipeline/orchestrator.js';
import { verifyTables } from '../../verify/verifier.js';
import type { GlobalOptions } from '../shared.js';
import { renderVerdicts } from './verify.js';
import { startAndCatchUp } from './demo.js';

/** What a user asks of the orders first: revenue by status. */
const QUERY = `SELECT status, count(*) AS orders, sum(amount) AS revenue, round(avg(price), 2) AS avg_price
  FROM main.orders GROUP BY status ORDER BY revenue DESC`;


export async function demoDuckDb(flags: { rows?: string; keep?: boolean }, opts: GlobalOptions): Promise<number> {
  const rows = Number(flags.rows ?? 1_000_000);
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const work = mkdtempSync(join(tmpdir(), 'sluice-demo-'));
  const file = join(work, 'analytics.duckdb');
  say(`sluice demo: ${rows.toLocaleString('en-US')} rows from PostgreSQL into a DuckDB file, live writes, backfill alongside CDC`);
  say('1/6 starting a throwaway PostgreSQL source (wal_level=logical)');
  const source = await startCluster({ name: 'demo-source' });
  let workload: Workload | null = null;
  let pipeline: ReturnType<typeof createPipeline> | null = null;
  try {
    say(`    source ${source.url()}\n    destination ${file}`);
    say(`2/6 creating public.orders on the source (${rows.toLocaleString('en-US')} rows of mixed types, 2% with TOASTed notes)`);
    await createDemoTable(source.url(), { rows });
    say('3/6 starting live writes on the source: inserts, updates (some leaving TOASTed values unchanged), deletes, key changes');
    workload = new Workload(source.url(), { ratePerSecond: 500 });
    workload.start();

    const cfg = parseConfig(
      `pipeline: { name: demo, heartbeatIntervalMs: 1000 }
source: { type: postgres, url: "${source.url()}" }
destination: { type: duckdb, path: "${file}", schema: main }
log: { type: embedded, path: "${join(work, 'log')}" }
tables:
  - { name: public.orders, chunkRows: 50000 }
`,
      { env: {} },
    );
    say('4/6 running the pipeline: capture from the first second, chunks appended to a load table, one dedupe, replay, swap, stream');
    pipeline = createPipeline(cfg, { logger: createLogger({ level: opts.verbose ? 'debug' : 'warn', format: opts.logFormat ?? 'pretty' }) });
    await startAndCatchUp(pipeline, say);
    say('    streaming live changes for 3 s ...');
    await sleep(3000);

    say('5/6 stopping the writes, applying the last changes, and letting the file go');
    await workload.stop();
    const ws = workload.stats;
    workload = null;
    say(`    the workload made ${ws.inserts} inserts, ${ws.updates + ws.toastUpdates} updates (${ws.toastUpdates} leaving TOAST unchanged), ${ws.deletes} deletes, ${ws.keyChanges} key changes`);
    await settled(pipeline);
    const c = pipeline.counters();
    say(`    changes captured ${c.captured.toLocaleString('en-US')}, applied ${c.applied.toLocaleString('en-US')}`);
    await pipeline.stop();
    pipeline = null;

    say('    verifying: row count and ordered hash of every row, each engine computing its own');
    const verdicts = await verifyTables(cfg, ['public.orders'], { attempts: 2 });
    say(renderVerdicts(verdicts).replace(/^/gm, '    '));
    const equal = verdicts.every((v) => v.equal);

    const db = await DuckDBInstance.create(file, { access_mode: 'READ_ONLY' });
    const duck = await db.connect();
    try {
      say(`6/6 a query on the DuckDB file (duckdb ${file}):`);
      say(QUERY.replace(/^/gm, '    '));
      const r = await duck.runAndReadAll(QUERY);
      const names = r.columnNames();
      const table = [names, ...r.getRows().map((row) => row.map((v) => String(v)))];
      const widths = names.map((_, i) => Math.max(...table.map((row) => String(row[i]).length)));
      for (const row of table) say(`    ${row.map((v, i) => String(v).padStart(widths[i])).join('  ')}`);
    } finally {
      duck.closeSync();
      db.closeSync();
    }
    if (flags.keep) {
      say(`    --keep: ${file} stays; press Ctrl-C to remove it`);
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
    say(equal ? 'demo finished: the DuckDB file equals the source' : 'demo finished: DIFFERENCES found (see above)');
    return equal ? 0 : 1;
  } finally {
    await workload?.stop().catch(() => {});
    await pipeline?.stop().catch(() => {});
    await source.destroy().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
}

/** Waits until the pipeline has applied every change it captured, and nothing new came for a second. */
async function settled(pipeline: NonNullable<ReturnType<typeof createPipeline>>): Promise<void> {
  const deadline = Date.now() + 120_000;
  let quietSince = Date.now();
  let last = -1;
  while (Date.now() < deadline) {
    const c = pipeline.counters();
    if (c.captured !== last) {
      last = c.captured;
      quietSince = Date.now();
    }
    if (c.applied >= c.captured && Date.now() - quietSince >= 1000) return;
    await sleep(200);
  }
}
