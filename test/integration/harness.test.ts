import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { startClusters, startReplica, type Cluster } from '../support/clusters.js';
import { assertTablesEqual, tableChecksum } from '../support/oracle.js';

let source: Cluster;
let destination: Cluster;
let replica: Cluster | undefined;
let stopAll: (() => Promise<void>) | undefined;

const DDL = `
  CREATE SCHEMA app;
  CREATE TABLE app.things (
    id      int PRIMARY KEY,
    name    text NOT NULL,
    price   numeric(12, 3),
    ratio   float8,
    seen_at timestamptz,
    born    date,
    dur     interval,
    doc     jsonb,
    raw     bytea,
    tags    text[],
    ok      boolean
  );
  INSERT INTO app.things VALUES
    (1, 'alpha', 1.5,   0.1,  '2024-01-02 03:04:05.678+02', '2000-02-29', '1 day 02:03:04', '{"a": 1}', '\\xdeadbeef', '{x,y}', true),
    (2, 'beta',  NULL,  1e-300, '1999-12-31 23:59:59+00', NULL, NULL, '[1, "two", null]', NULL, '{}', false),
    (3, 'gamma', -42.001, 'NaN', NULL, '1970-01-01', '-3 months', 'null', '\\x', NULL, NULL);
  CREATE TABLE app.pairs (a int, b text, v int, PRIMARY KEY (b, a));
  INSERT INTO app.pairs SELECT i, 'k' || (i % 3), i * 10 FROM generate_series(1, 20) i;
`;

before(async () => {
  const t0 = Date.now();
  const clusters = await startClusters();
  source = clusters.source;
  destination = clusters.destination;
  stopAll = clusters.stopAll;
  console.log(`# startClusters took ${Date.now() - t0} ms`);
});

after(async () => {
  await replica?.destroy();
  await stopAll?.();
});

test('source has wal_level=logical, destination does not', async () => {
  assert.equal((await source.query('SHOW wal_level')).rows[0].wal_level, 'logical');
  assert.equal((await destination.query('SHOW wal_level')).rows[0].wal_level, 'replica');
  assert.match(source.url(), /^postgres:\/\/postgres:postgres@127\.0\.0\.1:\d+\/postgres$/);
  assert.notEqual(source.port, 5432);
  assert.notEqual(source.port, destination.port);
  assert.ok(existsSync(source.dataDir));
});

test('oracle: equal tables pass, a changed row is named', async () => {
  await source.query(DDL);
  await destination.query(DDL);
  await assertTablesEqual(source.url(), destination.url(), 'app.things');
  await assertTablesEqual(source.url(), destination.url(), 'app.pairs');
  await assertTablesEqual(source.url(), destination.url(), 'app.things', ['id', 'name']);

  const sum = await tableChecksum(source.url(), 'app.things');
  assert.equal(sum.rows, 3);
  assert.match(sum.md5, /^[0-9a-f]{32}$/);

  await destination.query(`UPDATE app.things SET ratio = 0.1000001 WHERE id = 2`);
  await assert.rejects(assertTablesEqual(source.url(), destination.url(), 'app.things'), (err: Error) => {
    assert.equal(err.name, 'AssertionError');
    assert.match(err.message, /\(id\)=\(2\) differs/);
    assert.doesNotMatch(err.message, /\(id\)=\(1\)/);
    assert.match(err.message, /source: +rows=3 md5=[0-9a-f]{32}/);
    return true;
  });
  // a column subset that excludes the changed column still matches
  await assertTablesEqual(source.url(), destination.url(), 'app.things', ['id', 'name']);

  await destination.query(`DELETE FROM app.pairs WHERE a = 4; INSERT INTO app.pairs VALUES (99, 'zz', 0)`);
  await assert.rejects(assertTablesEqual(source.url(), destination.url(), 'app.pairs'), (err: Error) => {
    assert.match(err.message, /\(b, a\)=\(k1,4\) missing in destination/);
    assert.match(err.message, /\(b, a\)=\(zz,99\) only in destination/);
    return true;
  });
});

test('createDatabase, stop and start keep data', async () => {
  await destination.createDatabase('other');
  await destination.query('CREATE TABLE t (id int primary key)', [], 'other');
  await destination.query('INSERT INTO t VALUES ($1)', [7], 'other');
  await destination.stop();
  await assert.rejects(destination.query('SELECT 1'));
  await destination.start();
  assert.equal((await destination.query('SELECT id FROM t', [], 'other')).rows[0].id, 7);
});

test('replica: inserts on the primary show up on the hot standby', async () => {
  const t0 = Date.now();
  replica = await startReplica(source, 'replica');
  console.log(`# startReplica took ${Date.now() - t0} ms`);
  assert.equal((await replica.query('SELECT pg_is_in_recovery() AS r')).rows[0].r, true);
  // data from before the backup
  await assertTablesEqual(source.url(), replica.url(), 'app.things');

  await source.query(`INSERT INTO app.things (id, name) VALUES (100, 'after-backup')`);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const res = await replica.query('SELECT name FROM app.things WHERE id = 100');
    if (res.rowCount === 1) {
      assert.equal(res.rows[0].name, 'after-backup');
      break;
    }
    if (Date.now() > deadline) assert.fail('row did not reach the replica within 10 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  await assertTablesEqual(source.url(), replica.url(), 'app.things');
  await assert.rejects(replica.query('CREATE TABLE nope (id int)'), /read-only/);
});
