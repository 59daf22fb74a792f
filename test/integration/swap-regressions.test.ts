/**
 * Regressions of the online swap and of truncate (issue 8, bugs 1 and 5).
 *
 * 1. "An online swap ran outside its transaction": with writes on two tables, `throttle 1000;
 *    backfill orders --mode truncate; sleep; cancel; (an online backfill cancelled mid-load);
 *    throttle 0; backfill orders --wait`. The swap of `orders` once shared the Applier's connection
 *    with the applies of the other table: another transaction's COMMIT ended the swap's transaction
 *    (`LOCK TABLE can only be used in transaction blocks`), an archive row was committed with no
 *    archive table, and the swap then failed every 0.2 s on that row. Now: the backfill ends with
 *    exit 0, the oracle agrees on both tables, every archive row names a table that exists, and each
 *    cancel describes the table as it really is (a cancelled truncate reload left it partial).
 * 2. "Wrong hint, wrong side": a destination table referenced by a foreign key cannot be truncated.
 *    `backfill --mode truncate` is refused at once (exit 2) naming the constraint and what works;
 *    the online refusal no longer suggests truncate; the running pipeline refuses it too, and the
 *    table stays streaming (never `failed`); `--mode upsert`, which the hint names, works. An online
 *    backfill of the referenced table now works too: the swap re-points the foreign key.
 * 3. Bug 2, "--mode drop silently drops other tables' foreign keys": `backfill album --mode drop`
 *    with track referencing album is refused (exit 2) naming the constraint; with `--cascade` the
 *    foreign key is added back and validated.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createDemoTable, Workload } from '../../src/demo/workload.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { eventuallyEqual, makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

const PIPELINE = 'swapreg';
const ORDERS = 'public.orders';
const EVENTS = 'public.events';
const ALBUM = 'public.album';
const TRACK = 'public.track';
const ORDERS_ROWS = 40_000;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;
const workloads: Workload[] = [];
const t0 = Date.now();
const note = (line: string) => console.log(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await createDemoTable(source.url(), { table: ORDERS, rows: ORDERS_ROWS });
  await createDemoTable(source.url(), { table: EVENTS, rows: 5_000 });
  await source.query(`
    CREATE TABLE public.album (id int PRIMARY KEY, title text NOT NULL);
    CREATE TABLE public.track (id int PRIMARY KEY, album_id int NOT NULL, name text NOT NULL);
    INSERT INTO public.album SELECT i, 'album ' || i FROM generate_series(1, 50) i;
    INSERT INTO public.track SELECT i, 1 + i % 50, 'track ' || i FROM generate_series(1, 500) i;`);
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline: PIPELINE,
    tables: [{ name: ORDERS, chunkRows: 5_000 }, { name: EVENTS }, { name: ALBUM }, { name: TRACK }],
  });
  run = spawnSluice(['run'], { config: work.config });
  await waitUntil('every table streaming after the initial load', async () => {
    const s = await states();
    return s.length === 4 && s.every((x) => x === 'streaming');
  }, 120_000, 300);
  note('initial load done');
});

after(async () => {
  for (const w of workloads) await w.stop().catch(() => undefined);
  if (run && run.child.exitCode === null && run.child.signalCode === null) {
    run.kill('SIGTERM');
    await run.exited(30_000).catch(() => run?.kill('SIGKILL'));
  }
  await stopAll?.();
  work?.remove();
});

async function states(): Promise<string[]> {
  const r = await destination.query(`SELECT state FROM _sluice.tables WHERE pipeline = $1`, [PIPELINE]).catch(() => ({ rows: [] }));
  return r.rows.length === 4 ? r.rows.map((x) => x.state as string) : [];
}

async function tableRow(name: string): Promise<{ state: string; error: string | null; staging: string | null }> {
  const r = await destination.query(`SELECT state, error, staging FROM _sluice.tables WHERE pipeline = $1 AND name = $2`, [PIPELINE, name]);
  return r.rows[0];
}

function alive(): void {
  if (run && (run.child.exitCode !== null || run.child.signalCode !== null)) {
    throw new Error(`sluice run exited (${run.child.exitCode}/${run.child.signalCode}):\n${run.output().slice(-4000)}`);
  }
}

async function cli(args: string[], timeoutMs = 60_000) {
  const r = await sluice(args, { config: work.config, timeoutMs });
  note(`sluice ${args.join(' ')} → ${r.code}: ${(r.stdout + r.stderr).trim().replace(/\n/g, ' | ')}`);
  return r;
}

test('truncate of a table referenced by a foreign key in the destination is refused up front, with a hint that works', { timeout: 120_000 }, async () => {
  // The destination's own schema gains an FK between two replicated tables.
  await destination.query(`ALTER TABLE public.track ADD CONSTRAINT track_album_fk FOREIGN KEY (album_id) REFERENCES public.album (id)`);

  // The online swap carries the foreign key (re-pointed to the new table, validated after).
  const online = await cli(['backfill', ALBUM, '--mode', 'online', '--wait'], 90_000);
  assert.equal(online.code, 0, online.stdout + online.stderr);
  await waitUntil('the foreign key validated again after the swap', async () => {
    const r = await destination.query(`SELECT convalidated FROM pg_constraint WHERE conname = 'track_album_fk' AND confrelid = 'public.album'::regclass`);
    return r.rows[0]?.convalidated === true;
  }, 30_000);

  const truncate = await cli(['backfill', ALBUM, '--mode', 'truncate']);
  assert.equal(truncate.code, 2, 'truncate refused when the request is made');
  assert.match(truncate.stderr, /track_album_fk/);
  assert.match(truncate.stderr, /public\.track/);
  assert.match(truncate.stderr, /--mode upsert/);

  // The running pipeline checks again (a request recorded without the CLI's check, e.g. by an older CLI).
  await destination.query(`INSERT INTO _sluice.requests (pipeline, kind, table_name, params) VALUES ($1, 'backfill', $2, '{"mode":"truncate"}')`, [PIPELINE, ALBUM]);
  await destination.query(`NOTIFY sluice_requests`);
  await waitUntil('the pipeline answers the recorded truncate request', async () => {
    alive();
    const r = await destination.query(`SELECT outcome FROM _sluice.requests WHERE pipeline = $1 AND table_name = $2 AND handled_at IS NOT NULL ORDER BY id DESC LIMIT 1`, [PIPELINE, ALBUM]);
    return /refused/.test(r.rows[0]?.outcome ?? '');
  }, 30_000);
  const outcome = (await destination.query(`SELECT outcome FROM _sluice.requests WHERE pipeline = $1 AND table_name = $2 ORDER BY id DESC LIMIT 1`, [PIPELINE, ALBUM])).rows[0].outcome;
  assert.match(outcome, /track_album_fk/);
  const row = await tableRow(ALBUM);
  assert.equal(row.state, 'streaming', `album keeps streaming, never failed (${row.error})`);

  // Still streaming in fact: a change on the source arrives.
  await source.query(`UPDATE public.album SET title = 'renamed' WHERE id = 7`);
  await eventuallyEqual(source.url(), destination.url(), ALBUM, { run, what: 'album after a change' });

  // The way the hint names works, and keeps the foreign key.
  await source.query(`INSERT INTO public.album VALUES (51, 'album 51')`);
  const upsert = await cli(['backfill', ALBUM, '--mode', 'upsert', '--wait'], 90_000);
  assert.equal(upsert.code, 0, upsert.stdout + upsert.stderr);
  await eventuallyEqual(source.url(), destination.url(), ALBUM, { run, what: 'album after the upsert backfill' });
  const fk = await destination.query(`SELECT 1 FROM pg_constraint WHERE conname = 'track_album_fk'`);
  assert.equal(fk.rowCount, 1, 'the foreign key is still there');
  assert.equal((await tableRow(ALBUM)).state, 'streaming');
});

test('bug 2: --mode drop of a referenced table is refused naming the foreign key; --cascade adds it back', { timeout: 120_000 }, async () => {
  const fkOf = async () =>
    (await destination.query(`SELECT pg_get_constraintdef(oid) AS def, convalidated FROM pg_constraint WHERE conname = 'track_album_fk' AND conrelid = 'public.track'::regclass`)).rows;
  const before = await fkOf();
  assert.equal(before.length, 1);
  // It once exited 0 and the foreign key on track was gone (DROP TABLE … CASCADE).
  const drop = await cli(['backfill', ALBUM, '--mode', 'drop', '--wait'], 90_000);
  assert.equal(drop.code, 2, drop.stdout + drop.stderr);
  assert.match(drop.stderr, /track_album_fk/);
  assert.match(drop.stderr, /--cascade/);
  assert.deepEqual(await fkOf(), before, 'the foreign key is still there');
  const cascade = await cli(['backfill', ALBUM, '--mode', 'drop', '--cascade', '--wait'], 90_000);
  assert.equal(cascade.code, 0, cascade.stdout + cascade.stderr);
  await eventuallyEqual(source.url(), destination.url(), ALBUM, { run, what: 'album after drop --cascade' });
  await waitUntil('the foreign key added back and validated', async () => JSON.stringify(await fkOf()) === JSON.stringify(before), 30_000);
});

test('online backfill after a cancelled truncate reload, under writes to two tables: the swap runs in its own transaction', { timeout: 240_000 }, async () => {
  const outputBefore = run!.output().length;
  workloads.push(new Workload(source.url(), { table: ORDERS, ratePerSecond: 150 }), new Workload(source.url(), { table: EVENTS, ratePerSecond: 300 }));
  for (const w of workloads) w.start();

  assert.equal((await cli(['throttle', '--max-rows-per-second', '1000'])).code, 0);
  assert.equal((await cli(['backfill', ORDERS, '--mode', 'truncate'])).code, 0);
  await waitUntil('the truncate reload copies rows', async () => {
    alive();
    const r = await destination.query(`SELECT rows_copied FROM _sluice.tables WHERE pipeline = $1 AND name = $2 AND state = 'backfilling'`, [PIPELINE, ORDERS]);
    return Number(r.rows[0]?.rows_copied ?? 0) > 0;
  }, 60_000);
  const c1 = await cli(['cancel', ORDERS]);
  assert.equal(c1.code, 0);
  assert.match(c1.stdout, /not replicated until the next backfill/);
  const partial = Number((await destination.query(`SELECT count(*) AS n FROM public.orders`)).rows[0].n);
  note(`after the truncate cancel the destination holds ${partial} of ~${ORDERS_ROWS} rows`);
  assert.ok(partial < ORDERS_ROWS, 'the cancel landed mid-load');

  // An online backfill of the partial table, cancelled mid-load: the live table is still the partial one.
  assert.equal((await cli(['backfill', ORDERS])).code, 0);
  await waitUntil('the online load copies rows', async () => {
    alive();
    const r = await tableRow(ORDERS);
    return r?.state === 'backfilling' && r.staging !== null;
  }, 60_000);
  const c2 = await cli(['cancel', ORDERS]);
  assert.equal(c2.code, 0);
  assert.doesNotMatch(c2.stdout, /untouched and streaming/, 'the live table is partial, not streaming');
  assert.match(c2.stdout, /partial/);
  assert.equal((await tableRow(ORDERS)).state, 'cancelled');

  assert.equal((await cli(['throttle', '--max-rows-per-second', '0'])).code, 0);
  const swapping = cli(['backfill', ORDERS, '--wait'], 150_000);
  // A reader of the live table holds its lock for a while once the swap wants it: the swap times out
  // on its lock and tries again, many times, while the Applier keeps applying the other table. Each
  // attempt once shared the Applier's connection with those applies.
  const reader = new pg.Client({ connectionString: destination.url() });
  reader.on('error', () => undefined);
  await reader.connect();
  try {
    await waitUntil('the online load starts', async () => {
      alive();
      return (await tableRow(ORDERS))?.staging !== null;
    }, 90_000, 100);
    await reader.query(`BEGIN; SELECT count(*) FROM public.orders`);
    await waitUntil('the swap wants the lock', async () => {
      alive();
      const r = await tableRow(ORDERS);
      return r.state === 'swapping' || r.staging === null;
    }, 90_000, 100);
    await new Promise((r) => setTimeout(r, 3_000));
    await reader.query('COMMIT');
  } finally {
    await reader.end().catch(() => undefined);
  }
  const swap = await swapping;
  assert.equal(swap.code, 0, `online backfill --wait: ${swap.stdout}${swap.stderr}\n${run!.output().slice(-4000)}`);
  alive();

  for (const w of workloads) await w.stop();
  const total = workloads.reduce((n, w) => n + w.stats.ops, 0);
  note(`workloads: ${total} operations`);
  await eventuallyEqual(source.url(), destination.url(), ORDERS, { run, timeoutMs: 60_000, what: 'orders after the swap' });
  await eventuallyEqual(source.url(), destination.url(), EVENTS, { run, timeoutMs: 60_000, what: 'events' });
  await assertTablesEqual(source.url(), destination.url(), ALBUM);
  await assertTablesEqual(source.url(), destination.url(), TRACK);

  const archives = await destination.query(
    `SELECT archive, to_regclass(archive) IS NOT NULL AS exists FROM _sluice.archives WHERE pipeline = $1 AND table_name = $2 AND dropped_at IS NULL`,
    [PIPELINE, ORDERS],
  );
  assert.equal(archives.rowCount, 1, 'one swap of orders, one archive');
  for (const a of archives.rows) assert.ok(a.exists, `archive row ${a.archive} is backed by a table`);
  const out = run!.output();
  assert.doesNotMatch(out, /already executing a query/, 'no connection is used by two callers at once');
  assert.doesNotMatch(out, /Cannot read properties of null/);
  assert.doesNotMatch(out, /LOCK TABLE can only be used in transaction blocks/);
  const swapped = out.slice(outputBefore).match(/swapped: the new table is live/g) ?? [];
  assert.equal(swapped.length, 1);
});
