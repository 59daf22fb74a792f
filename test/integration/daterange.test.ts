/**
 * `strategy: daterange` for a replicated table: chunks are time ranges of an indexed timestamp
 * column, read two at a time, while the source keeps writing — inserts, deletes, and updates that move
 * rows' timestamps across ranges (a row can then be read twice: the load is deduplicated by key at
 * the end). Rows whose timestamp is NULL are loaded too. The destination must equal the source
 * (independent oracle); a table without an index on the column, or without dateColumn, is refused.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { eventuallyEqual, makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let run: Running | undefined;
const works: Workdir[] = [];

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await source.query(`CREATE TABLE public.events (id bigint PRIMARY KEY, created_at timestamptz, kind text NOT NULL, body jsonb)`);
  await source.query(`CREATE INDEX events_created_at ON public.events (created_at)`);
  await source.query(`INSERT INTO public.events
    SELECT g, CASE WHEN g % 997 = 0 THEN NULL ELSE timestamptz '2024-01-01' + (g % 60) * interval '1 day' + (g * 13 % 86400) * interval '1 second' END,
           'k' || g % 5, jsonb_build_object('g', g) FROM generate_series(1, 120000) g`);
  await source.query(`CREATE TABLE public.noindex (id int PRIMARY KEY, at timestamptz)`);
  await source.query(`ANALYZE`);
});

after(async () => {
  if (run && run.child.exitCode === null) {
    run.kill('SIGKILL');
    await run.exited(10_000).catch(() => undefined);
  }
  await stopAll?.();
  for (const w of works) w.remove();
});

test('daterange backfill under writes that move rows across ranges: destination equals source', { timeout: 240_000 }, async () => {
  const work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    tables: [{ name: 'public.events', strategy: 'daterange', dateColumn: 'created_at', parallelism: 2, chunkRows: 4000, chunkSeconds: 0 }],
    extra: 'throttle: { maxRowsPerSecond: 40000 }',
  });
  works.push(work);
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      const id = 1 + ((i * 7919) % 120000);
      await source.query(`UPDATE public.events SET created_at = created_at + interval '20 days', body = body || '{"moved": true}' WHERE id = $1`, [id]).catch(() => undefined);
      if (i % 5 === 0) await source.query(`DELETE FROM public.events WHERE id = $1`, [1 + ((i * 104729) % 120000)]).catch(() => undefined);
      if (i % 3 === 0) await source.query(`INSERT INTO public.events VALUES ($1, now() - $2 * interval '1 hour', 'new', '{}')`, [200000 + i, i % 2000]).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  run = spawnSluice(['run'], { config: work.config });
  const r = run;
  try {
    await waitUntil('public.events streams', async () => {
      if (r.child.exitCode !== null) throw new Error(r.output());
      const st = await sluice(['status', '--json'], { config: work.config });
      return st.code === 0 && JSON.parse(st.stdout).tables[0]?.state === 'streaming';
    }, 180_000, 500);
  } finally {
    writing = false;
    await writer;
  }
  assert.match(r.output(), /strategy=daterange/);
  console.log(`# ${(/daterange load deduplicated[^\n]*/.exec(r.output()) ?? ['(no dedupe line)'])[0]}`);
  await eventuallyEqual(source.url(), destination.url(), 'public.events', { timeoutMs: 60_000, everyMs: 500 });
  const chunks = (await destination.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE lo = '-inf')::int AS first FROM _sluice.chunks WHERE pipeline = 'test'`)).rows[0];
  assert.ok(chunks.n >= 10, `time ranges committed as chunks: ${JSON.stringify(chunks)}`);
  assert.equal(chunks.first, 1, 'one range open below (with the NULL timestamps)');
  r.kill('SIGTERM');
  assert.equal((await r.exited(30_000)).code, 0);
});

test('daterange without an index on the column, or without dateColumn, is refused before anything runs', { timeout: 60_000 }, async () => {
  const a = makeWorkdir({ sourceUrl: source.url(), destinationUrl: destination.url(), pipeline: 'noidx', tables: [{ name: 'public.noindex', strategy: 'daterange', dateColumn: 'at' }] });
  const b = makeWorkdir({ sourceUrl: source.url(), destinationUrl: destination.url(), pipeline: 'nocol', tables: [{ name: 'public.noindex', strategy: 'daterange' }] });
  works.push(a, b);
  const ra = await sluice(['run'], { config: a.config, timeoutMs: 30_000 });
  assert.equal(ra.code, 2, ra.stdout + ra.stderr);
  assert.match(ra.stdout + ra.stderr, /no index of public.noindex starts with at.*CREATE INDEX ON public.noindex \(at\)/);
  const rb = await sluice(['run'], { config: b.config, timeoutMs: 30_000 });
  assert.equal(rb.code, 2, rb.stdout + rb.stderr);
  assert.match(rb.stdout + rb.stderr, /set tables\[\]\.dateColumn/);
});
