/**
 * The destination-held chunk queue for many workers (destinations/postgres/chunk-claims.ts), on a
 * private PostgreSQL cluster: concurrent workers each copy every chunk exactly once, a worker that
 * stops loses its chunks when the lease expires and its late completion is rolled back, renewing
 * keeps a chunk, and a claimer never waits on a chunk another worker is committing.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import {
  chunkCounts,
  claimChunks,
  completeChunk,
  enqueueChunks,
  ensureChunkClaims,
  renewLease,
  type ChunkClaim,
} from '../../src/destinations/postgres/chunk-claims.js';
import { SluiceError } from '../../src/core/errors.js';
import { startCluster, type Cluster } from '../support/clusters.js';

const SCHEMA = '_sluice';
let cluster: Cluster;
const clients: pg.Client[] = [];

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: cluster.url() });
  await c.connect();
  clients.push(c);
  return c;
}

before(async () => {
  cluster = await startCluster({ name: 'claims', logical: false });
  const c = await client();
  await ensureChunkClaims(c, SCHEMA);
  await ensureChunkClaims(c, SCHEMA); // twice: idempotent
});
after(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await cluster?.destroy();
});

/** Copies a chunk the way a worker would: its rows and its completion in one transaction. */
async function copyChunk(c: pg.Client, target: string, pipeline: string, claim: ChunkClaim, worker: string, pauseMs = 0): Promise<void> {
  await c.query('BEGIN');
  try {
    const { lo, hi } = claim.range as { lo: number; hi: number };
    await c.query(`INSERT INTO ${target} (id, worker) SELECT g, $3 FROM generate_series($1::int, $2::int - 1) g`, [lo, hi, worker]);
    await completeChunk(c, SCHEMA, pipeline, claim, worker);
    // Holding the transaction open: the chunk's row stays locked until COMMIT.
    if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  }
}

const ranges = (n: number, size: number) => Array.from({ length: n }, (_, i) => ({ id: i, range: { lo: i * size, hi: (i + 1) * size } }));

test('three workers claiming concurrently copy every chunk exactly once', async () => {
  const admin = await client();
  await admin.query('CREATE TABLE public.t1 (id int PRIMARY KEY, worker text NOT NULL)');
  assert.equal(await enqueueChunks(admin, SCHEMA, 'p1', 'public.t1', ranges(60, 100)), 60);
  assert.equal(await enqueueChunks(admin, SCHEMA, 'p1', 'public.t1', ranges(60, 100)), 0, 'enqueueing again adds nothing');
  const workers = await Promise.all(['w1', 'w2', 'w3'].map(async (name) => ({ name, c: await client(), chunks: [] as number[] })));
  await Promise.all(
    workers.map(async (w) => {
      for (;;) {
        const claims = await claimChunks(w.c, SCHEMA, { pipeline: 'p1', worker: w.name, leaseMs: 30_000, limit: 2 });
        if (claims.length === 0) return;
        for (const claim of claims) {
          assert.equal(claim.attempts, 1, 'no chunk is handed out twice while its lease holds');
          await copyChunk(w.c, 'public.t1', 'p1', claim, w.name);
          w.chunks.push(claim.chunkId);
        }
      }
    }),
  );
  const all = workers.flatMap((w) => w.chunks).sort((a, b) => a - b);
  assert.deepEqual(all, [...Array(60).keys()], 'every chunk once across the workers');
  const r = await admin.query(`SELECT count(*)::int AS n, count(DISTINCT id)::int AS d, min(id) AS lo, max(id) AS hi FROM public.t1`);
  assert.deepEqual(r.rows[0], { n: 6000, d: 6000, lo: 0, hi: 5999 });
  assert.deepEqual(await chunkCounts(admin, SCHEMA, 'p1'), { pending: 0, claimed: 0, done: 60 });
});

test('a stopped worker loses its chunk when the lease expires; its late completion is rolled back; renewing keeps a chunk', async () => {
  const admin = await client();
  await admin.query('CREATE TABLE public.t2 (id int PRIMARY KEY, worker text NOT NULL)');
  await enqueueChunks(admin, SCHEMA, 'p2', 'public.t2', ranges(2, 10));
  const a = await client();
  const b = await client();
  const [first, second] = await claimChunks(a, SCHEMA, { pipeline: 'p2', worker: 'a', leaseMs: 300, limit: 2 });
  assert.deepEqual(await claimChunks(b, SCHEMA, { pipeline: 'p2', worker: 'b', leaseMs: 300, limit: 2 }), [], 'both leased to a');
  assert.deepEqual(await chunkCounts(admin, SCHEMA, 'p2'), { pending: 2, claimed: 2, done: 0 });
  // a keeps renewing the second chunk, not the first.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await renewLease(a, SCHEMA, 'p2', second, 'a', 2000), true);
  await new Promise((r) => setTimeout(r, 200));
  const taken = await claimChunks(b, SCHEMA, { pipeline: 'p2', worker: 'b', leaseMs: 2000, limit: 2 });
  assert.deepEqual(
    taken.map((c) => [c.chunkId, c.attempts]),
    [[first.chunkId, 2]],
    'the expired chunk, on its second attempt; the renewed one stays with a',
  );
  await assert.rejects(copyChunk(a, 'public.t2', 'p2', first, 'a'), (err: SluiceError) => err.code === 'CHUNK_LEASE_LOST' && err.retryable);
  assert.equal(await renewLease(a, SCHEMA, 'p2', first, 'a', 2000), false, 'a learns it lost the chunk');
  await copyChunk(b, 'public.t2', 'p2', taken[0], 'b');
  await copyChunk(a, 'public.t2', 'p2', second, 'a');
  const r = await admin.query(`SELECT worker, count(*)::int AS n, min(id) AS lo, max(id) AS hi FROM public.t2 GROUP BY worker ORDER BY worker`);
  assert.deepEqual(r.rows, [
    { worker: 'a', n: 10, lo: 10, hi: 19 },
    { worker: 'b', n: 10, lo: 0, hi: 9 },
  ]);
  assert.deepEqual(await chunkCounts(admin, SCHEMA, 'p2'), { pending: 0, claimed: 0, done: 2 });
});

test('a claimer skips a chunk whose completion is being committed instead of waiting, and never gets it once done', async () => {
  const admin = await client();
  await admin.query('CREATE TABLE public.t3 (id int PRIMARY KEY, worker text NOT NULL)');
  await enqueueChunks(admin, SCHEMA, 'p3', 'public.t3', ranges(2, 10));
  const a = await client();
  const b = await client();
  const [mine] = await claimChunks(a, SCHEMA, { pipeline: 'p3', worker: 'a', leaseMs: 100, limit: 1 });
  await new Promise((r) => setTimeout(r, 150)); // a's lease is over, but a is committing the chunk
  const committing = copyChunk(a, 'public.t3', 'p3', mine, 'a', 800);
  await new Promise((r) => setTimeout(r, 200));
  // A claim that waited for the row lock would fail here instead.
  await b.query(`SET lock_timeout = '100ms'`);
  const got = await claimChunks(b, SCHEMA, { pipeline: 'p3', worker: 'b', leaseMs: 5000, limit: 2 });
  assert.deepEqual(got.map((c) => c.chunkId), [1], 'the chunk being committed is skipped');
  await committing;
  assert.deepEqual(await claimChunks(b, SCHEMA, { pipeline: 'p3', worker: 'b', leaseMs: 5000, limit: 2 }), [], 'a done chunk is never claimed again');
  assert.deepEqual(await chunkCounts(admin, SCHEMA, 'p3'), { pending: 1, claimed: 1, done: 1 });
});
