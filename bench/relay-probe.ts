/**
 * Probe: where a single-stream load's time goes, on one pair of clusters (not part of `npm run bench`).
 * Times the same 3M-row copy as the psql pipe, as a Node relay (pg-copy-streams) at two buffer sizes,
 * and with the keyset chunk's WHERE, each into an empty table without / with the key.
 *   node dist/bench/relay-probe.js [--pg 15] [--rows N] [--server-defaults]
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { startClusters } from '../src/embedded/clusters.js';
import { requireSystemPostgresBinDir } from '../src/embedded/system-postgres.js';
import { createOrders9 } from './tables.js';
import { findPsql, intOption, withClient } from './support.js';

const { values: f } = parseArgs({ options: { pg: { type: 'string' }, rows: { type: 'string' }, 'server-defaults': { type: 'boolean', default: false }, runs: { type: 'string' }, jit: { type: 'boolean', default: false } } });
const version = intOption(f.pg, 15);
const ROWS = intOption(f.rows, 3_000_000);
const RUNS = intOption(f.runs, 2);
const COLS = 'id, customer_id, status, amount, price, created_at, active, note, attrs';
const DDL = (pk: boolean) => `CREATE TABLE public.orders (id bigint ${pk ? 'PRIMARY KEY' : 'NOT NULL'}, customer_id int NOT NULL, status text NOT NULL, amount numeric(12,2), price double precision, created_at timestamptz NOT NULL, active boolean, note text, attrs jsonb)`;

function sh(script: string): Promise<void> {
  return new Promise((res, rej) => {
    const c = spawn('bash', ['-c', script], { stdio: ['ignore', 'ignore', 'inherit'] });
    c.on('close', (code) => (code === 0 ? res() : rej(new Error(`code ${code}`))));
  });
}

async function main(): Promise<void> {
  const binDir = version === 17 ? undefined : requireSystemPostgresBinDir(version);
  const settings = f['server-defaults'] ? { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on', shared_buffers: '128MB', max_wal_size: '1GB' } : undefined;
  const cl = await startClusters({ binDir, settings });
  try {
    await cl.source.createDatabase('bench');
    const src = cl.source.url('bench');
    await createOrders9(src, ROWS);
    await withClient(src, async (c) => {
      await c.query('VACUUM ANALYZE public.orders');
      await c.query('CHECKPOINT');
    });
    if (f.jit) {
      await jitProbe(src);
      return;
    }
    const psql = await findPsql();
    let seq = 0;
    const fresh = async (pk: boolean) => {
      const db = `probe_${++seq}`;
      await cl.destination.createDatabase(db);
      const url = cl.destination.url(db);
      await withClient(url, (c) => c.query(DDL(pk)));
      await withClient(url, (c) => c.query('CHECKPOINT'));
      return url;
    };
    const where = ` WHERE "id" > '0'::bigint AND "id" <= '${ROWS}'::bigint`;
    const variants: Record<string, (dst: string) => Promise<void>> = {
      'psql | psql, SELECT *': (dst) =>
        sh(`set -o pipefail; ${psql} -X -q -d '${src}' -c "COPY (SELECT * FROM public.orders) TO STDOUT (FORMAT binary)" | ${psql} -X -q -d '${dst}' -c "COPY public.orders FROM STDIN (FORMAT binary)"`),
      'psql | psql, keyset WHERE': (dst) =>
        sh(`set -o pipefail; ${psql} -X -q -d '${src}' -c "COPY (SELECT ${COLS} FROM public.orders${where.replace(/"/g, '\\"')}) TO STDOUT (FORMAT binary)" | ${psql} -X -q -d '${dst}' -c "COPY public.orders FROM STDIN (FORMAT binary)"`),
      'node relay, keyset WHERE, default buffers': (dst) => relay(src, dst, `SELECT ${COLS} FROM public.orders${where}`, undefined),
      'node relay, keyset WHERE, 1 MiB buffers': (dst) => relay(src, dst, `SELECT ${COLS} FROM public.orders${where}`, 1 << 20),
    };
    for (const pk of [false, true]) {
      for (let r = 0; r < RUNS; r++) {
        for (const [name, fn] of Object.entries(variants)) {
          const dst = await fresh(pk);
          const t = performance.now();
          await fn(dst);
          const s = (performance.now() - t) / 1000;
          process.stdout.write(`${pk ? 'with key   ' : 'without key'} run ${r + 1}: ${name.padEnd(45)} ${s.toFixed(2)} s  ${Math.round(ROWS / s)} rows/s\n`);
        }
      }
    }
    const plan = await withClient(src, async (c) => (await c.query(`EXPLAIN SELECT ${COLS} FROM public.orders${where}`)).rows.map((x) => x['QUERY PLAN']).join(' / '));
    process.stdout.write(`source plan of the whole-range keyset chunk: ${plan}\n`);
  } finally {
    await cl.stopAll();
  }
}

/** The keyset statements of a 400k- and an 800k-row chunk, EXPLAIN ANALYZE with jit on and off, alternating. */
async function jitProbe(src: string): Promise<void> {
  await withClient(src, async (c) => {
    for (const n of [400_000, 800_000]) {
      const lo = 1_000_000;
      const stmts = {
        boundary: `SELECT "id"::text FROM "public"."orders" WHERE "id" > '${lo}'::bigint ORDER BY "public"."orders"."id" OFFSET ${n - 1} LIMIT 1`,
        chunk: `SELECT ${COLS} FROM "public"."orders" WHERE "id" > '${lo}'::bigint AND "id" <= '${lo + n}'::bigint`,
      };
      for (let r = 0; r < 3; r++) {
        for (const jit of ['on', 'off']) {
          await c.query(`SET jit = ${jit}`);
          for (const [name, sql] of Object.entries(stmts)) {
            const t = performance.now();
            const x = (await c.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`)).rows[0]['QUERY PLAN'][0];
            const wall = performance.now() - t;
            const j = x.JIT ? x.JIT.Timing.Total : 0;
            process.stdout.write(`${n} rows ${name.padEnd(8)} jit ${jit.padEnd(3)} run ${r + 1}: exec ${x['Execution Time'].toFixed(0)} ms, JIT ${Number(j).toFixed(0)} ms, plan ${x.Plan['Node Type']}, wall ${wall.toFixed(0)} ms\n`);
          }
        }
      }
    }
  });
}

async function relay(src: string, dst: string, select: string, hwm: number | undefined): Promise<void> {
  const a = new pg.Client({ connectionString: src });
  const b = new pg.Client({ connectionString: dst });
  await a.connect();
  await b.connect();
  try {
    await b.query('BEGIN');
    const opts = hwm ? { highWaterMark: hwm } : undefined;
    await pipeline(a.query(copyTo(`COPY (${select}) TO STDOUT (FORMAT binary)`, opts)), b.query(copyFrom(`COPY public.orders (${COLS}) FROM STDIN (FORMAT binary)`, opts)));
    await b.query('COMMIT');
  } finally {
    await a.end();
    await b.end();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
