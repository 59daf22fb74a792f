/**
 * Collations reach the destination: the source database sorts by "C", the destination database by
 * ICU en-US. A table whose text key uses the source's default, a column with an explicit ICU
 * collation, one whose collation is the destination's default already, and one whose collation the
 * destination has no equivalent of, is loaded and streams. Then:
 *
 * - each destination column sorts as its source column does: the key by "C" (the source's default,
 *   not the destination's), the ICU column by the same ICU collation, the en-US one by the
 *   destination's default (no clause needed); the orphan keeps the default and the log says so;
 * - the key orders the same on both sides, and key comparisons (`id < 'a'`) select the same rows;
 * - changes streamed afterwards land, the oracle agrees, and `sluice verify` says EQUAL.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { eventuallyEqual, makeWorkdir, sluice, spawnSluice, type Running, type Workdir } from '../support/sluice.js';

const TABLE = 'public.words';
const DST_DB = 'coll_icu';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;

const dst = (sql: string, params?: unknown[]) => destination.query(sql, params, DST_DB);

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await destination.query(`CREATE DATABASE ${DST_DB} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`);
  // Present in the source only: German phonebook order (ä sorts as ae).
  await source.query(`CREATE COLLATION public.phonebook (provider = icu, locale = 'de-u-co-phonebk')`);
  await source.query(`
    CREATE TABLE ${TABLE} (
      id text PRIMARY KEY,
      icu text COLLATE "und-x-icu",
      en text COLLATE "en-US-x-icu",
      phone text COLLATE public.phonebook,
      n int
    );
    INSERT INTO ${TABLE}
      SELECT w, w, w, w, g FROM (
        SELECT g, (ARRAY['a', 'B', 'Ä', 'b', 'A', 'z', 'Z', 'é'])[1 + g % 8] || g AS w FROM generate_series(1, 3000) g) s;
    ANALYZE ${TABLE};
  `);
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(DST_DB),
    pipeline: 'collations',
    tables: [{ name: TABLE, chunkRows: 500, chunkSeconds: 0 }],
  });
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 60_000);
});

after(async () => {
  if (run && run.child.exitCode === null && run.child.signalCode === null) {
    run.kill('SIGKILL');
    await run.exited(10_000).catch(() => undefined);
  }
  work?.remove();
  await stopAll?.();
});

async function collations(q: (sql: string) => Promise<{ rows: { attname: string; coll: string }[] }>): Promise<Record<string, string>> {
  const r = await q(
    `SELECT a.attname, c.collname AS coll FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation
      WHERE a.attrelid = '${TABLE}'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
  );
  return Object.fromEntries(r.rows.map((x) => [x.attname, x.coll]));
}

test('each destination column sorts as its source column does; a collation without equivalent is named in the log', async () => {
  assert.deepEqual(await collations((sql) => source.query(sql)), { id: 'default', icu: 'und-x-icu', en: 'en-US-x-icu', phone: 'phonebook' });
  assert.deepEqual(await collations((sql) => dst(sql)), { id: 'C', icu: 'und-x-icu', en: 'default', phone: 'default' });
  assert.match(run!.output(), /column phone: the source sorts it by public\.phonebook \(ICU de-u-co-phonebk\) and the destination has no collation that sorts the same/);

  // The key orders, and compares, the same on both sides (the destination's default would put 'a…' before 'B…').
  for (const sql of [
    `SELECT string_agg(id, ',' ORDER BY id) AS v FROM ${TABLE}`,
    `SELECT count(*)::text AS v FROM ${TABLE} WHERE id < 'a'`,
    `SELECT string_agg(icu, ',' ORDER BY icu) AS v FROM ${TABLE}`,
    `SELECT string_agg(en, ',' ORDER BY en) AS v FROM ${TABLE}`,
  ]) {
    const [s, d] = [(await source.query(sql)).rows[0].v, (await dst(sql)).rows[0].v];
    assert.equal(d, s, sql);
  }
});

test('changes stream into the collated columns; the oracle agrees and verify says EQUAL', async () => {
  await source.query(`
    INSERT INTO ${TABLE} VALUES ('Ä-new', 'Ä', 'Ä', 'Ä', -1), ('a-new', 'a', 'a', 'a', -2);
    UPDATE ${TABLE} SET icu = 'ß' || icu, n = n + 1 WHERE n % 10 = 0;
    DELETE FROM ${TABLE} WHERE n % 7 = 0;
  `);
  await eventuallyEqual(source.url(), destination.url(DST_DB), TABLE, { run, timeoutMs: 60_000 });
  await assertTablesEqual(source.url(), destination.url(DST_DB), TABLE);
  const v = await sluice(['verify', TABLE, '--attempts', '3', '--range-rows', '300'], { config: work.config });
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /^EQUAL +public\.words/m);
});

test('a column the source gains later gets the collation that sorts as the source column does', async () => {
  await source.query(`ALTER TABLE ${TABLE} ADD COLUMN later text, ADD COLUMN later_icu text COLLATE "und-x-icu"`);
  await source.query(`UPDATE ${TABLE} SET later = id, later_icu = id WHERE n % 3 = 0`);
  await eventuallyEqual(source.url(), destination.url(DST_DB), TABLE, { run, timeoutMs: 60_000 });
  const d = await collations((sql) => dst(sql));
  // Without a COLLATE clause the destination's default (ICU en-US) would sort 'a…' before 'B…'.
  assert.equal(d.later, 'C');
  assert.equal(d.later_icu, 'und-x-icu');
  const sql = `SELECT string_agg(later, ',' ORDER BY later) AS v FROM ${TABLE}`;
  assert.equal((await dst(sql)).rows[0].v, (await source.query(sql)).rows[0].v);
});

test('a column a reload adds to an existing destination table gets the source\'s ordering too', async () => {
  // The destination lost the column (a schema of the user's, say): a reload into the live table adds it back.
  await dst(`ALTER TABLE ${TABLE} DROP COLUMN later`);
  const r = await sluice(['backfill', TABLE, '--mode', 'upsert', '--wait'], { config: work.config, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  await eventuallyEqual(source.url(), destination.url(DST_DB), TABLE, { run, timeoutMs: 60_000 });
  assert.equal((await collations((sql) => dst(sql))).later, 'C');
});
