/**
 * Capture from a private MariaDB into the embedded change log: inserts, updates (with a key
 * change), deletes, TRUNCATE and ALTER in commit order, values in PostgreSQL text form, changes from
 * L0 on only, untracked tables ignored; then a resume from the log's durable position that neither
 * loses nor repeats a change.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EmbeddedChangeLog } from '../../src/changelog/embedded/embedded-change-log.js';
import type { TableInfo } from '../../src/core/columns.js';
import { Position, TableName, type Change, type Lsn } from '../../src/core/types.js';
import { BinlogCapture } from '../../src/sources/mysql/binlog-capture.js';
import { BinlogClient } from '../../src/sources/mysql/binlog-client.js';
import { filePositionOf, orderKey } from '../../src/sources/mysql/binlog-position.js';
import { connectSource } from '../../src/sources/mysql/connection.js';
import { introspectTable } from '../../src/sources/mysql/introspect.js';
import { startMariaDb, type MariaDbServer } from '../support/mariadb.js';
import { openSnapshot, snapshotPosition } from '../../src/sources/mysql/snapshot.js';

let server: MariaDbServer;
let dir: string;

before(async () => {
  server = await startMariaDb({ serverId: 1 });
  await server.query(`CREATE DATABASE app;
    CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20), d DATETIME(6), ts TIMESTAMP(3) NULL, u UUID, b VARBINARY(4), z DATE);
    CREATE TABLE app.other (id INT PRIMARY KEY)`);
  dir = mkdtempSync(join(tmpdir(), 'sluice-mariadb-capture-'));
});

after(async () => {
  await server?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The tracked tables as the source driver introspects them. */
async function tracked(...names: string[]): Promise<Map<string, TableInfo>> {
  const conn = await connectSource(server.url(), 'sluice-test');
  try {
    return new Map(await Promise.all(names.map(async (n) => [n, await introspectTable(conn, TableName.parse(n))] as const)));
  } finally {
    await conn.end();
  }
}

async function serverPosition(): Promise<bigint> {
  const [s] = (await server.query('SHOW MASTER STATUS')) as { File: string; Position: number }[];
  return orderKey({ file: s.File, pos: Number(s.Position) });
}

async function waitFor(log: EmbeddedChangeLog, key: bigint): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (log.head().endLsn < key) {
    assert.ok(Date.now() < deadline, `capture did not reach ${key} (at ${log.head().endLsn})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function start(log: EmbeddedChangeLog, client: BinlogClient, tables: Map<string, TableInfo>, ddl: string[]): { capture: BinlogCapture; done: Promise<void> } {
  const capture = new BinlogCapture({ client, log, tables, onDdl: (t, sql) => ddl.push(`${t}: ${sql}`) });
  return { capture, done: capture.run() };
}

const summary = (c: Change) => [c.kind, c.row ?? null, c.oldKey ?? null];

test('captures every kind of change from L0, in commit order, in PostgreSQL text form; resumes without loss or repeat', async () => {
  await server.query(`INSERT INTO app.t (id, v) VALUES (100, 'before L0')`);
  const conn = await server.connect();
  const l0 = await snapshotPosition(conn);
  await conn.end();
  const log = new EmbeddedChangeLog(join(dir, 'log.db'), { fsync: false });
  const ddl: string[] = [];
  const client = await BinlogClient.open({ url: server.url(), serverId: 401, replicaName: 'capture-test', start: l0, heartbeatMs: 100 });
  const first = start(log, client, await tracked('app.t'), ddl);

  await server.query(`SET time_zone = '+00:00';
    BEGIN;
    INSERT INTO app.t VALUES (1, 'one', '2024-01-02 03:04:05.123456', '2024-05-06 07:08:09.5', '123e4567-e89b-12d3-a456-426614174000', X'00FF', '0000-00-00');
    INSERT INTO app.t (id, v) VALUES (2, 'two');
    COMMIT;
    UPDATE app.t SET v = 'uno' WHERE id = 1;
    UPDATE app.t SET id = 10 WHERE id = 1;
    DELETE FROM app.t WHERE id = 2;
    INSERT INTO app.other VALUES (1);
    TRUNCATE TABLE app.t;
    INSERT INTO app.t (id, v) VALUES (3, 'three');
    ALTER TABLE app.t ADD COLUMN x INT NOT NULL DEFAULT 5;
    INSERT INTO app.t (id, v) VALUES (4, 'four')`);
  await waitFor(log, await serverPosition());

  const changes = log.read('app.t', Position.before(orderKey(l0) as Lsn), 1000);
  const full = ['10', 'uno', '2024-01-02 03:04:05.123456', '2024-05-06 07:08:09.500+00', '123e4567-e89b-12d3-a456-426614174000', '\\x00ff', null];
  assert.deepEqual(changes.map(summary), [
    ['insert', ['1', 'one', '2024-01-02 03:04:05.123456', '2024-05-06 07:08:09.500+00', '123e4567-e89b-12d3-a456-426614174000', '\\x00ff', null], null],
    ['insert', ['2', 'two', null, null, null, null, null], null],
    ['update', ['1', ...full.slice(1)], null],
    ['update', full, ['1']],
    ['delete', null, ['2']],
    ['truncate', null, null],
    ['insert', ['3', 'three', null, null, null, null, null], null],
    ['insert', ['4', 'four', null, null, null, null, null, '5'], null],
  ]);
  // both inserts of the first transaction share its position; later transactions come after
  assert.equal(changes[0].position.lsn, changes[1].position.lsn);
  for (let i = 1; i < changes.length; i++) assert.ok(Position.compare(changes[i - 1].position, changes[i].position) < 0);
  // the ALTER gave a new column set, and was reported
  assert.deepEqual(log.relation(changes.at(-1)!.relationVersion).names, ['id', 'v', 'd', 'ts', 'u', 'b', 'z', 'x']);
  assert.deepEqual(ddl, ['app.t: ALTER TABLE app.t ADD COLUMN x INT NOT NULL DEFAULT 5']);
  assert.equal(log.read('app.other', Position.start, 10).length, 0, 'untracked tables are not captured');

  // resume from the durable position, after more writes while capture was down
  first.capture.stop();
  await first.done;
  // the first event of the table after the resume is a TRUNCATE: its column set comes from introspection
  await server.query(`TRUNCATE TABLE app.t`);
  const head = log.head();
  const resumed = await BinlogClient.open({ url: server.url(), serverId: 401, replicaName: 'capture-test', start: filePositionOf(head.endLsn, 'binlog') });
  const second = start(log, resumed, await tracked('app.t'), ddl);
  await server.query(`INSERT INTO app.t (id, v) VALUES (5, 'five')`);
  await waitFor(log, await serverPosition());
  second.capture.stop();
  await second.done;
  const all = log.read('app.t', Position.before(orderKey(l0) as Lsn), 1000);
  const afterResume = all.slice(changes.length);
  assert.deepEqual(afterResume.map(summary), [
    ['truncate', null, null],
    ['insert', ['5', 'five', null, null, null, null, null, '5'], null],
  ]);
  assert.deepEqual(log.relation(afterResume[0].relationVersion).keyIndexes, [0]);
  assert.deepEqual(log.relation(afterResume[0].relationVersion).names, ['id', 'v', 'd', 'ts', 'u', 'b', 'z', 'x']);
  log.close();
});

test('binlog rotation mid-capture (tiny max_binlog_size): every change once, in order across files', async () => {
  await server.query(`CREATE TABLE app.r (id INT PRIMARY KEY, pad VARCHAR(300))`);
  const conn = await server.connect();
  const l0 = await snapshotPosition(conn);
  await conn.end();
  const log = new EmbeddedChangeLog(join(dir, 'rotation.db'), { fsync: false });
  const client = await BinlogClient.open({ url: server.url(), serverId: 402, replicaName: 'capture-rotation', start: l0 });
  const { capture, done } = start(log, client, await tracked('app.r'), []);
  const [before] = (await server.query('SHOW MASTER STATUS')) as { File: string }[];
  await server.query('SET GLOBAL max_binlog_size = 4096');
  try {
    for (let i = 1; i <= 60; i++) await server.query(`INSERT INTO app.r VALUES (${i}, REPEAT('p', 200))`);
  } finally {
    await server.query('SET GLOBAL max_binlog_size = DEFAULT');
  }
  const [after] = (await server.query('SHOW MASTER STATUS')) as { File: string }[];
  assert.ok(after.File > before.File, 'the binlog rotated');
  await waitFor(log, await serverPosition());
  capture.stop();
  await done;
  const got = log.read('app.r', Position.before(orderKey(l0) as Lsn), 1000);
  assert.deepEqual(got.map((c) => Number(c.row![0])), Array.from({ length: 60 }, (_, i) => i + 1));
  const files = new Set(got.map((c) => c.position.lsn >> 32n));
  assert.ok(files.size >= 3, `changes spread over ${files.size} files`);
  log.close();
});

test('capture crashed and resumed again and again under a write load loses and repeats nothing (oracle: a plain SELECT)', async () => {
  await server.query(`CREATE TABLE app.w (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(20))`);
  await server.query(`INSERT INTO app.w VALUES ${Array.from({ length: 50 }, (_, i) => `(${i + 1}, 0, 'seed')`).join(', ')}`);
  // the "backfill": the rows the L0 snapshot sees
  const snapConn = await server.connect();
  const snap = await openSnapshot(snapConn);
  const [seen] = (await snap.conn.query('SELECT id, v, s FROM app.w')) as unknown as [{ id: number; v: number; s: string | null }[]];
  await snap.close();
  await snapConn.end();
  const state = new Map<string, string[]>(seen.map((r) => [String(r.id), [String(r.id), String(r.v), r.s as string]]));

  const file = join(dir, 'crashes.db');
  const tables = await tracked('app.w');
  let log = new EmbeddedChangeLog(file, { fsync: false });
  let running = start(log, await BinlogClient.open({ url: server.url(), serverId: 403, replicaName: 'capture-crash', start: snap.position }), tables, []);

  // a writer: inserts, updates, deletes and key changes, in small transactions
  let stop = false;
  let seed = 7;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
  const writer = (async () => {
    const c = await server.connect();
    let next = 1000;
    while (!stop) {
      const id = 1 + rnd(60);
      const op = rnd(10);
      const sql =
        op < 3 ? `INSERT INTO app.w VALUES (${next++}, ${rnd(100)}, 'ins')`
        : op < 6 ? `UPDATE app.w SET v = v + 1, s = 'upd' WHERE id = ${id}`
        : op < 8 ? `DELETE FROM app.w WHERE id = ${id + 900 + rnd(200)}`
        : `UPDATE app.w SET id = id + 5000 WHERE id = ${id}`;
      await c.query(rnd(4) === 0 ? `BEGIN; ${sql}; INSERT INTO app.w VALUES (${next++}, 1, 'tx'); COMMIT` : sql);
    }
    await c.end();
  })();

  // crash capture (changes buffered since the last flush are lost) and resume from the durable position
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 150 + rnd(200)));
    running.capture.stop();
    await running.done;
    log.close();
    log = new EmbeddedChangeLog(file, { fsync: false });
    // from the durable position, or (every other time) from L0 again: what is already durable is skipped
    const resumeAt = i % 2 === 0 || log.head().endLsn === 0n ? snap.position : filePositionOf(log.head().endLsn, 'binlog');
    running = start(log, await BinlogClient.open({ url: server.url(), serverId: 403, replicaName: 'capture-crash', start: resumeAt }), tables, []);
  }
  stop = true;
  await writer;
  await waitFor(log, await serverPosition());
  running.capture.stop();
  await running.done;

  // replay the log over the snapshot rows, as the Applier would, and compare with the source
  const changes = log.read('app.w', Position.before(orderKey(snap.position) as Lsn), 1_000_000);
  for (const ch of changes) {
    if (ch.oldKey) state.delete(ch.oldKey[0] as string);
    if (ch.kind === 'insert' || ch.kind === 'update') state.set(ch.row![0] as string, ch.row as string[]);
  }
  const [rows] = (await (await server.connect()).query('SELECT id, v, s FROM app.w ORDER BY id')) as unknown as [{ id: number; v: number; s: string }[]];
  const expected = rows.map((r) => [String(r.id), String(r.v), r.s]);
  const got = [...state.values()].sort((a, b) => Number(a[0]) - Number(b[0]));
  assert.ok(changes.length > 100, `a real load (${changes.length} changes)`);
  assert.deepEqual(got, expected);
  // exactly once: no position twice
  const positions = changes.map((c) => `${c.position.lsn}#${c.position.idx}`);
  assert.equal(new Set(positions).size, positions.length);
  log.close();
});

test('an XA transaction on a tracked table stops capture with a message, instead of logging changes that may roll back', { timeout: 30_000 }, async () => {
  await server.query(`CREATE TABLE app.xa (id INT PRIMARY KEY)`);
  const conn = await server.connect();
  const l0 = await snapshotPosition(conn);
  const log = new EmbeddedChangeLog(join(dir, 'xa.db'), { fsync: false });
  const { done } = start(log, await BinlogClient.open({ url: server.url(), serverId: 404, replicaName: 'capture-xa', start: l0 }), await tracked('app.xa'), []);
  const failed = done.then(
    () => null,
    (err: Error & { code?: string }) => err,
  );
  await conn.query(`XA START 'x1'; INSERT INTO app.xa VALUES (1); XA END 'x1'; XA PREPARE 'x1'; XA ROLLBACK 'x1'`);
  await conn.end();
  const err = await failed;
  assert.equal(err?.code, 'UNSUPPORTED_MODE');
  assert.match(err.message, /XA transaction changed app\.xa/);
  assert.equal(log.read('app.xa', Position.start, 10).length, 0);
  log.close();
});
