/**
 * Secondary indexes and a schema created first (docs/operations.md, "Foreign keys, indexes and
 * schema changes"):
 * 1. the source's secondary indexes (plain, unique, partial, expression, multi-column) are built on
 *    a table sluice creates, and are still there after a re-backfill in every mode; `indexes: none`
 *    builds none beyond the primary key;
 * 2. a destination table created first, with another column order, wider types and an extra
 *    nullable column, is loaded and streamed into, and re-backfilled in every mode (the oracle
 *    compares the source's columns);
 * 3. a table created first that cannot take the rows is refused by `sluice run` before anything
 *    moves (exit 2), naming each column and the ALTER that fixes it;
 * 4. an index the destination cannot build is skipped, logged and recorded; the table streams.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { eventuallyEqual, killIfRunning, makeWorkdir, sluice, spawnSluice, type Running, type Workdir } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let stopAll: () => Promise<void>;
const works: Workdir[] = [];
let run: Running | undefined;

const INDEXES = [
  `CREATE INDEX tracks_album ON public.tracks (album_id)`,
  `CREATE UNIQUE INDEX tracks_email ON public.tracks (email)`,
  `CREATE INDEX tracks_composer_partial ON public.tracks (composer) WHERE composer IS NOT NULL`,
  `CREATE INDEX tracks_lower_name ON public.tracks (lower(name))`,
  `CREATE INDEX tracks_album_price ON public.tracks USING btree (album_id, price DESC)`,
];

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  for (const t of ['tracks', 'tracks_plain']) {
    await source.query(
      `CREATE TABLE public.${t} (id int PRIMARY KEY, name text NOT NULL, album_id int, composer text, price numeric(10,2), email text);
       INSERT INTO public.${t} SELECT g, 'Track ' || g, g % 50, CASE WHEN g % 3 = 0 THEN NULL ELSE 'c' || (g % 7) END, (g % 100) / 10.0, 'e' || g || '@x'
         FROM generate_series(1, 3000) g`,
    );
    for (const sql of INDEXES) await source.query(sql.replaceAll('public.tracks', `public.${t}`).replace(/INDEX tracks_/, `INDEX ${t}_`));
  }
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  for (const w of works) w.remove();
});

/** name → definition without the schema, of every non-primary index of a table. */
async function indexDefs(c: Cluster, table: string): Promise<Map<string, string>> {
  const r = await c.query(
    `SELECT indexname, indexdef FROM pg_indexes i JOIN pg_class x ON x.relname = i.indexname
       JOIN pg_index pi ON pi.indexrelid = x.oid
      WHERE i.schemaname = 'public' AND i.tablename = $1 AND NOT pi.indisprimary ORDER BY 1`,
    [table],
  );
  return new Map(r.rows.map((x) => [x.indexname as string, (x.indexdef as string).replace(/ ON public\./, ' ON ')]));
}

/** The source's definitions as sluice builds them: unique ones without UNIQUE (see docs/architecture.md). */
async function expectedDefs(table: string): Promise<Map<string, string>> {
  const src = await indexDefs(source, table);
  return new Map([...src].map(([k, v]) => [k, v.replace(/^CREATE UNIQUE INDEX/, 'CREATE INDEX')]));
}

async function assertIndexes(table: string, what: string): Promise<void> {
  const want = await expectedDefs(table);
  assert.equal(want.size, INDEXES.length);
  assert.deepEqual(await indexDefs(destination, table), want, what);
}

test('the source\'s secondary indexes are built on a table sluice creates, and survive a re-backfill in every mode', async () => {
  const work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline: 'idx',
    tables: [
      { name: 'public.tracks', chunkRows: 1000 },
      { name: 'public.tracks_plain', chunkRows: 1000, indexes: 'none' },
    ],
  });
  works.push(work);
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming[\s\S]*table caught up; streaming/, 90_000);
  await eventuallyEqual(source.url(), destination.url(), 'public.tracks', { run, what: 'first load' });
  await assertIndexes('tracks', 'after the first load');
  assert.deepEqual([...(await indexDefs(destination, 'tracks_plain')).keys()], [], 'indexes: none builds no secondary index');
  const params = await destination.query(`SELECT params->'indexes' AS ix FROM _sluice.runs WHERE table_name = 'public.tracks' ORDER BY id LIMIT 1`);
  assert.deepEqual(params.rows[0].ix.notUnique, ['tracks_email']);
  assert.deepEqual(params.rows[0].ix.skipped, []);

  // Values of the unique column move between rows within one transaction (a swap; a delete and an
  // insert taking the value): a UNIQUE index would fail the set-wise apply; the non-unique one holds.
  await source.query(`BEGIN; UPDATE public.tracks SET email = 'tmp' WHERE id = 1; UPDATE public.tracks SET email = 'e1@x' WHERE id = 2;
                      UPDATE public.tracks SET email = 'e2@x' WHERE id = 1; COMMIT`);
  await source.query(`BEGIN; DELETE FROM public.tracks WHERE id = 3; INSERT INTO public.tracks VALUES (9999, 'Moved', 1, NULL, 1, 'e3@x'); COMMIT`);
  await eventuallyEqual(source.url(), destination.url(), 'public.tracks', { run, what: 'values of a unique index moving between rows' });

  let n = 10_000;
  for (const mode of ['online', 'upsert', 'truncate', 'drop'] as const) {
    // Changes during and before the reload; the unique column keeps distinct values in the source.
    await source.query(`INSERT INTO public.tracks VALUES ($1::int, 'New', 7, NULL, 1.5, 'n' || $1::int || '@x')`, [n++]);
    await source.query(`UPDATE public.tracks SET composer = 'u', email = email || '.m' WHERE id % 97 = 0`);
    const r = await sluice(['backfill', 'public.tracks', '--mode', mode, '--wait'], { config: work.config, timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    await source.query(`DELETE FROM public.tracks WHERE id = $1`, [n - 1]);
    await eventuallyEqual(source.url(), destination.url(), 'public.tracks', { run, what: `after --mode ${mode}`, timeoutMs: 30_000 });
    await assertIndexes('tracks', `after backfill --mode ${mode}`);
  }
  await killIfRunning(run);
  run = undefined;
});

test('a destination table created first with another column order, wider types and an extra nullable column is loaded and streamed', async () => {
  await source.query(
    `CREATE TABLE public.artists (id int PRIMARY KEY, name varchar(50) NOT NULL, rating int, born date);
     INSERT INTO public.artists SELECT g, 'Artist ' || g, g % 10, date '1950-01-01' + g FROM generate_series(1, 2000) g`,
  );
  await destination.query(`CREATE TABLE public.artists (note text, born date, rating bigint, name text NOT NULL, id int PRIMARY KEY)`);
  const work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline: 'cf',
    tables: [{ name: 'public.artists', mode: 'truncate', chunkRows: 500 }],
  });
  works.push(work);
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 90_000);
  const columns = ['id', 'name', 'rating', 'born'];
  await eventuallyEqual(source.url(), destination.url(), 'public.artists', { run, columns, what: 'first load into a table created first' });
  await source.query(`INSERT INTO public.artists VALUES (5000, 'Late', 3, NULL); UPDATE public.artists SET rating = NULL, name = name || '!' WHERE id % 13 = 0; DELETE FROM public.artists WHERE id % 17 = 0`);
  await eventuallyEqual(source.url(), destination.url(), 'public.artists', { run, columns, what: 'streaming into a table created first', timeoutMs: 30_000 });
  const cols = await destination.query(
    `SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'public.artists'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
  );
  assert.deepEqual(
    cols.rows.map((x) => `${x.attname} ${x.t}`),
    ['note text', 'born date', 'rating bigint', 'name text', 'id integer'],
    'the table created first keeps its own shape',
  );
  assert.equal(Number((await destination.query(`SELECT count(*) FROM public.artists WHERE note IS NOT NULL`)).rows[0].count), 0);
  // Re-backfills in every mode. upsert and truncate keep the table's own shape; online gives its
  // built-in columns the source's types (the staging table takes them) and keeps the extra column;
  // drop makes the table anew from the source.
  for (const [i, mode] of (['upsert', 'truncate', 'online', 'drop'] as const).entries()) {
    await source.query(`UPDATE public.artists SET rating = coalesce(rating, 0) + 1 WHERE id % 11 = 0`);
    const r = await sluice(['backfill', 'public.artists', '--mode', mode, '--wait'], { config: work.config, timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    await source.query(`INSERT INTO public.artists VALUES ($1::int, 'After ' || $1::int, 1, now()::date)`, [6000 + i]);
    await eventuallyEqual(source.url(), destination.url(), 'public.artists', { run, columns, what: `after --mode ${mode} of a table created first`, timeoutMs: 30_000 });
    if (mode === 'upsert' || mode === 'truncate') {
      const t = await destination.query(`SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'public.artists'::regclass AND attname = 'rating'`);
      assert.equal(t.rows[0].t, 'bigint', `--mode ${mode} keeps the table's own types`);
    }
  }
  await killIfRunning(run);
  run = undefined;
});

test('a destination table created first that cannot take the rows is refused before the load, naming each column and its fix', async () => {
  await source.query(
    `CREATE TABLE public.genres (id int PRIMARY KEY, name text, code int);
     INSERT INTO public.genres SELECT g, 'a genre name longer than five ' || g, g FROM generate_series(1, 100) g`,
  );
  await destination.query(`CREATE TABLE public.genres (id int PRIMARY KEY, name varchar(5), code text NOT NULL, extra int NOT NULL)`);
  const work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline: 'bad',
    tables: [{ name: 'public.genres', mode: 'truncate' }],
  });
  works.push(work);
  const r = await sluice(['run'], { config: work.config, timeoutMs: 60_000 });
  const out = r.stdout + r.stderr;
  assert.equal(r.code, 2, out);
  assert.match(out, /column name is character varying\(5\) in the destination/);
  assert.match(out, /ALTER TABLE "public"\."genres" ALTER COLUMN "name" TYPE text/);
  assert.match(out, /column code is NOT NULL in the destination/);
  assert.match(out, /ALTER TABLE "public"\."genres" ALTER COLUMN "code" DROP NOT NULL/);
  assert.match(out, /column extra exists only in the destination, is NOT NULL and has no default/);
  assert.match(out, /ALTER TABLE "public"\."genres" ALTER COLUMN "extra" DROP NOT NULL/);
  assert.match(out, /column code is text in the destination[^\n]*ALTER TABLE "public"\."genres" ALTER COLUMN "code" TYPE integer/);
  assert.equal(Number((await destination.query(`SELECT count(*) FROM public.genres`)).rows[0].count), 0, 'nothing was loaded');
});

test('an index the destination cannot build is skipped with a warning naming it and recorded in the run; the table streams', async () => {
  await source.query(
    `CREATE FUNCTION public.norm(text) RETURNS text IMMUTABLE LANGUAGE sql AS 'SELECT lower($1)';
     CREATE TABLE public.media (id int PRIMARY KEY, name text);
     INSERT INTO public.media SELECT g, 'M' || g FROM generate_series(1, 500) g;
     CREATE INDEX media_norm ON public.media (public.norm(name));
     CREATE INDEX media_name ON public.media (name)`,
  );
  const work = makeWorkdir({ sourceUrl: source.url(), destinationUrl: destination.url(), pipeline: 'skip', tables: [{ name: 'public.media' }] });
  works.push(work);
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 90_000);
  assert.match(run.output(), /index media_norm of public\.media not created: the destination refused it/);
  await source.query(`INSERT INTO public.media VALUES (501, 'late')`);
  await eventuallyEqual(source.url(), destination.url(), 'public.media', { run, what: 'streaming after a skipped index' });
  assert.deepEqual([...(await indexDefs(destination, 'media')).keys()], ['media_name']);
  const ix = (await destination.query(`SELECT params->'indexes' AS ix FROM _sluice.runs WHERE table_name = 'public.media' ORDER BY id DESC LIMIT 1`)).rows[0].ix;
  assert.deepEqual(ix.created, ['media_name']);
  assert.equal(ix.skipped.length, 1);
  assert.equal(ix.skipped[0].name, 'media_norm');
  assert.match(ix.skipped[0].statement, /CREATE INDEX IF NOT EXISTS "media_norm" ON "public"\."media" USING btree \((public\.)?norm\(name\)\)/);
  await killIfRunning(run);
  run = undefined;
});
