/**
 * L0 on MariaDB: the consistent snapshot's binlog position. A transaction that straddles L0 (begun
 * before, committed after the snapshot opened) must be invisible to the snapshot and replayed from
 * L0; a transaction committed before must be visible and not replayed. The negative control shows
 * that the position a naive reading gives (@@gtid_binlog_pos, read just after opening the
 * snapshot) loses the straddling transaction: the test fails if the mechanism is removed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BinlogClient } from '../../src/sources/mysql/binlog-client.js';
import { GtidPosition, type BinlogPosition } from '../../src/sources/mysql/binlog-position.js';
import { openSnapshot, waitForReplica } from '../../src/sources/mysql/snapshot.js';
import { startMariaDb, type MariaDbServer } from '../support/mariadb.js';

let server: MariaDbServer;

before(async () => {
  server = await startMariaDb({ serverId: 1 });
  await server.query('CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT)');
});

after(async () => {
  await server?.destroy();
});

/** Ids inserted into app.t in the binlog from `start` up to the server's current GTID position. */
async function replayedIds(start: BinlogPosition | { gtid: GtidPosition }, serverId: number): Promise<number[]> {
  const [{ p }] = (await server.query('SELECT @@gtid_binlog_pos AS p')) as { p: string }[];
  const end = GtidPosition.parse(p);
  const client = await BinlogClient.open({ url: server.url(), serverId, replicaName: `l0-${serverId}`, start: { gtid: start.gtid } });
  const ids: number[] = [];
  let at = start.gtid;
  let pending: GtidPosition | null = null;
  try {
    while (!at.contains(end)) {
      const { event } = await client.next();
      // a transaction's GTID comes first; it has committed at its XID (or its QUERY when standalone)
      if (event.kind === 'gtid') pending = at.with(event.gtid);
      if ((event.kind === 'xid' || event.kind === 'query') && pending) [at, pending] = [pending, null];
      if (event.kind === 'rows' && event.map.table === 't' && event.rowsKind === 'insert') ids.push(...event.rows.map((r) => r.after![0] as number));
    }
  } finally {
    client.close();
  }
  return ids.sort((a, b) => a - b);
}

test('a transaction straddling L0 is replayed from L0, once; one committed before is in the snapshot', async () => {
  await server.query('INSERT INTO app.t VALUES (1, 0), (2, 0)');
  const straddler = await server.connect();
  await straddler.query('BEGIN');
  await straddler.query('INSERT INTO app.t VALUES (3, 0)');

  const snapConn = await server.connect();
  const snap = await openSnapshot(snapConn);
  // naive L0, read in the same breath after the snapshot opened
  const other = await server.connect();
  await straddler.query('COMMIT'); // commits after the snapshot opened
  const [[naive]] = (await other.query('SELECT @@gtid_binlog_pos AS p')) as unknown as [{ p: string }[]];
  await other.query('INSERT INTO app.t VALUES (4, 0)'); // plainly after L0
  const [seen] = (await snap.conn.query('SELECT id FROM app.t ORDER BY id')) as unknown as [{ id: number }[]];
  await snap.close();
  await Promise.all([straddler.end(), other.end(), snapConn.end()]);

  const inSnapshot = seen.map((r) => r.id);
  assert.deepEqual(inSnapshot, [1, 2]);
  const replayed = await replayedIds(snap.position, 201);
  assert.deepEqual(replayed, [3, 4]);
  assert.deepEqual([...inSnapshot, ...replayed].sort(), [1, 2, 3, 4], 'every row exactly once: snapshot ∪ replay from L0');

  // negative control: from the naive position the straddling row is neither in the snapshot nor replayed
  const fromNaive = await replayedIds({ gtid: GtidPosition.parse(naive.p) }, 202);
  assert.deepEqual(fromNaive, [4]);
  assert.ok(!inSnapshot.includes(3) && !fromNaive.includes(3), 'the naive L0 loses row 3: this is what the snapshot position prevents');
});

test('the snapshot position is a file:pos and its GTID position; MASTER_GTID_WAIT on a primary times out', async () => {
  const c = await server.connect();
  const snap = await openSnapshot(c);
  await snap.close();
  assert.match(snap.position.file, /^binlog\.\d{6}$/);
  assert.ok(snap.position.pos > 4);
  assert.equal(snap.position.gtid.isEmpty, false);
  // MASTER_GTID_WAIT waits for what replication applied (gtid_slave_pos): on a primary it times out
  assert.equal(await waitForReplica(c, snap.position.gtid, 0.2), false);
  await c.end();
});

test('on a replica, MASTER_GTID_WAIT(L0) returns once it has applied everything before L0, and reads there see it', async () => {
  const replica = await startMariaDb({ serverId: 2 });
  try {
    await replica.query(
      `CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ${server.port}, MASTER_USER = 'root', MASTER_USE_GTID = slave_pos; START SLAVE`,
    );
    const r = await replica.connect();
    // stopped: a position past what the replica has is not reached
    await r.query('STOP SLAVE SQL_THREAD');
    await server.query('INSERT INTO app.t VALUES (50, 0)');
    const c = await server.connect();
    const snap = await openSnapshot(c);
    await snap.close();
    await c.end();
    assert.equal(await waitForReplica(r, snap.position.gtid, 0.5), false);
    await r.query('START SLAVE SQL_THREAD');
    assert.equal(await waitForReplica(r, snap.position.gtid, 30), true);
    const [rows] = (await r.query('SELECT id FROM app.t WHERE id = 50')) as unknown as [{ id: number }[]];
    assert.deepEqual(rows.map((x) => x.id), [50]);
    await r.end();
  } finally {
    await replica.destroy();
  }
});
