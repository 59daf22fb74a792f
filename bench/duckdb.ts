/**
 * Benchmark: PostgreSQL → DuckDB. `npm run bench -- --destination duckdb [--rows N] [--changes K]
 * [--chunk-rows N]` (backfill-and-cdc.ts hands over to this file). It starts its own PostgreSQL 17
 * source, creates `public.orders` (id bigint key, integers, numeric, text, timestamptz, jsonb) with
 * N rows (default 1,000,000), and prints:
 *
 *   1. the physical limit on this machine: psql's `COPY … TO STDOUT (FORMAT csv)` into a file, then
 *      DuckDB's own `COPY … FROM` that file, timed together;
 *   2. a sluice backfill into a DuckDB file (in-process pipeline, mode online: chunks appended, one
 *      dedupe, replay, swap), start → streaming, in rows/s and as a share of the pipe;
 *   3. the same rows loaded in chunks inside DuckDB two ways: appended to a keyless table then one
 *      dedupe (what sluice does), against a MERGE per chunk into the target;
 *   4. CDC: K updates committed on the source while the pipeline streams, first commit → applied.
 *
 * Everything it starts is removed at the end.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import { parseConfig } from '../src/config/load.js';
import { silentLogger } from '../src/core/logger.js';
import { startCluster } from '../src/embedded/clusters.js';
import { createPipeline } from '../src/pipeline/orchestrator.js';
import { findPsql, intOption, withClient } from './support.js';

const BACKFILL_TARGET = 0.8;
const CDC_TARGET = 50_000;
const DEDUPE_TARGET = 3;

const { values: flags } = parseArgs({
  options: {
    destination: { type: 'string' },
    rows: { type: 'string' },
    changes: { type: 'string' },
    'chunk-rows': { type: 'string' },
  },
  strict: true,
});
const ROWS = intOption(flags.rows ?? process.env.BENCH_ROWS, 1_000_000);
const CHANGES = intOption(flags.changes ?? process.env.BENCH_CHANGES, 200_000);
const CHUNK_ROWS = Math.max(1, intOption(flags['chunk-rows'], 50_000));

const DDL_PG = `CREATE TABLE public.orders (id bigint PRIMARY KEY, customer_id int NOT NULL, qty int, amount numeric(12,2), status text, note text, created_at timestamptz, attrs jsonb)`;
const DDL_DUCKDB = `CREATE TABLE orders (id BIGINT NOT NULL, customer_id INTEGER NOT NULL, qty INTEGER, amount DECIMAL(12,2), status VARCHAR, note VARCHAR, created_at TIMESTAMPTZ, attrs JSON)`;
const COLUMNS = 'id, customer_id, qty, amount, status, note, created_at, attrs';

const seconds = (t: number) => (performance.now() - t) / 1000;
const perSecond = (n: number, s: number) => Math.round(n / s).toLocaleString('en-US');

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'sluice-bench-duckdb-'));
  const source = await startCluster({ name: 'bench-duckdb-source', settings: { fsync: 'off', synchronous_commit: 'off' } });
  try {
    await withClient(source.url(), async (c) => {
      await c.query(DDL_PG);
      await c.query(
        `INSERT INTO public.orders SELECT g, g % 10000, g % 7, (g % 100000) / 100.0, (ARRAY['new','paid','shipped'])[1 + g % 3], 'note ' || md5(g::text),
                timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', jsonb_build_object('g', g, 'tag', 't' || (g % 50))
           FROM generate_series(1, ${ROWS}) g`,
      );
      await c.query('VACUUM ANALYZE public.orders');
    });
    process.stdout.write(`PostgreSQL → DuckDB, ${ROWS.toLocaleString('en-US')} rows, chunks of ${CHUNK_ROWS.toLocaleString('en-US')}\n\n`);

    // 1. The pipe: psql COPY csv to a file, then DuckDB's COPY FROM it.
    const csv = join(work, 'orders.csv');
    let t = performance.now();
    await psqlCopyOut(await findPsql(), source.url(), csv);
    const pipeDb = await DuckDBInstance.create(join(work, 'pipe.duckdb'));
    const pipe = await pipeDb.connect();
    await pipe.run(DDL_DUCKDB);
    await pipe.run(`COPY orders FROM '${csv}' (FORMAT csv)`);
    const pipeSeconds = seconds(t);
    pipe.closeSync();
    pipeDb.closeSync();
    const pipeRate = ROWS / pipeSeconds;
    process.stdout.write(`pipe (psql COPY csv → file → DuckDB COPY FROM)   ${pipeSeconds.toFixed(2)} s   ${perSecond(ROWS, pipeSeconds)} rows/s\n`);

    // 2. sluice: a backfill into a DuckDB file, then CDC.
    const file = join(work, 'sluice.duckdb');
    const cfg = parseConfig(
      `pipeline: { name: bench, heartbeatIntervalMs: 1000 }
source: { type: postgres, url: "${source.url()}" }
destination: { type: duckdb, path: "${file}", schema: main }
log: { type: embedded, path: "${join(work, 'log')}" }
tables:
  - { name: public.orders, chunkRows: ${CHUNK_ROWS} }
`,
      { env: {} },
    );
    const pipeline = createPipeline(cfg, { logger: silentLogger });
    t = performance.now();
    await pipeline.start();
    const rt = pipeline.tables.get('public.orders')!;
    while (rt.state !== 'streaming' || rt.staging) {
      if (rt.state === 'failed') throw new Error(`backfill failed: ${rt.error}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const loadSeconds = seconds(t);
    process.stdout.write(
      `sluice backfill (append, one dedupe, replay, swap) ${loadSeconds.toFixed(2)} s   ${perSecond(ROWS, loadSeconds)} rows/s   ` +
        `${((ROWS / loadSeconds / pipeRate) * 100).toFixed(0)} % of the pipe (target ≥ ${BACKFILL_TARGET * 100} %)\n`,
    );

    // 4. CDC: K updates in transactions of 50,000, first commit → applied.
    const changes = Math.min(CHANGES, ROWS);
    const before = pipeline.counters().applied;
    t = performance.now();
    await withClient(source.url(), async (c) => {
      for (let lo = 0; lo < changes; lo += 50_000) {
        await c.query(`UPDATE public.orders SET qty = qty + 1 WHERE id > $1 AND id <= $2`, [lo, Math.min(changes, lo + 50_000)]);
      }
    });
    while (pipeline.counters().applied - before < changes) await new Promise((r) => setTimeout(r, 20));
    const cdcSeconds = seconds(t);
    await pipeline.stop();
    process.stdout.write(
      `sluice CDC (${changes.toLocaleString('en-US')} updates)                  ${cdcSeconds.toFixed(2)} s   ${perSecond(changes, cdcSeconds)} changes/s (target ≥ ${CDC_TARGET.toLocaleString('en-US')})\n\n`,
    );

    // 3. Inside DuckDB: append + one dedupe against a MERGE per chunk, from the same rows.
    const db = await DuckDBInstance.create(join(work, 'strategies.duckdb'));
    const c = await db.connect();
    await c.run(DDL_DUCKDB.replace('orders', 'rows_in'));
    await c.run(`COPY rows_in FROM '${csv}' (FORMAT csv)`);
    const chunks: [number, number][] = [];
    for (let lo = 0; lo < ROWS; lo += CHUNK_ROWS) chunks.push([lo, Math.min(ROWS, lo + CHUNK_ROWS)]);
    await c.run(`${DDL_DUCKDB.replace('orders', 'load_t').replace(/\)$/, ', _seq BIGINT)')}`);
    t = performance.now();
    for (const [i, [lo, hi]] of chunks.entries()) {
      await c.run(`BEGIN; INSERT INTO load_t SELECT *, ${i} FROM rows_in WHERE id > ${lo} AND id <= ${hi}; COMMIT`);
    }
    await c.run(`CREATE TABLE appended AS SELECT ${COLUMNS} FROM load_t QUALIFY row_number() OVER (PARTITION BY id ORDER BY _seq DESC) = 1`);
    const appendSeconds = seconds(t);
    await c.run(DDL_DUCKDB.replace('orders', 'merged'));
    const set = COLUMNS.split(', ').filter((x) => x !== 'id').map((x) => `${x} = s.${x}`).join(', ');
    t = performance.now();
    for (const [lo, hi] of chunks) {
      await c.run(
        `BEGIN; MERGE INTO merged AS t USING (SELECT * FROM rows_in WHERE id > ${lo} AND id <= ${hi}) AS s ON (t.id = s.id)` +
          ` WHEN MATCHED THEN UPDATE SET ${set} WHEN NOT MATCHED THEN INSERT (${COLUMNS}) VALUES (${COLUMNS.split(', ').map((x) => `s.${x}`).join(', ')}); COMMIT`,
      );
    }
    const mergeSeconds = seconds(t);
    c.closeSync();
    db.closeSync();
    process.stdout.write(`inside DuckDB, ${chunks.length} chunks of the same rows:\n`);
    process.stdout.write(`  append each chunk, then one dedupe   ${appendSeconds.toFixed(2)} s   ${perSecond(ROWS, appendSeconds)} rows/s\n`);
    process.stdout.write(`  MERGE each chunk into the target     ${mergeSeconds.toFixed(2)} s   ${perSecond(ROWS, mergeSeconds)} rows/s\n`);
    process.stdout.write(`  append + dedupe is ${(mergeSeconds / appendSeconds).toFixed(1)}× faster (target ≥ ${DEDUPE_TARGET}×)\n`);
  } finally {
    await source.destroy().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
}

async function psqlCopyOut(psql: string, url: string, path: string): Promise<void> {
  const p = spawn(psql, [url, '-X', '-q', '-c', `COPY (SELECT ${COLUMNS} FROM public.orders) TO STDOUT (FORMAT csv)`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve, reject) => {
    p.on('error', reject);
    p.on('exit', resolve);
  });
  await pipeline(p.stdout, createWriteStream(path));
  const code = await exited;
  if (code !== 0) throw new Error(`psql exited ${code}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
