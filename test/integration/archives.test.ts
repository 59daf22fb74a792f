/**
 * Archives of online backfills (contract 6, item 6): the swap moves the replaced table into the
 * archive schema (`online.archiveSchema`, default `sluice_archive`), not the table's schema, with
 * its rows intact; `sluice archives list` shows it with its size, `sluice status` has an archives
 * line, `sluice archives drop` drops it and marks its row; an archive left by an older sluice in
 * the table's schema (`<t>__sluice_archive_<run>`) is listed and dropped the same way; a sequence
 * the live table owns stays with the live table; two droppers at once both succeed, one drops.
 *
 * Oracle: the archive's rows equal the live table's checksum taken right before the backfill (no
 * writes in between; the destination was made to differ from the source first, so the archive is
 * recognisably the old table), and the new live table equals the source.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { dropArchive } from '../../src/destinations/postgres/archives.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual, tableChecksum } from '../support/oracle.js';
import { killIfRunning, makeWorkdir, sluice, spawnSluice, type Running, type Workdir } from '../support/sluice.js';

const TABLE = 'public.items';
const PIPELINE = 'test';
const OLD_ARCHIVE = 'public.items__sluice_archive_999';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;
/** The archive the online backfill made, as recorded. */
let archive: string;

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await source.query(
    `CREATE TABLE ${TABLE} (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL);
     INSERT INTO ${TABLE} SELECT i, 'v' || i, i % 17 FROM generate_series(1, 20000) i`,
  );
  work = makeWorkdir({ sourceUrl: source.url(), destinationUrl: destination.url(), pipeline: PIPELINE, tables: [{ name: TABLE, chunkRows: 5000 }] });
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 90_000);
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  work?.remove();
});

async function archiveRows(): Promise<{ archive: string; dropped: boolean }[]> {
  const r = await destination.query(`SELECT archive, dropped_at IS NOT NULL AS dropped FROM _sluice.archives WHERE pipeline = $1 ORDER BY archive`, [PIPELINE]);
  return r.rows;
}

async function relationExists(name: string): Promise<boolean> {
  return (await destination.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [name])).rows[0].ok;
}

test('an online re-backfill moves the replaced table, intact, into the archive schema; a sequence the live table owns stays', { timeout: 180_000 }, async () => {
  // A sequence owned by the live table in the destination (as a serial column would make): the swap
  // re-points its ownership to the new table, so it must neither move with the archive nor go with its drop.
  await destination.query(
    `CREATE SEQUENCE public.items_id_seq OWNED BY public.items.id;
     ALTER TABLE public.items ALTER COLUMN id SET DEFAULT nextval('public.items_id_seq');
     CREATE INDEX items_n_idx ON public.items (n)`,
  );
  // The destination differs from the source, so the archive is recognisably the old table.
  await destination.query(`UPDATE ${TABLE} SET v = 'old' WHERE id % 10 = 0`);
  const before = await tableChecksum(destination.url(), TABLE);

  const r = await sluice(['backfill', TABLE, '--mode', 'online', '--wait'], { config: work.config, timeoutMs: 150_000 });
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${run?.output().slice(-3000)}`);

  const rows = await archiveRows();
  assert.equal(rows.length, 1, JSON.stringify(rows));
  archive = rows[0].archive;
  assert.match(archive, /^sluice_archive\.public_items__\d+$/, 'recorded under its full name in the archive schema');
  const rel = await destination.query(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`,
    [archive],
  );
  assert.equal(rel.rows[0]?.schema, 'sluice_archive');
  const inLiveSchema = await destination.query(
    `SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'items%' AND c.relname NOT IN ('items', 'items_pkey', 'items_n_idx', 'items_id_seq')`,
  );
  assert.deepEqual(inLiveSchema.rows, [], 'nothing of the archive (table, indexes) is left in the table\'s schema');
  const archIdx = await destination.query(
    `SELECT n.nspname AS schema, count(*)::int AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE i.indrelid = to_regclass($1) GROUP BY 1`,
    [archive],
  );
  assert.deepEqual(archIdx.rows, [{ schema: 'sluice_archive', n: 2 }], 'its indexes moved with it');

  assert.deepEqual(await tableChecksum(destination.url(), archive), before, 'the archive holds the live table as it was before the swap');
  await assertTablesEqual(source.url(), destination.url(), TABLE);

  const seq = await destination.query(
    `SELECT n.nspname AS schema, d.refobjid = 'public.items'::regclass AS owned_by_live
       FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
       LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype = 'a'
      WHERE s.relname = 'items_id_seq'`,
  );
  assert.deepEqual(seq.rows, [{ schema: 'public', owned_by_live: true }], 'the sequence stays in the live schema, owned by the new live table');
});

test('`sluice archives list` shows the archive with its size and the total; --json too', async () => {
  const r = await sluice(['archives', 'list'], { config: work.config });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const line = r.stdout.split('\n').find((l) => l.startsWith(archive));
  assert.ok(line, r.stdout);
  assert.match(line!, /public\.items/);
  assert.match(line!, /\d+(\.\d)? (KiB|MiB)$/, `a size: ${line}`);
  assert.match(r.stdout, /^total: 1 archive, \d+(\.\d)? (KiB|MiB)$/m);
  const j = await sluice(['archives', 'list', '--json'], { config: work.config });
  assert.equal(j.code, 0, j.stderr);
  const parsed = JSON.parse(j.stdout);
  assert.equal(parsed.count, 1);
  assert.equal(parsed.archives[0].archive, archive);
  const size = Number((await destination.query(`SELECT pg_total_relation_size(to_regclass($1))::float8 AS n`, [archive])).rows[0].n);
  assert.ok(size > 0);
  assert.equal(parsed.archives[0].bytes, size, 'the size is pg_total_relation_size of the archive');
  assert.equal(parsed.bytes, size);
});

test('`sluice status` has the archives line: count, size, next drop', async () => {
  const r = await sluice(['status'], { config: work.config });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^archives: 1 \(\d+(\.\d)? (KiB|MiB)\), next drop in 2[34] h; sluice archives list$/m, r.stdout);
  const j = JSON.parse((await sluice(['status', '--json'], { config: work.config })).stdout);
  assert.equal(j.archives.count, 1);
  assert.ok(j.archives.bytes > 0);
});

test('an archive of an older sluice (in the table\'s schema) is listed and dropped by its recorded name', async () => {
  await destination.query(
    `CREATE TABLE ${OLD_ARCHIVE} AS SELECT * FROM ${TABLE} WHERE id <= 100;
     INSERT INTO _sluice.archives (pipeline, table_name, archive, run_id, created_at, drop_after)
       VALUES ('${PIPELINE}', '${TABLE}', '${OLD_ARCHIVE}', 999, now() - interval '1 hour', now() + interval '5 hours')`,
  );
  const l = await sluice(['archives', 'list'], { config: work.config });
  assert.equal(l.code, 0, l.stderr);
  assert.match(l.stdout, new RegExp(`^${OLD_ARCHIVE.replace(/\./g, '\\.')}\\s+public\\.items\\s+999\\s.*\\d+(\\.\\d)? KiB$`, 'm'), l.stdout);
  assert.match(l.stdout, /^total: 2 archives, /m);
  const st = await sluice(['status'], { config: work.config });
  assert.match(st.stdout, /^archives: 2 \(.*\), next drop in [45] h; sluice archives list$/m, st.stdout);

  const d = await sluice(['archives', 'drop', OLD_ARCHIVE], { config: work.config });
  assert.equal(d.code, 0, d.stdout + d.stderr);
  assert.match(d.stdout, new RegExp(`^dropped ${OLD_ARCHIVE.replace(/\./g, '\\.')} `, 'm'));
  assert.equal(await relationExists(OLD_ARCHIVE), false);
  assert.deepEqual(
    (await archiveRows()).map((x) => [x.archive, x.dropped]),
    [[OLD_ARCHIVE, true], [archive, false]],
    'its row is marked dropped; the other archive is untouched',
  );
  assert.equal(await relationExists(archive), true);
});

test('`sluice archives drop` refuses an unknown name (exit 2), listing the archives kept', async () => {
  const r = await sluice(['archives', 'drop', 'sluice_archive.nope__1'], { config: work.config });
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /no archive sluice_archive\.nope__1 is kept for pipeline test; the archives kept are: sluice_archive\.public_items__\d+/);
  const none = await sluice(['archives', 'drop'], { config: work.config });
  assert.equal(none.code, 2, none.stderr);
  assert.match(none.stderr, /name exactly one of <archive>, --table <table> or --all-expired/);
  const live = await destination.query(`SELECT count(*)::int AS n FROM ${TABLE}`);
  assert.equal(live.rows[0].n, 20000, 'the live table is untouched');
});

test('`sluice archives drop --table` drops the archive while `sluice run` runs; the row is marked; status has no archives line', async () => {
  const d = await sluice(['archives', 'drop', '--table', TABLE], { config: work.config });
  assert.equal(d.code, 0, d.stdout + d.stderr);
  assert.match(d.stdout, new RegExp(`^dropped ${archive.replace(/\./g, '\\.')} \\(`, 'm'));
  assert.equal(await relationExists(archive), false);
  assert.ok((await archiveRows()).every((x) => x.dropped), 'every row marked dropped');
  // The sequence the live table owns survived the archive's drop, and the live table is whole.
  assert.equal((await destination.query(`SELECT nextval('public.items_id_seq') > 0 AS ok`)).rows[0].ok, true);
  await assertTablesEqual(source.url(), destination.url(), TABLE);
  const st = await sluice(['status'], { config: work.config });
  assert.doesNotMatch(st.stdout, /^archives:/m, st.stdout);
  const l = await sluice(['archives', 'list'], { config: work.config });
  assert.equal(l.stdout.trim(), 'no archives kept');
});

test('--all-expired and the sweeper race on expired archives: every one ends dropped and marked, once', async () => {
  const names = ['public.items__sluice_archive_1001', 'public.items__sluice_archive_1002'];
  for (const [i, n] of names.entries()) {
    await destination.query(
      `CREATE TABLE ${n} (id int PRIMARY KEY); INSERT INTO ${n} VALUES (1);
       INSERT INTO _sluice.archives (pipeline, table_name, archive, run_id, drop_after)
         VALUES ('${PIPELINE}', '${TABLE}', '${n}', ${1001 + i}, now() - interval '1 minute')`,
    );
  }
  const d = await sluice(['archives', 'drop', '--all-expired'], { config: work.config });
  assert.equal(d.code, 0, d.stdout + d.stderr);
  for (const n of names) {
    assert.equal(await relationExists(n), false, `${n} is gone`);
    // The CLI dropped it, or the running pipeline's sweeper got there first.
    assert.ok(d.stdout.includes(`dropped ${n}`) || d.stdout.includes(`${n}: already dropped`) || d.stdout === 'no archive has passed its retention\n', d.stdout);
  }
  assert.ok((await archiveRows()).every((x) => x.dropped));

  // Two droppers at once on the same archive (the CLI and the sweeper): both succeed, one drops.
  const n = 'public.items__sluice_archive_1003';
  await destination.query(
    `CREATE TABLE ${n} (id int PRIMARY KEY);
     INSERT INTO _sluice.archives (pipeline, table_name, archive, run_id, drop_after) VALUES ('${PIPELINE}', '${TABLE}', '${n}', 1003, NULL)`,
  );
  const clients = [new pg.Client({ connectionString: destination.url() }), new pg.Client({ connectionString: destination.url() })];
  try {
    for (const c of clients) await c.connect();
    const outcomes = await Promise.all(clients.map((c) => dropArchive(c, PIPELINE, n, 10_000)));
    assert.deepEqual(outcomes.sort(), ['already dropped', 'dropped']);
  } finally {
    for (const c of clients) await c.end().catch(() => {});
  }
  assert.equal(await relationExists(n), false);
  const row = await destination.query(`SELECT dropped_at IS NOT NULL AS d FROM _sluice.archives WHERE archive = $1`, [n]);
  assert.equal(row.rows[0].d, true);
});

/** Restarts `sluice run` with `online` settings appended to the config. */
async function restartWith(online: string): Promise<void> {
  run!.kill('SIGTERM');
  assert.equal((await run!.exited(30_000)).code, 0);
  const base = readFileSync(work.config, 'utf8').replace(/\nonline: .*\n?$/, '\n');
  writeFileSync(work.config, `${base}online: ${online}\n`);
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/pipeline running/, 60_000);
}

test('free space: under online.lowFreeSpacePercent after a swap, the log and status warn, naming the archives kept', { timeout: 180_000 }, async () => {
  // Every disk is under 100 %: the warning's path, with the embedded destination's readable data directory.
  await restartWith('{ lowFreeSpacePercent: 100 }');
  const r = await sluice(['backfill', TABLE, '--wait'], { config: work.config, timeoutMs: 150_000 });
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${run?.output().slice(-3000)}`);
  await run!.waitForOutput(/destination short of space after the swap: the destination has .* free of .* \(under online\.lowFreeSpacePercent 100 %\); 1 archive of online backfills kept holds \d+(\.\d)? (KiB|MiB) \(sluice archives list; free it with sluice archives drop/, 30_000);
  const st = await sluice(['status'], { config: work.config });
  assert.match(st.stdout, /^archives: 1 \(.*\), next drop in 2[34] h; sluice archives list$/m, st.stdout);
  assert.match(st.stdout, /^warning: destination free space .* is under online\.lowFreeSpacePercent \(100 %\); archives hold .*: sluice archives drop$/m, st.stdout);
});

test('free space: an online backfill refused for lack of room names the archives kept and how to drop them', { timeout: 180_000 }, async () => {
  await restartWith('{ minFreeSpaceRatio: 1000000000 }');
  const r = await sluice(['backfill', TABLE, '--wait'], { config: work.config, timeoutMs: 150_000 });
  assert.notEqual(r.code, 0, r.stdout + r.stderr);
  assert.match(
    r.stdout + r.stderr,
    /needs about .* for the staging table, and the destination has .* free; 1 archive of online backfills kept holds .*\(sluice archives list; free it with sluice archives drop <archive>\|--table <table>\|--all-expired\); free space, or use --mode truncate/,
  );
  assert.equal((await destination.query(`SELECT to_regclass('public.items__sluice_staging') IS NULL AS ok`)).rows[0].ok, true, 'nothing was loaded');
});
