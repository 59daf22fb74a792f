/**
 * CDC semantics end to end through `sluice run` (contract 5, and contract 1 on an idle
 * source): after the initial backfill of a table with a TOASTed column, each kind of source change
 * must reach the destination, checked with the independent oracle after every step.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { makeWorkdir, spawnSluice, waitUntil, type Running, type Workdir, eventuallyEqual as sharedEventuallyEqual } from '../support/sluice.js';

const TABLE = 'public.docs';
const SLOT = 'sluice_test';
/** ~3.2 kB of hex: stored out of line (STORAGE EXTERNAL: never compressed, never inline). */
const TOAST = (seed: string) => `(SELECT string_agg(md5(${seed} || ':' || j), '') FROM generate_series(1, 100) j)`;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir | undefined;
let run: Running | undefined;

before(async () => {
  const c = await startClusters();
  source = c.source;
  destination = c.destination;
  stopAll = c.stopAll;
  await source.query(`
    CREATE TABLE ${TABLE} (id int PRIMARY KEY, v int NOT NULL, label text, note text);
    ALTER TABLE ${TABLE} ALTER COLUMN note SET STORAGE EXTERNAL;
    INSERT INTO ${TABLE}
      SELECT i, i * 10, 'row ' || i, CASE WHEN i % 5 = 0 THEN ${TOAST("'n' || i")} ELSE 'short ' || i END
        FROM generate_series(1, 200) i;
  `);
  work = makeWorkdir({ sourceUrl: source.url(), destinationUrl: destination.url(), tables: [{ name: TABLE, chunkRows: 50 }] });
});

after(async () => {
  if (run && run.child.exitCode === null && run.child.signalCode === null) {
    run.kill('SIGKILL');
    await run.exited(10_000).catch(() => undefined);
  }
  await stopAll?.();
  work?.remove();
});

/** Polls the oracle until source and destination agree; on timeout throws its last difference. */
async function eventuallyEqual(what: string, timeoutMs = 10_000): Promise<void> {
  await sharedEventuallyEqual(source.url(), destination.url(), TABLE, { what, timeoutMs, run, everyMs: 150 });
}

async function slotLagBytes(): Promise<number> {
  const r = await source.query(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag FROM pg_replication_slots WHERE slot_name = $1`,
    [SLOT],
  );
  assert.equal(r.rowCount, 1, `slot ${SLOT} exists`);
  return Number(r.rows[0].lag);
}

test('initial backfill of a table with TOASTed values', async () => {
  run = spawnSluice(['run'], { config: work!.config });
  await run.waitForOutput(/table caught up; streaming/, 60_000);
  await eventuallyEqual('initial backfill');
  const toasted = await destination.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE length(note) > 3000`);
  assert.equal(toasted.rows[0].n, 40);
});

test('inserts', async () => {
  await source.query(`
    INSERT INTO ${TABLE} SELECT i, i, 'ins ' || i, CASE WHEN i % 2 = 0 THEN ${TOAST("'i' || i")} ELSE NULL END
      FROM generate_series(201, 230) i`);
  await source.query(`INSERT INTO ${TABLE} VALUES (231, -1, E'tab\\there\\nnewline \\\\ backslash', 'café ✓')`);
  await eventuallyEqual('inserts');
});

test('updates', async () => {
  await source.query(`UPDATE ${TABLE} SET v = v + 1, label = label || ' upd' WHERE id % 7 = 1`);
  // a TOASTed value that changes is sent whole
  await source.query(`UPDATE ${TABLE} SET note = ${TOAST("'changed' || id")} WHERE id IN (3, 4)`);
  await source.query(`UPDATE ${TABLE} SET label = NULL WHERE id = 6`);
  await eventuallyEqual('updates');
});

test('deletes', async () => {
  await source.query(`DELETE FROM ${TABLE} WHERE id % 9 = 2`);
  await source.query(`DELETE FROM ${TABLE} WHERE id IN (10, 20)`); // TOASTed rows
  await eventuallyEqual('deletes');
});

test('a primary-key change', async () => {
  await source.query(`UPDATE ${TABLE} SET id = 1001, v = 1 WHERE id = 1`);
  await source.query(`UPDATE ${TABLE} SET id = 1007 WHERE id = 7`);
  await eventuallyEqual('primary-key change');
  assert.equal((await destination.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE id IN (1, 7)`)).rows[0].n, 0);
});

test('an update that leaves a TOASTed column unchanged keeps the destination value', async () => {
  const before = await destination.query(`SELECT id, md5(note) AS h FROM ${TABLE} WHERE length(note) > 3000 ORDER BY id`);
  assert.ok(before.rowCount! >= 30, `TOASTed rows in the destination: ${before.rowCount}`);
  await source.query(`UPDATE ${TABLE} SET v = v + 100 WHERE length(note) > 3000 AND id % 2 = 1`);
  // and one in a transaction with other changes of the same row (compaction inside a batch)
  await source.query(`BEGIN; UPDATE ${TABLE} SET v = 1 WHERE id = 40; UPDATE ${TABLE} SET label = 'twice' WHERE id = 40; COMMIT`);
  await eventuallyEqual('update leaving a TOASTed column unchanged');
  const after = await destination.query(`SELECT id, md5(note) AS h FROM ${TABLE} WHERE length(note) > 3000 ORDER BY id`);
  assert.deepEqual(after.rows, before.rows);
});

test('a primary-key change of a row whose TOASTed column is unchanged', async () => {
  const h = (await source.query(`SELECT md5(note) AS h FROM ${TABLE} WHERE id = 15`)).rows[0].h;
  assert.ok(h, 'row 15 has a note');
  await source.query(`UPDATE ${TABLE} SET id = 1015 WHERE id = 15`);
  await eventuallyEqual('key change with unchanged TOAST');
  // a key change, then an update of the new key, in one transaction; and a change of a key and back
  await source.query(`BEGIN; UPDATE ${TABLE} SET id = 1025 WHERE id = 25; UPDATE ${TABLE} SET v = 2 WHERE id = 1025; COMMIT`);
  await source.query(`BEGIN; UPDATE ${TABLE} SET v = 3 WHERE id = 35; UPDATE ${TABLE} SET id = 1035 WHERE id = 35; UPDATE ${TABLE} SET id = 2035 WHERE id = 1035; COMMIT`);
  await eventuallyEqual('key changes with unchanged TOAST in transactions');
  const d = await destination.query(`SELECT md5(note) AS h FROM ${TABLE} WHERE id = 1015`);
  assert.equal(d.rows[0]?.h, h);
  assert.equal((await destination.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE id IN (15, 25, 35, 1035) OR note IS NULL AND id IN (1025, 2035)`)).rows[0].n, 0);
});

test('TRUNCATE', async () => {
  await source.query(`TRUNCATE ${TABLE}`);
  await eventuallyEqual('TRUNCATE');
  assert.equal((await destination.query(`SELECT count(*)::int AS n FROM ${TABLE}`)).rows[0].n, 0);
  // rows written after the truncate (one in the same transaction as a second truncate)
  await source.query(`
    INSERT INTO ${TABLE} SELECT i, i, 'again ' || i, CASE WHEN i % 3 = 0 THEN ${TOAST("'a' || i")} END FROM generate_series(1, 30) i`);
  await source.query(`BEGIN; INSERT INTO ${TABLE} VALUES (99, 99, 'gone', NULL); TRUNCATE ${TABLE};
    INSERT INTO ${TABLE} SELECT i, i, 'after ' || i, CASE WHEN i % 3 = 0 THEN ${TOAST("'b' || i")} END FROM generate_series(1, 40) i; COMMIT`);
  await eventuallyEqual('inserts after TRUNCATE');
  assert.equal((await destination.query(`SELECT count(*)::int AS n FROM ${TABLE}`)).rows[0].n, 40);
});

test('ADD COLUMN with a DEFAULT reaches the destination', async () => {
  await source.query(`ALTER TABLE ${TABLE} ADD COLUMN c int DEFAULT 7`);
  await source.query(`INSERT INTO ${TABLE} (id, v, label) VALUES (500, 5, 'with c')`);
  await source.query(`INSERT INTO ${TABLE} (id, v, label, c) VALUES (501, 5, 'c set', 42)`);
  await eventuallyEqual('ADD COLUMN + insert');
  const c = await destination.query(`SELECT count(*) FILTER (WHERE c = 7)::int AS sevens, count(*)::int AS n FROM ${TABLE}`);
  assert.equal(c.rows[0].n, 42);
  assert.equal(c.rows[0].sevens, 41, 'old rows take the DEFAULT');
  // later changes of old rows and TOAST-unchanged updates under the new column set
  await source.query(`UPDATE ${TABLE} SET c = 8 WHERE id <= 5`);
  await source.query(`UPDATE ${TABLE} SET v = v + 1 WHERE id IN (3, 6, 9)`);
  await eventuallyEqual('updates after ADD COLUMN');
  const notes = await destination.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE id IN (3, 6, 9) AND length(note) > 3000`);
  assert.equal(notes.rows[0].n, 3);
});

test('idle source: heartbeats keep the slot close to the WAL head while another database writes', async () => {
  await source.createDatabase('other');
  await source.query(`CREATE TABLE noise (id bigserial PRIMARY KEY, pad text)`, [], 'other');
  const until = Date.now() + 4000;
  let writes = 0;
  while (Date.now() < until) {
    await source.query(`INSERT INTO noise (pad) SELECT repeat(md5(random()::text), 8) FROM generate_series(1, 500)`, [], 'other');
    writes++;
    await new Promise((r) => setTimeout(r, 50));
  }
  const atStop = (await source.query(`SELECT pg_current_wal_lsn()::text AS lsn`)).rows[0].lsn as string;
  const lagAtStop = await slotLagBytes();
  console.log(`# ${writes} writes in database other; slot lag when they stopped: ${lagAtStop} bytes (WAL at ${atStop})`);
  let lag = lagAtStop;
  await waitUntil(
    'the slot to confirm within 1 MB of the WAL head',
    async () => {
      lag = await slotLagBytes();
      return lag < 1_000_000;
    },
    5000,
    100,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}; lag ${lag} bytes\n--- sluice output (tail):\n${run?.output().slice(-4000)}`);
  });
  // ... and past the WAL written by the other database (the heartbeat commits after it)
  await waitUntil(
    'confirmed_flush_lsn to pass the WAL position at the end of the writes',
    async () =>
      (await source.query(`SELECT confirmed_flush_lsn >= $2::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $1`, [SLOT, atStop])).rows[0].ok,
    5000,
    100,
  );
  await eventuallyEqual('after the heartbeat period');
});

test('SIGTERM stops cleanly with exit code 0 and the slot acknowledged', async () => {
  await source.query(`UPDATE ${TABLE} SET v = v + 1000 WHERE id <= 10`);
  await eventuallyEqual('last updates');
  run!.kill('SIGTERM');
  const r = await run!.exited(30_000);
  assert.equal(r.signal, null, `exited by signal ${r.signal}`);
  assert.equal(r.code, 0, `exit code ${r.code}; output:\n${r.stdout}${r.stderr}`);
  const slot = await source.query(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [SLOT]);
  assert.equal(slot.rows[0].active, false, 'the walsender is gone');
  const lag = await slotLagBytes();
  assert.ok(lag < 1_000_000, `slot lag after a clean stop: ${lag} bytes`);
  await assertTablesEqual(source.url(), destination.url(), TABLE);
});
