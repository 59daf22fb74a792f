/**
 * The binlog client against a private MariaDB: streaming from a GTID position and from file:pos,
 * heartbeats on an idle binlog, rotation, backpressure (reading pauses while the consumer is
 * behind), and the refusals: a server_id in use, a purged GTID position.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BinlogClient, type StreamedEvent } from '../../src/sources/mysql/binlog-client.js';
import { GtidPosition } from '../../src/sources/mysql/binlog-position.js';
import { startMariaDb, type MariaDbServer } from '../support/mariadb.js';

let server: MariaDbServer;

before(async () => {
  server = await startMariaDb({ serverId: 1 });
  await server.query('CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))');
});

after(async () => {
  await server?.destroy();
});

async function gtidNow(): Promise<GtidPosition> {
  const [r] = (await server.query('SELECT @@gtid_binlog_pos AS p')) as { p: string }[];
  return GtidPosition.parse(r.p);
}

/** Reads events until `pred` matches one; returns every event read. */
async function until(client: BinlogClient, pred: (e: StreamedEvent) => boolean, max = 10_000): Promise<StreamedEvent[]> {
  const seen: StreamedEvent[] = [];
  for (let i = 0; i < max; i++) {
    const e = await client.next();
    seen.push(e);
    if (pred(e)) return seen;
  }
  throw new Error('event not found');
}

test('streams row events from a GTID position, with the GTID of each transaction', async () => {
  const start = await gtidNow();
  await server.query(`INSERT INTO app.t VALUES (1, 'one'), (2, 'two')`);
  const client = await BinlogClient.open({ url: server.url(), serverId: 101, replicaName: 'sluice-test-a', start: { gtid: start } });
  try {
    const seen = await until(client, (e) => e.event.kind === 'xid');
    const gtid = seen.find((e) => e.event.kind === 'gtid');
    assert.ok(gtid && gtid.event.kind === 'gtid');
    assert.equal(gtid.event.gtid.seq, (start.get(0)?.seq ?? 0n) + 1n);
    const rows = seen.find((e) => e.event.kind === 'rows');
    assert.ok(rows && rows.event.kind === 'rows');
    assert.deepEqual(rows.event.rows.map((r) => r.after), [[1, 'one'], [2, 'two']]);
    assert.match(rows.file, /^binlog\.\d{6}$/);
    assert.ok(seen.some((e) => e.event.kind === 'annotate-rows'));
  } finally {
    client.close();
  }
});

test('heartbeats on an idle binlog, and a ROTATE into the next file', async () => {
  const client = await BinlogClient.open({ url: server.url(), serverId: 102, replicaName: 'sluice-test-b', start: { gtid: await gtidNow() }, heartbeatMs: 100 });
  try {
    const hb = await until(client, (e) => e.event.kind === 'heartbeat');
    assert.ok(hb.length >= 1);
    const [status] = (await server.query('SHOW MASTER STATUS')) as { File: string }[];
    await server.query('FLUSH BINARY LOGS');
    const rotated = await until(client, (e) => e.event.kind === 'rotate' && e.event.file !== status.File);
    const last = rotated.at(-1)!;
    assert.equal(last.file, last.event.kind === 'rotate' ? last.event.file : '');
    assert.ok(last.file > status.File);
  } finally {
    client.close();
  }
});

test('streams from file:pos', async () => {
  const [status] = (await server.query('SHOW MASTER STATUS')) as { File: string; Position: number }[];
  await server.query(`INSERT INTO app.t VALUES (10, 'ten')`);
  const client = await BinlogClient.open({ url: server.url(), serverId: 103, replicaName: 'sluice-test-c', start: { file: status.File, pos: Number(status.Position) } });
  try {
    const seen = await until(client, (e) => e.event.kind === 'rows');
    const rows = seen.at(-1)!.event;
    assert.ok(rows.kind === 'rows');
    assert.deepEqual(rows.rows[0].after, [10, 'ten']);
  } finally {
    client.close();
  }
});

test('backpressure: reading pauses while the consumer is behind, and every event still arrives', async () => {
  const start = await gtidNow();
  const values = Array.from({ length: 400 }, (_, i) => `(${1000 + i}, 'x')`);
  // 400 transactions in one round trip
  await server.query(values.map((v) => `INSERT INTO app.t VALUES ${v}`).join('; '));
  const client = await BinlogClient.open({ url: server.url(), serverId: 104, replicaName: 'sluice-test-d', start: { gtid: start }, highWaterMark: 50 });
  try {
    // 400 transactions of 5 events each are on the server; the client must stop near 50
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(client.isPaused, true);
    assert.ok(client.queued < 400, `queued ${client.queued} events while paused`);
    let rows = 0;
    while (rows < 400) {
      const e = await client.next();
      if (e.event.kind === 'rows') rows += e.event.rows.length;
    }
    assert.equal(rows, 400);
  } finally {
    client.close();
  }
});

test('refuses the source server own server_id, and one another replica is registered under', async () => {
  const start = { gtid: await gtidNow() };
  await assert.rejects(BinlogClient.open({ url: server.url(), serverId: 1, replicaName: 'sluice-test-e', start }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'SLOT_IN_USE');
    assert.match(err.message, /source\.serverId 1 is the source server's own server_id/);
    return true;
  });
  const first = await BinlogClient.open({ url: server.url(), serverId: 105, replicaName: 'other-replica', start });
  try {
    await assert.rejects(BinlogClient.open({ url: server.url(), serverId: 105, replicaName: 'sluice-test-e', start }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SLOT_IN_USE');
      assert.match(err.message, /already used by the replica "other-replica"/);
      return true;
    });
    // the same replica name takes over its own id (a restart after a crash)
    const again = await BinlogClient.open({ url: server.url(), serverId: 105, replicaName: 'other-replica', start });
    again.close();
  } finally {
    first.close();
  }
});

test('a GTID position whose binlog was purged is SLOT_LOST, with the fix', async () => {
  const old = await gtidNow();
  await server.query(`INSERT INTO app.t VALUES (5000, 'gone')`);
  // A file is purged only once the binlog checkpoint has moved past it (written asynchronously).
  for (let i = 0; ; i++) {
    await server.query('FLUSH BINARY LOGS');
    const [status] = (await server.query('SHOW MASTER STATUS')) as { File: string }[];
    await server.query(`PURGE BINARY LOGS TO '${status.File}'`);
    if (((await server.query('SHOW BINARY LOGS')) as unknown[]).length === 1) break;
    assert.ok(i < 50, 'binlogs could not be purged');
    await new Promise((r) => setTimeout(r, 100));
  }
  const client = await BinlogClient.open({ url: server.url(), serverId: 106, replicaName: 'sluice-test-f', start: { gtid: old } }).catch((err: Error) => err);
  let err: Error | null = client instanceof BinlogClient ? null : client;
  if (client instanceof BinlogClient) {
    // the server may send its first events (ROTATE, FORMAT_DESCRIPTION) before the error
    for (let i = 0; i < 20 && !err; i++) await client.next().catch((e: Error) => (err = e));
    client.close();
  }
  assert.ok(err, 'the stream must fail');
  assert.equal((err as Error & { code?: string }).code, 'SLOT_LOST', (err as Error).message);
  assert.match(err!.message, /purged/);
  assert.match(err!.message, /onSlotLost: rebackfill/);
});

test('an event larger than one protocol packet (16 MiB) arrives whole', async () => {
  await server.query('SET GLOBAL max_allowed_packet = 67108864');
  await server.query('CREATE TABLE app.big (id INT PRIMARY KEY, b LONGBLOB)');
  const start = await gtidNow();
  const size = 17 * 1024 * 1024;
  await server.query(`INSERT INTO app.big VALUES (1, REPEAT('x', ${size}))`);
  const client = await BinlogClient.open({ url: server.url(), serverId: 107, replicaName: 'sluice-test-g', start: { gtid: start } });
  try {
    const seen = await until(client, (e) => e.event.kind === 'rows');
    const rows = seen.at(-1)!.event;
    assert.ok(rows.kind === 'rows');
    const b = rows.rows[0].after![1] as Buffer;
    assert.equal(b.length, size);
    assert.equal(b.toString('latin1', size - 3), 'xxx');
  } finally {
    client.close();
  }
});

test('a position with an empty GTID (nothing logged before it) starts from its file:pos', async () => {
  const [status] = (await server.query('SHOW MASTER STATUS')) as { File: string; Position: number }[];
  await server.query(`INSERT INTO app.t VALUES (20, 'twenty')`);
  const client = await BinlogClient.open({
    url: server.url(),
    serverId: 108,
    replicaName: 'sluice-test-h',
    start: { file: status.File, pos: Number(status.Position), gtid: GtidPosition.empty },
  });
  try {
    const seen = await until(client, (e) => e.event.kind === 'rows');
    assert.equal(seen.filter((e) => e.event.kind === 'rows').length, 1, 'nothing before the position');
    const rows = seen.at(-1)!.event;
    assert.ok(rows.kind === 'rows');
    assert.deepEqual(rows.rows[0].after, [20, 'twenty']);
  } finally {
    client.close();
  }
});
