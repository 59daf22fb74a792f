/**
 * An in-place job on a table that a sluice pipeline replicates: the job's chunks reach the
 * destination through CDC, in order, and the destination equals the source afterwards (independent
 * oracle). Each chunk is marked in the WAL when asked, inside its own transaction.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { eventuallyEqual, makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir | undefined;
let run: Running | undefined;

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await source.query(`CREATE TABLE public.accounts (id bigint PRIMARY KEY, balance int NOT NULL, tier text)`);
  await source.query(`INSERT INTO public.accounts SELECT g, g % 100, NULL FROM generate_series(1, 60000) g`);
  work = makeWorkdir({ sourceUrl: source.url(), destinationUrl: destination.url(), tables: [{ name: 'public.accounts' }] });
});

after(async () => {
  if (run && run.child.exitCode === null) {
    run.kill('SIGKILL');
    await run.exited(10_000).catch(() => undefined);
  }
  await stopAll?.();
  work?.remove();
});

test('an in-place job on a replicated table: its changes stream to the destination, which ends equal to the source', { timeout: 240_000 }, async () => {
  run = spawnSluice(['run'], { config: work!.config });
  const r = run;
  await waitUntil('public.accounts streams', async () => {
    if (r.child.exitCode !== null) throw new Error(r.output());
    const st = await sluice(['status', '--json'], { config: work!.config });
    return st.code === 0 && JSON.parse(st.stdout).tables[0]?.state === 'streaming';
  }, 120_000, 500);
  await source.query(`SELECT pg_create_logical_replication_slot('marks', 'test_decoding')`);

  // The job reads the pipeline's source from the sluice config: no database: in the job.
  const jobs = [
    ['bump', `table: public.accounts\nkind: update\nset: "balance = balance + 1, tier = CASE WHEN balance > 50 THEN 'gold' ELSE 'basic' END"\nchunk: { rows: 5000 }\nmarkWal: true`],
    ['prune', `table: public.accounts\nkind: delete\nwhere: "id % 7 = 0"\nchunk: { rows: 8000 }`],
  ];
  for (const [name, yaml] of jobs) {
    const file = join(work!.dir, `${name}.yaml`);
    writeFileSync(file, `job: ${name}\nreason: "test ${name}"\n${yaml}\n`);
    const j = await sluice(['-c', work!.config, 'inplace', 'run', file]);
    assert.equal(j.code, 0, j.stdout + j.stderr);
  }
  const src = (await source.query(`SELECT count(*)::int AS n, sum(balance)::int8 AS s, count(*) FILTER (WHERE tier IS NULL)::int AS untouched FROM public.accounts`)).rows[0];
  assert.deepEqual(src, { n: 60000 - Math.floor(60000 / 7), s: String((await source.query(`SELECT sum(g % 100 + 1)::int8 AS s FROM generate_series(1, 60000) g WHERE g % 7 <> 0`)).rows[0].s), untouched: 0 });

  await eventuallyEqual(source.url(), destination.url(), 'public.accounts', { timeoutMs: 90_000, everyMs: 500 });

  // One WAL mark a chunk of the marked job, each in the transaction of its chunk's changes.
  const marks = (await source.query(`SELECT data FROM pg_logical_slot_get_changes('marks', NULL, NULL) WHERE data LIKE 'message:%prefix: sluice.inplace,%'`)).rows.map((x) => x.data as string);
  const chunks = (await source.query(`SELECT count(*)::int AS n FROM _sluice.inplace_chunks c JOIN _sluice.inplace_runs r ON r.id = c.run_id WHERE r.job = 'bump'`)).rows[0].n;
  assert.equal(marks.length, chunks, marks.join('\n'));
  assert.match(marks[0], /transactional: 1 prefix: sluice\.inplace, sz: \d+ content:\{"job":"bump","run":\d+,"seq":1\}/);
});
