/**
 * Column type changes on the source while sluice streams: a widening reaches the destination by
 * itself (live table, and an online backfill's staging table); a narrowing stops only that table,
 * with a message naming what to run; a reload after it (`--mode drop`) streams again without a
 * restart; a failed online backfill's staging table does not outlive the next reload.
 * Equality is checked with the independent oracle.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir, eventuallyEqual as sharedEventuallyEqual, killIfRunning } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let stopAll: () => Promise<void>;
let work: Workdir;
let run: Running | undefined;

const ALBUM_ROWS = 20_000;

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await source.query(`
    CREATE TABLE public.artist (id int PRIMARY KEY, name varchar(120) NOT NULL, price numeric(10,2), n int);
    INSERT INTO public.artist SELECT i, 'artist ' || i, i * 1.25, i FROM generate_series(1, 500) i;
    CREATE TABLE public.genre (id int PRIMARY KEY, name varchar(120));
    INSERT INTO public.genre SELECT i, 'genre ' || i FROM generate_series(1, 300) i;
    CREATE TABLE public.other (id int PRIMARY KEY, v text);
    INSERT INTO public.other SELECT i, 'v' || i FROM generate_series(1, 300) i;
    CREATE TABLE public.album (id int PRIMARY KEY, title varchar(120) NOT NULL, artist_id int);
    INSERT INTO public.album SELECT i, 'album ' || i, i % 500 FROM generate_series(1, ${ALBUM_ROWS}) i;
  `);
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    tables: ['public.artist', 'public.genre', 'public.other', 'public.album'].map((name) => ({ name, chunkRows: 1000, chunkSeconds: 0 })),
    // A load of album takes a few seconds: long enough to change the source in the middle of it.
    extra: 'throttle: { maxRowsPerSecond: 4000 }',
  });
  run = spawnSluice(['run'], { config: work.config });
  await waitUntil('every table streaming', async () => (await states()).every((s) => s.state === 'streaming') && (await states()).length === 4, 90_000);
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  work?.remove();
});

async function states(): Promise<{ name: string; state: string; error: string | null }[]> {
  const r = await destination.query(`SELECT name, state, error FROM _sluice.tables ORDER BY name`).catch(() => ({ rows: [] }));
  return r.rows;
}

async function stateOf(table: string): Promise<{ state: string; error: string | null }> {
  return (await states()).find((s) => s.name === table) ?? { state: 'none', error: null };
}

async function typeOf(table: string, column: string): Promise<string> {
  const r = await destination.query(
    `SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2`,
    [table, column],
  );
  return r.rows[0]?.t;
}

async function stagingExists(table: string): Promise<boolean> {
  return (await destination.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [`${table}__sluice_staging`])).rows[0].ok;
}

async function eventuallyEqual(table: string, what: string, timeoutMs = 30_000): Promise<void> {
  await sharedEventuallyEqual(source.url(), destination.url(), table, { what, timeoutMs, run });
}

test('a widening on the source reaches the destination by itself', async () => {
  await source.query(`ALTER TABLE public.artist ALTER name TYPE varchar(300), ALTER price TYPE numeric(12,2), ALTER n TYPE bigint`);
  await source.query(`UPDATE public.artist SET name = repeat('a', 250), price = 9999999999.99, n = 1099511627776 WHERE id = 7`);
  await source.query(`INSERT INTO public.artist VALUES (501, repeat('b', 300), -9999999999.99, -1099511627776)`);
  await eventuallyEqual('public.artist', 'widened columns');
  assert.equal(await typeOf('public.artist', 'name'), 'character varying(300)');
  assert.equal(await typeOf('public.artist', 'price'), 'numeric(12,2)');
  assert.equal(await typeOf('public.artist', 'n'), 'bigint');
  // and to text
  await source.query(`ALTER TABLE public.artist ALTER name TYPE text`);
  await source.query(`UPDATE public.artist SET name = repeat('c', 1000) WHERE id = 8`);
  await eventuallyEqual('public.artist', 'varchar to text');
  assert.equal(await typeOf('public.artist', 'name'), 'text');
  assert.equal((await stateOf('public.artist')).state, 'streaming');
});

test('a widening during an online backfill reaches the staging table', async () => {
  const backfill = sluice(['backfill', 'public.album', '--mode', 'online', '--wait'], { config: work.config, timeoutMs: 120_000 });
  await waitUntil('the staging table', () => stagingExists('public.album'), 60_000, 50);
  await source.query(`ALTER TABLE public.album ALTER title TYPE varchar(300)`);
  // A row already copied (it reaches the staging table through the replay) and one not yet copied.
  await source.query(`UPDATE public.album SET title = repeat('t', 250) WHERE id IN (1, ${ALBUM_ROWS - 1})`);
  const r = await backfill;
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${run!.output().slice(-3000)}`);
  await eventuallyEqual('public.album', 'online backfill across a widening');
  assert.equal(await typeOf('public.album', 'title'), 'character varying(300)');
  assert.match(run!.output(), /widening a column the source widened .*destination=public\.album__sluice_staging/, 'the Applier widened the staging table');
  assert.equal(await stagingExists('public.album'), false, 'no staging table left');
  await source.query(`UPDATE public.album SET title = repeat('u', 299) WHERE id = 2`);
  await eventuallyEqual('public.album', 'streaming after the swap');
});

test('a narrowing stops only that table, naming what to run; --mode drop reloads it and it streams again', async () => {
  // The change log has seen the column's earlier type (a change of the table before the ALTER).
  await source.query(`UPDATE public.genre SET name = 'before' WHERE id = 3`);
  await eventuallyEqual('public.genre', 'a change before the narrowing');
  await source.query(`ALTER TABLE public.genre ALTER name TYPE varchar(50)`);
  await source.query(`UPDATE public.genre SET name = 'narrowed' WHERE id = 1`);
  await waitUntil('genre failed', async () => (await stateOf('public.genre')).state === 'failed', 30_000);
  const { error } = await stateOf('public.genre');
  assert.match(error ?? '', /column name narrowed \(character varying\(120\) → character varying\(50\)/);
  assert.match(error ?? '', /sluice backfill public\.genre --mode drop/);
  assert.match(error ?? '', /ALTER TABLE "public"\."genre" ALTER COLUMN "name" TYPE character varying\(50\)/);
  // The other tables carry on.
  await source.query(`INSERT INTO public.other VALUES (1000, 'still streaming')`);
  await eventuallyEqual('public.other', 'another table after the narrowing');

  const r = await sluice(['backfill', 'public.genre', '--mode', 'drop', '--wait'], { config: work.config, timeoutMs: 120_000 });
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${run!.output().slice(-3000)}`);
  assert.equal(await typeOf('public.genre', 'name'), 'character varying(50)');
  // New changes apply without a restart.
  await source.query(`UPDATE public.genre SET name = 'after the reload' WHERE id = 2; INSERT INTO public.genre VALUES (1000, 'new')`);
  await eventuallyEqual('public.genre', 'changes after the reload');
  assert.equal((await stateOf('public.genre')).state, 'streaming');
});

test('a table whose apply failed streams again after --mode drop, without a restart', async () => {
  // A destination-only constraint the next change violates: applying to the live table fails.
  await destination.query(`ALTER TABLE public.other ADD CONSTRAINT dest_only CHECK (id < 5000)`);
  await source.query(`INSERT INTO public.other VALUES (5000, 'violates the destination')`);
  await waitUntil('other failed', async () => (await stateOf('public.other')).state === 'failed', 30_000);
  const r = await sluice(['backfill', 'public.other', '--mode', 'drop', '--wait'], { config: work.config, timeoutMs: 120_000 });
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${run!.output().slice(-3000)}`);
  await source.query(`INSERT INTO public.other VALUES (5001, 'after the reload')`);
  await eventuallyEqual('public.other', 'changes after the reload of a halted table');
  assert.equal((await stateOf('public.other')).state, 'streaming');
});

test('a failed online backfill leaves no staging table behind once the table is reloaded', async () => {
  // The staging table copies the live table's constraints; one the source's rows break fails the load.
  await destination.query(`ALTER TABLE public.album ADD CONSTRAINT dest_only CHECK (id <> 7) NOT VALID`);
  const r = await sluice(['backfill', 'public.album', '--mode', 'online', '--wait'], { config: work.config, timeoutMs: 120_000 });
  assert.equal(r.code, 1, `${r.stdout}${r.stderr}`);
  assert.equal(await stagingExists('public.album'), true, 'the failed run kept its staging table (a restart resumes it)');
  const again = await sluice(['backfill', 'public.album', '--mode', 'drop', '--wait'], { config: work.config, timeoutMs: 120_000 });
  assert.equal(again.code, 0, `${again.stdout}${again.stderr}\n${run!.output().slice(-3000)}`);
  assert.equal(await stagingExists('public.album'), false, 'no staging table left');
  await source.query(`UPDATE public.album SET title = 'after' WHERE id = 3`);
  await eventuallyEqual('public.album', 'after the reload');
  const cursors = await destination.query(`SELECT target FROM _sluice.cursors WHERE name = 'public.album'`);
  assert.deepEqual(cursors.rows.map((x) => x.target), ['public.album']);
});

test('after a narrowing, the ALTER the message names and a restart bring the table back', async () => {
  await source.query(`ALTER TABLE public.artist ALTER price TYPE numeric(12,1)`);
  await source.query(`UPDATE public.artist SET price = 1.5 WHERE id = 9`);
  await waitUntil('artist failed', async () => (await stateOf('public.artist')).state === 'failed', 30_000);
  const { error } = await stateOf('public.artist');
  assert.match(error ?? '', /column price narrowed \(numeric\(12,2\) → numeric\(12,1\): the scale shrinks/);
  const fix = /run on the destination: (ALTER TABLE .*?), then restart sluice run/.exec(error ?? '');
  assert.ok(fix, error ?? '');
  await destination.query(fix[1]);
  run!.kill('SIGTERM');
  assert.equal((await run!.exited(30_000)).code, 0);
  run = spawnSluice(['run'], { config: work.config });
  await waitUntil('artist streaming', async () => (await stateOf('public.artist')).state === 'streaming', 60_000);
  await source.query(`UPDATE public.artist SET price = 2.5 WHERE id = 10`);
  await eventuallyEqual('public.artist', 'after the explicit ALTER and a restart');
});
