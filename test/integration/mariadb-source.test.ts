/**
 * The MariaDB source port against a private server: introspection, backfill option checks, chunk
 * reads, decoded binlog values equal to a plain SELECT of the same rows (every type), and the
 * preflight's refusals (exit-2 errors whose message names the fix).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { SluiceError } from '../../src/core/errors.js';
import { TableName } from '../../src/core/types.js';
import { BinlogClient } from '../../src/sources/mysql/binlog-client.js';
import { GtidPosition } from '../../src/sources/mysql/binlog-position.js';
import { readIntervalChunk, readKeysetChunk, integerKeyRange } from '../../src/sources/mysql/chunk-reader.js';
import { connectSource } from '../../src/sources/mysql/connection.js';
import { MysqlSource } from '../../src/sources/mysql/driver.js';
import { checkResumable } from '../../src/sources/mysql/preflight.js';
import type { RowValue } from '../../src/sources/mysql/row-values.js';
import type { SourceInspection } from '../../src/sources/source.js';
import { SCENARIO, TYPES_COLUMNS } from '../support/binlog-scenario.js';
import { startMariaDb, type MariaDbServer } from '../support/mariadb.js';

let server: MariaDbServer;
let startGtid: GtidPosition;
const types = TableName.parse('app.types');
const multi = TableName.parse('app.multi');

before(async () => {
  server = await startMariaDb({ serverId: 1 });
  const [{ p }] = (await server.query('SELECT @@gtid_binlog_pos AS p')) as { p: string }[];
  startGtid = GtidPosition.parse(p);
  const c = await server.connect();
  // the scenario's types table and its first three rows
  for (const sql of SCENARIO.slice(0, 7)) await c.query(sql);
  await c.query(`CREATE TABLE app.multi (a INT NOT NULL, b VARCHAR(10) NOT NULL, v INT, PRIMARY KEY (a, b))`);
  await c.query(`INSERT INTO app.multi VALUES (1,'a',1),(1,'b',2),(1,'c',3),(2,'a',4),(2,'b',5),(3,'a',6),(3,'z',7)`);
  await c.query(`CREATE TABLE app.nopk (v INT)`);
  await c.query(`CREATE TABLE app.comp (id INT PRIMARY KEY, doc TEXT COMPRESSED)`);
  await c.end();
});

after(async () => {
  await server?.destroy();
});

async function inspect(url = server.url(), serverId = 300): Promise<SourceInspection> {
  return new MysqlSource({ url, serverId, replicaName: 'sluice-source-test' }).openInspection('sluice-test');
}

async function refusal(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: SluiceError) => {
    assert.equal(err.code, code, err.message);
    assert.equal(err.isUsageError, true, 'exit 2');
    assert.match(err.message, message);
    return true;
  });
}

test('describeTable: columns in MariaDB spelling, primary key, generated columns left out of the copy', async () => {
  const i = await inspect();
  try {
    const info = await i.describeTable(types);
    assert.deepEqual(info.columns.map((c) => c.name), [...TYPES_COLUMNS]);
    assert.deepEqual(info.primaryKey, ['id']);
    const col = (n: string) => info.columns.find((c) => c.name === n)!;
    assert.match(col('id').typeSql, /^bigint(\(20\))? unsigned$/);
    assert.equal(col('id').notNull, true);
    assert.equal(col('d').typeSql, 'decimal(65,30)');
    assert.equal(col('e').typeSql, "enum('a','b','c')");
    assert.equal(col('vl').collation?.locale, 'latin1');
    assert.equal(col('u').typeSql, 'uuid');
    await refusal(i.describeTable(TableName.parse('app.nothere')), 'TABLE_NOT_FOUND', /does not exist/);
  } finally {
    await i.close();
  }
});

test('checkBackfillOptions: keyset is serial, interval needs one integer key, ctid is PostgreSQL only, scopes are checked', async () => {
  const i = await inspect();
  const o = { mode: 'online', strategy: 'keyset', parallelism: 1, where: '' };
  const label = (k: string) => `tables[0].${k}`;
  try {
    const info = await i.describeTable(multi);
    await i.checkBackfillOptions(info, o, label);
    await refusal(i.checkBackfillOptions(info, { ...o, parallelism: 2 }, label), 'BAD_USAGE', /^tables\[0\]\.parallelism: keyset/);
    await refusal(i.checkBackfillOptions(info, { ...o, strategy: 'interval' }, label), 'BAD_USAGE', /interval needs a single integer primary key/);
    await refusal(i.checkBackfillOptions(info, { ...o, strategy: 'ctid' }, label), 'BAD_USAGE', /ctid reads PostgreSQL heap pages/);
    await i.checkBackfillOptions(await i.describeTable(types), { ...o, strategy: 'interval', parallelism: 4 }, label);
    await refusal(i.checkBackfillOptions(info, { ...o, mode: 'upsert', where: 'nonsense >' }, label), 'BAD_USAGE', /not a valid condition/);
    await i.checkBackfillOptions(info, { ...o, mode: 'upsert', where: 'a > 1' }, label);
  } finally {
    await i.close();
  }
});

test('chunk reads: keyset over a composite key, interval over an integer key, plain SELECTs', async () => {
  const conn = await connectSource(server.url(), 'sluice-test');
  const i = await inspect();
  try {
    const info = await i.describeTable(multi);
    const all: unknown[][] = [];
    let last: (string | number | Buffer | null)[] | null = null;
    for (;;) {
      const rows = await readKeysetChunk(conn, info, ['a', 'b', 'v'], last, 3);
      if (rows.length === 0) break;
      all.push(...rows);
      last = rows.at(-1)!.slice(0, 2);
    }
    const [expected] = (await conn.query({ sql: 'SELECT a, b, v FROM app.multi ORDER BY a, b', rowsAsArray: true })) as unknown as [unknown[][]];
    assert.deepEqual(all, expected);
    const tinfo = await i.describeTable(types);
    assert.deepEqual(await integerKeyRange(conn, tinfo), { min: 1n, max: 3n });
    const chunk = await readIntervalChunk(conn, tinfo, ['id'], 2n, 4n);
    assert.deepEqual(chunk.map((r) => String(r[0])), ['2', '3']);
  } finally {
    await i.close();
    await conn.end();
  }
});

/** A value as mysql2's SELECT gives it (connection.ts settings), in the decoder's words. */
function selected(v: unknown, typeSql: string): unknown {
  if (v === null) return null;
  if (/^bit/.test(typeSql)) {
    const bits = [...(v as Buffer)].map((b) => b.toString(2).padStart(8, '0')).join('');
    return bits.slice(bits.length - Number(/\((\d+)\)/.exec(typeSql)![1]));
  }
  if (/^(uuid|inet6|inet4)/.test(typeSql)) return String(v);
  if (/^(tinyint|smallint|mediumint|int|year)/.test(typeSql)) return Number(v);
  if (/^bigint/.test(typeSql)) return BigInt(v as string);
  if (/^(float|double)/.test(typeSql)) return Number(v);
  return v;
}

/** A decoded binlog value, with UUID/INET given their text by the column's type (as capture will). */
function decoded(v: RowValue | undefined, typeSql: string): unknown {
  if (v === null || v === undefined) return v;
  if (/^float/.test(typeSql)) return Math.fround(Number(v)) === v ? Number(v.toPrecision(7)) : v;
  if (Buffer.isBuffer(v) && /^uuid/.test(typeSql)) {
    const h = v.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  if (Buffer.isBuffer(v) && /^inet4/.test(typeSql)) return [...v].join('.');
  return v;
}

test('decoded binlog rows equal a plain SELECT of the same rows, for every type', async () => {
  const i = await inspect();
  const info = await i.describeTable(types);
  await i.close();
  const conn = await connectSource(server.url(), 'sluice-test');
  const [rows] = (await conn.query({ sql: `SELECT ${TYPES_COLUMNS.map((c) => `\`${c}\``).join(', ')} FROM app.types ORDER BY id`, rowsAsArray: true })) as unknown as [unknown[][]];
  await conn.end();
  const client = await BinlogClient.open({ url: server.url(), serverId: 301, replicaName: 'sluice-source-test-rt', start: { gtid: startGtid } });
  const got: (readonly (RowValue | undefined)[])[] = [];
  try {
    while (got.length < rows.length) {
      const { event } = await client.next();
      if (event.kind === 'rows' && event.map.table === 'types') got.push(...event.rows.map((r) => r.after!));
    }
  } finally {
    client.close();
  }
  for (let r = 0; r < rows.length; r++) {
    for (let c = 0; c < TYPES_COLUMNS.length; c++) {
      const typeSql = info.columns[c].typeSql;
      if (/^inet6/.test(typeSql)) continue; // compared below: the server prints the shortest form
      assert.deepEqual(decoded(got[r][c], typeSql), selected(rows[r][c], typeSql), `row ${r + 1} column ${TYPES_COLUMNS[c]} (${typeSql})`);
    }
  }
  assert.deepEqual(got[0][TYPES_COLUMNS.indexOf('ip')], Buffer.from('20010db8000000000000000000000001', 'hex'));
  assert.equal(rows[0][TYPES_COLUMNS.indexOf('ip')], '2001:db8::1');
});

test('lookups: current rows by composite key, as text; keys the source no longer has are left out', async () => {
  const source = new MysqlSource({ url: server.url(), serverId: 300, replicaName: 'sluice-source-test' });
  const lookups = source.openLookups('sluice-test');
  try {
    const info = await lookups.describeTable(multi);
    const rows = await lookups.rowsByKey(multi, info, [['1', '2', '9'], ['b', 'a', 'q']], ['v']);
    assert.deepEqual(rows.sort(), [['1', 'b', '2'], ['2', 'a', '4']]);
    assert.equal(lookups.isBuiltinType(3), true);
    assert.deepEqual(await lookups.typeNames([[3, -1], [246, -1]]), ['long', 'newdecimal']);
  } finally {
    await lookups.close();
  }
  const err = source.classifyError('reading', Object.assign(new Error('Connection lost: The server closed the connection.'), { code: 'PROTOCOL_CONNECTION_LOST' }));
  assert.equal(err.code, 'SOURCE_UNREACHABLE');
  assert.equal(source.isConnectionLoss(err), true);
});

test('edge layouts decode like a SELECT: long CHAR, big ENUM and SET, BIT(64), DECIMAL shapes, TIME/DATETIME fractions', async () => {
  const labels = Array.from({ length: 300 }, (_, i) => `'v${i}'`).join(',');
  const members = Array.from({ length: 10 }, (_, i) => `'m${i}'`).join(',');
  const columns = [
    'id INT PRIMARY KEY', 'c CHAR(100)', `e ENUM(${labels})`, `s SET(${members})`, 'b64 BIT(64)', 'b1 BIT(1)',
    'd1 DECIMAL(10,0)', 'd2 DECIMAL(5,5)', 'd3 DECIMAL(18,9)', 'd4 DECIMAL(30,2) UNSIGNED',
    't1 TIME(1)', 't2 TIME(2)', 't4 TIME(4)', 'dt3 DATETIME(3)', 'ts1 TIMESTAMP(1) NULL',
    'tt TINYTEXT', 'mt MEDIUMTEXT', 'tb TINYBLOB', 'mb MEDIUMBLOB', 'bn BINARY(20)', 'vc VARCHAR(300)', 'f FLOAT',
  ];
  await server.query(`CREATE TABLE app.edges (${columns.join(', ')}) DEFAULT CHARSET=utf8mb4`);
  const [{ p }] = (await server.query('SELECT @@gtid_binlog_pos AS p')) as { p: string }[];
  await server.query(`SET time_zone = '+00:00';
    INSERT INTO app.edges VALUES
      (1, REPEAT('é', 100), 'v299', 'm0,m9', b'1111111111111111111111111111111111111111111111111111111111111111', b'1',
       -1234567890, -0.12345, -123456789.123456789, 1234567890123456789012345678.99,
       '-00:00:00.1', '-12:34:56.78', '-00:00:00.0001', '2024-02-29 23:59:59.999', '2001-02-03 04:05:06.7',
       REPEAT('t', 255), REPEAT('ü', 70000), X'01', REPEAT(X'AB', 70000), X'0102', REPEAT('ж', 300), -3.25),
      (2, 'x', 'v0', 'm5', b'0', b'0', 0, 0, 0, 0, '838:59:59.9', '-838:59:59.99', '00:00:00.0001', '1000-01-01 00:00:00.001', NULL,
       '', '', X'', X'', X'FF', '', 0)`);
  const conn = await connectSource(server.url(), 'sluice-test');
  const [rows] = (await conn.query({ sql: 'SELECT * FROM app.edges ORDER BY id', rowsAsArray: true })) as unknown as [unknown[][]];
  await conn.end();
  const i = await inspect();
  const info = await i.describeTable(TableName.parse('app.edges'));
  await i.close();
  const client = await BinlogClient.open({ url: server.url(), serverId: 302, replicaName: 'sluice-source-test-edges', start: { gtid: GtidPosition.parse(p) } });
  const got: (readonly (RowValue | undefined)[])[] = [];
  try {
    while (got.length < rows.length) {
      const { event } = await client.next();
      if (event.kind === 'rows' && event.map.table === 'edges') got.push(...event.rows.map((r) => r.after!));
    }
  } finally {
    client.close();
  }
  for (let r = 0; r < rows.length; r++) {
    for (let c = 0; c < info.columns.length; c++) {
      const typeSql = info.columns[c].typeSql;
      assert.deepEqual(decoded(got[r][c], typeSql), selected(rows[r][c], typeSql), `row ${r + 1} column ${info.columns[c].name} (${typeSql})`);
    }
  }
});

test('preflight passes on a well set-up server and refuses each bad setting with its fix', async () => {
  const i = await inspect();
  try {
    await i.checkCapture!([types, multi]);
    const bad: [string, string, RegExp][] = [
      ['binlog_format', "'STATEMENT'", /binlog_format is STATEMENT, not ROW.*binlog_format=ROW/],
      ['binlog_row_image', "'MINIMAL'", /binlog_row_image is MINIMAL, not FULL.*binlog_row_image=FULL/],
      ['binlog_row_metadata', "'MINIMAL'", /binlog_row_metadata is MINIMAL, not FULL.*binlog_row_metadata=FULL/],
      ['log_bin_compress', 'ON', /compression is on.*log_bin_compress=OFF/],
    ];
    for (const [name, value, message] of bad) {
      const [[before]] = [(await server.query(`SELECT @@global.${name} AS v`)) as { v: string }[]];
      await server.query(`SET GLOBAL ${name} = ${value}`);
      try {
        await refusal(i.checkCapture!([types]), 'WAL_LEVEL_NOT_LOGICAL', message);
      } finally {
        await server.query(`SET GLOBAL ${name} = ?`, [before.v === '0' ? 'OFF' : before.v === '1' ? 'ON' : before.v]);
      }
    }
    await refusal(i.checkCapture!([TableName.parse('app.nopk')]), 'NO_PRIMARY_KEY', /has no primary key.*ADD PRIMARY KEY/);
    await refusal(i.checkCapture!([TableName.parse('app.comp')]), 'UNSUPPORTED_TYPE', /COMPRESSED columns \(doc\)/);
  } finally {
    await i.close();
  }
  const own = await inspect(server.url(), 1);
  try {
    await refusal(own.checkCapture!([types]), 'SLOT_IN_USE', /source server's own server_id/);
  } finally {
    await own.close();
  }
});

test('preflight names the missing grant', async () => {
  await server.query(`
    CREATE USER 'sel'@'127.0.0.1'; GRANT SELECT ON *.* TO 'sel'@'127.0.0.1';
    CREATE USER 'repl'@'127.0.0.1'; GRANT SELECT, REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';
    CREATE USER 'part'@'127.0.0.1'; GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'part'@'127.0.0.1';
    GRANT SELECT ON app.types TO 'part'@'127.0.0.1'`);
  const cases: [string, string, RegExp, TableName][] = [
    ['sel', 'MISSING_REPLICATION_PRIVILEGE', /lacks REPLICATION SLAVE.*GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON \*\.\*/, types],
    ['repl', 'MISSING_REPLICATION_PRIVILEGE', /lacks BINLOG MONITOR/, types],
    ['part', 'MISSING_PRIVILEGE', /may not read app\.multi: GRANT SELECT ON `app`\.`multi`/, multi],
  ];
  for (const [user, code, message, table] of cases) {
    const i = await inspect(server.url('', user));
    try {
      await refusal(i.checkCapture!([table]), code, message);
    } finally {
      await i.close();
    }
  }
});

test('a resume position the server has purged is SLOT_LOST before capture starts', async () => {
  const [{ p }] = (await server.query('SELECT @@gtid_binlog_pos AS p')) as { p: string }[];
  const conn = await connectSource(server.url(), 'sluice-test');
  try {
    await checkResumable(conn, GtidPosition.parse(p));
    await server.query(`INSERT INTO app.multi VALUES (9, 'x', 9)`);
    for (let i = 0; ; i++) {
      await server.query('FLUSH BINARY LOGS');
      const [status] = (await server.query('SHOW MASTER STATUS')) as { File: string }[];
      await server.query(`PURGE BINARY LOGS TO '${status.File}'`);
      if (((await server.query('SHOW BINARY LOGS')) as unknown[]).length === 1) break;
      assert.ok(i < 50, 'binlogs could not be purged');
      await new Promise((r) => setTimeout(r, 100));
    }
    await refusal(checkResumable(conn, GtidPosition.parse(p)), 'SLOT_LOST', /was purged.*onSlotLost: rebackfill/);
  } finally {
    await conn.end();
  }
});

test('preflight refuses a server with the binlog off', async () => {
  const off = await startMariaDb({ serverId: 2, binlog: false });
  try {
    const i = await inspect(off.url());
    try {
      await refusal(i.checkCapture!([]), 'WAL_LEVEL_NOT_LOGICAL', /the binlog is off \(log_bin=OFF\).*log_bin/);
    } finally {
      await i.close();
    }
  } finally {
    await off.destroy();
  }
});
