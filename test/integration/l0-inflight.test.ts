/**
 * contract 3, the in-flight wait: a backfill fixes L0 and then waits until every
 * transaction in flight at L0 has ended before it reads the first chunk. A transaction that wrote T
 * before T joined the publication is not decoded (the publication did not contain T in the
 * transaction's catalog snapshot), so only the chunks can carry its effect: they must be read after
 * it commits.
 *
 * 1. A transaction is open when `sluice run` starts for the first time. (Creating the replication
 *    slot itself waits for it, so this case holds even without the copier's wait.)
 * 2. The pipeline and its slot already exist; a table is added to the config while a transaction
 *    that inserted, updated and deleted rows of it is open. Only the copier's wait keeps those
 *    changes: without it the chunks are read before the commit and the changes are never decoded.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { makeWorkdir, spawnSluice, type Running, type Workdir } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir | undefined;
let run: Running | undefined;
const open: pg.Client[] = [];

before(async () => {
  const c = await startClusters();
  source = c.source;
  destination = c.destination;
  stopAll = c.stopAll;
  await source.query(`
    CREATE TABLE public.straddle (id int PRIMARY KEY, v text);
    INSERT INTO public.straddle SELECT i, 'v' || i FROM generate_series(1, 5) i;
    CREATE TABLE public.straddle2 (id int PRIMARY KEY, v text);
    INSERT INTO public.straddle2 SELECT i, 'v' || i FROM generate_series(1, 50) i;
  `);
  work = makeWorkdir({ sourceUrl: source.url(), destinationUrl: destination.url(), tables: [{ name: 'public.straddle' }] });
});

after(async () => {
  for (const c of open) await c.end().catch(() => undefined);
  if (run && run.child.exitCode === null && run.child.signalCode === null) {
    run.kill('SIGKILL');
    await run.exited(10_000).catch(() => undefined);
  }
  await stopAll?.();
  work?.remove();
});

async function openClient(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: source.url() });
  c.on('error', () => undefined);
  await c.connect();
  open.push(c);
  return c;
}

async function destinationRows(table: string): Promise<number | null> {
  const r = await destination.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [table]);
  if (!r.rows[0].ok) return null;
  return (await destination.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n;
}

async function eventuallyEqual(table: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await assertTablesEqual(source.url(), destination.url(), table);
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        (err as Error).message += `\n--- sluice output (tail):\n${run?.output().slice(-4000)}`;
        throw err;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function stopRun(): Promise<void> {
  run!.kill('SIGTERM');
  const r = await run!.exited(30_000);
  assert.equal(r.code, 0, `sluice run exit code ${r.code} (signal ${r.signal}); output:\n${r.stdout}${r.stderr}`);
}

test('a transaction open when sluice run first starts is not lost', async () => {
  const tx = await openClient();
  await tx.query('BEGIN');
  await tx.query(`INSERT INTO public.straddle VALUES (1000, 'in flight')`);
  await tx.query(`UPDATE public.straddle SET v = 'updated in flight' WHERE id = 1`);

  run = spawnSluice(['run'], { config: work!.config });
  await new Promise((r) => setTimeout(r, 2000));
  assert.ok(!(run.child.exitCode !== null), `sluice exited early:\n${run.output()}`);
  const early = await destinationRows('public.straddle');
  assert.ok(early === null || early === 0, `no chunk may be copied while the transaction is open (destination has ${early} rows)`);

  await tx.query('COMMIT');
  await run.waitForOutput(/caught up; streaming.*table=public\.straddle\b/, 60_000);
  await eventuallyEqual('public.straddle');
  const row = await destination.query(`SELECT v FROM public.straddle WHERE id = 1000`);
  assert.equal(row.rows[0]?.v, 'in flight', 'row 1000 reached the destination');
  await stopRun();
});

test('a table added to a running pipeline waits for a transaction that wrote it before it joined the publication', async () => {
  // The slot exists now (from the first test). A transaction writes straddle2, which is in no publication yet.
  const tx = await openClient();
  await tx.query('BEGIN');
  await tx.query(`INSERT INTO public.straddle2 VALUES (1000, 'in flight')`);
  await tx.query(`UPDATE public.straddle2 SET v = 'updated in flight' WHERE id = 1`);
  await tx.query(`DELETE FROM public.straddle2 WHERE id = 2`);

  // Add the table to the pipeline's config and start again.
  const cfg = readFileSync(work!.config, 'utf8');
  writeFileSync(work!.config, cfg.replace(/^tables:\n/m, 'tables:\n  - { name: public.straddle2, chunkRows: 10 }\n'));
  run = spawnSluice(['run'], { config: work!.config });
  await run.waitForOutput(/pipeline running/, 30_000);
  await new Promise((r) => setTimeout(r, 2000));
  const early = await destinationRows('public.straddle2');
  const outputBeforeCommit = run.output();

  await tx.query('COMMIT');
  const committedAt = run.output().length;
  await run.waitForOutput(/caught up; streaming.*table=public\.straddle2\b/, 60_000);
  await eventuallyEqual('public.straddle2');
  const row = await destination.query(`SELECT id, v FROM public.straddle2 WHERE id IN (1, 2, 1000) ORDER BY id`);
  assert.deepEqual(row.rows, [
    { id: 1, v: 'updated in flight' },
    { id: 1000, v: 'in flight' },
  ]);
  // The wait itself: nothing was copied, and the backfill had not started, before the commit.
  assert.ok(early === null || early === 0, `no chunk may be copied while the transaction is open (destination has ${early} rows)`);
  assert.doesNotMatch(outputBeforeCommit, /backfill started.*table=public\.straddle2\b/);
  assert.match(run.output().slice(committedAt), /backfill started.*table=public\.straddle2\b/);

  // The table keeps streaming, and the first one is untouched.
  await source.query(`INSERT INTO public.straddle2 VALUES (1001, 'after')`);
  await eventuallyEqual('public.straddle2');
  await eventuallyEqual('public.straddle');
  await stopRun();
});
