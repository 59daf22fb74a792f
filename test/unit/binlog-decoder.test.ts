/**
 * The binlog decoder on bytes captured from a real MariaDB 10.11 (test/fixtures/binlog/scenario.bin,
 * made by test/support/capture-binlog-fixtures.ts from test/support/binlog-scenario.ts). Expected
 * values are the scenario's literals, written out by hand.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BinlogEvent } from '../../src/sources/mysql/binlog-events.js';
import { BinlogDecoder, splitBinlogFile } from '../../src/sources/mysql/binlog-decoder.js';
import { crc32 } from '../../src/sources/mysql/checksum.js';
import { TYPES_COLUMNS } from '../support/binlog-scenario.js';

const fixture = readFileSync(fileURLToPath(new URL('../../../test/fixtures/binlog/scenario.bin', import.meta.url)));
const raw = splitBinlogFile(fixture);

function decodeAll(events = raw): BinlogEvent[] {
  const d = new BinlogDecoder();
  return events.map((e) => d.decode(e));
}

const events = decodeAll();
type Rows = Extract<BinlogEvent, { kind: 'rows' }>;
const rowsOf = (table: string): Rows[] => events.filter((e): e is Rows => e.kind === 'rows' && e.map.table === table);
const named = (values: readonly unknown[]) => Object.fromEntries(TYPES_COLUMNS.map((c, i) => [c, values[i]]));

test('the whole captured file decodes, in the order MariaDB writes a file', () => {
  const kinds = events.map((e) => e.kind);
  assert.deepEqual(kinds.slice(0, 3), ['format-description', 'gtid-list', 'binlog-checkpoint']);
  assert.equal(kinds.at(-1), 'rotate');
  const fde = events[0] as Extract<BinlogEvent, { kind: 'format-description' }>;
  assert.equal(fde.checksum, true);
  assert.match(fde.serverVersion, /^10\.11\..*MariaDB/);
  const rotate = events.at(-1) as Extract<BinlogEvent, { kind: 'rotate' }>;
  assert.equal(rotate.position, 4n);
  assert.match(rotate.file, /^binlog\.\d{6}$/);
});

test('GTIDs: DDL is a standalone group, DML a transaction that ends with an XID', () => {
  const gtids = events.filter((e): e is Extract<BinlogEvent, { kind: 'gtid' }> => e.kind === 'gtid');
  assert.deepEqual(
    gtids.map((g) => `${g.gtid.domain}-${g.gtid.server}-${g.gtid.seq}`),
    ['0-7-1', '0-7-2', '0-7-3', '0-7-4', '0-7-5', '0-7-6', '0-7-7', '0-7-8', '0-7-9', '0-7-10', '0-7-11'],
  );
  assert.equal(gtids[0].standalone, true); // CREATE DATABASE
  assert.equal(gtids[2].standalone, false); // INSERT
  const i = events.indexOf(gtids[2]);
  assert.deepEqual(
    events.slice(i, i + 5).map((e) => e.kind),
    ['gtid', 'annotate-rows', 'table-map', 'rows', 'xid'],
  );
});

test('QUERY events carry DDL and TRUNCATE; ANNOTATE_ROWS the statement of the rows', () => {
  const queries = events.filter((e): e is Extract<BinlogEvent, { kind: 'query' }> => e.kind === 'query').map((q) => q.sql);
  assert.ok(queries.includes('CREATE DATABASE app'));
  assert.ok(queries.includes('ALTER TABLE app.small ADD COLUMN extra INT NOT NULL DEFAULT 7'));
  assert.ok(queries.includes('TRUNCATE TABLE app.small'));
  const annotations = events.filter((e) => e.kind === 'annotate-rows').map((e) => (e as { sql: string }).sql);
  assert.ok(annotations.includes('DELETE FROM app.types WHERE id = 3'));
});

test('TABLE_MAP carries the full row metadata: names, signedness, charsets, ENUM/SET labels, primary key', () => {
  const map = events.find((e): e is Extract<BinlogEvent, { kind: 'table-map' }> => e.kind === 'table-map' && e.map.table === 'types')!.map;
  assert.equal(map.database, 'app');
  assert.equal(map.fullMetadata, true);
  assert.deepEqual(map.columns.map((c) => c.name), [...TYPES_COLUMNS]);
  assert.deepEqual(map.primaryKey, [0]);
  const col = (n: string) => map.columns.find((c) => c.name === n)!;
  assert.equal(col('id').unsigned, true);
  assert.equal(col('ti').unsigned, false);
  assert.equal(col('bu').unsigned, true);
  assert.equal(col('id').nullable, false);
  assert.equal(col('vc').charset, 'utf8mb4');
  assert.equal(col('vl').charset, 'latin1');
  assert.equal(col('bn').charset, 'binary');
  assert.deepEqual(col('e').labels, ['a', 'b', 'c']);
  assert.deepEqual(col('st').labels, ['x', 'y', 'z']);
  assert.deepEqual([col('d').precision, col('d').scale], [65, 30]);
});

test('every type of the first row decodes to its exact value', () => {
  const v = named(rowsOf('types')[0].rows[0].after!);
  assert.deepEqual(v, {
    id: 1n,
    ti: -128, tiu: 255, si: -32768, siu: 65535, mi: -8388608, miu: 16777215, i: -2147483648, iu: 4294967295,
    bi: -9223372036854775808n, bu: 18446744073709551615n,
    d: '-12345678901234567890123456789012345.123456789012345678901234567890', d2: '-12.34', f: 1.5, db: -2.25e-300,
    c: 'chär', vc: 'héllo wörld 😀', t: 'a long text', vl: 'café', tl: 'naïve',
    bn: Buffer.from('00ff0102', 'hex'), vb: Buffer.from('deadbeef', 'hex'), bl: Buffer.from('0001', 'hex'), lb: Buffer.from('x'.repeat(300)),
    dt: '2024-02-29', tm: '-838:59:59', tm6: '-00:00:01.500000', dtt: '9999-12-31 23:59:59', dtt6: '2024-01-02 03:04:05.123456',
    ts: '2038-01-19 03:14:07.999999', y: 2155,
    bt: '1000000001', e: 'b', st: 'x,z', j: '{"k": [1, 2.5, "v"]}',
    // UUID, INET6 and INET4 are fixed binary strings in the binlog: their text comes from the table's type
    u: Buffer.from('123e4567e89b12d3a456426614174000', 'hex'), ip: Buffer.from('20010db8000000000000000000000001', 'hex'), ip4: Buffer.from('c0a80001', 'hex'),
  });
});

test('edge values: zero dates, BIGINT UNSIGNED past 2^63, BINARY padding, empty strings, the zero year', () => {
  const v = named(rowsOf('types')[1].rows[0].after!);
  assert.equal(v.bu, 9223372036854775808n);
  assert.equal(v.bi, 9223372036854775807n);
  assert.equal(v.d, '0.000000000000000000000000000001');
  assert.equal(v.d2, '99999999.99');
  assert.equal(v.dt, '0000-00-00');
  assert.equal(v.dtt, '0000-00-00 00:00:00');
  assert.equal(v.dtt6, '1000-01-01 00:00:00.000001');
  assert.equal(v.tm6, '838:59:59.000001');
  assert.equal(v.ts, '1970-01-01 00:00:01.000000');
  assert.equal(v.y, 0);
  assert.equal(v.bt, '0000000000');
  assert.deepEqual(v.bn, Buffer.alloc(4)); // logged without its trailing zeros, padded back
  assert.deepEqual([v.c, v.vc, v.vl, v.e, v.st, v.j], ['', '', '', '', '', 'null']);
  assert.deepEqual(v.vb, Buffer.alloc(0));
});

test('NULLs, updates with both images, deletes with the before image', () => {
  const [, , ins3, upd, del] = rowsOf('types');
  assert.deepEqual(ins3.rows[0].after!.slice(1), new Array(TYPES_COLUMNS.length - 1).fill(null));
  assert.equal(upd.rowsKind, 'update');
  const before = named(upd.rows[0].before!);
  const after = named(upd.rows[0].after!);
  assert.deepEqual([before.vc, before.bu], ['héllo wörld 😀', 18446744073709551615n]);
  assert.deepEqual([after.vc, after.bu], ['updated', 1n]);
  assert.equal(del.rowsKind, 'delete');
  assert.equal(del.rows[0].before![0], 3n);
  assert.equal(del.rows[0].after, undefined);
});

test('row events decode with the TABLE_MAP of their own time (before and after ADD COLUMN)', () => {
  const [first, second] = rowsOf('small');
  assert.deepEqual(first.rows.map((r) => r.after), [[1, 'one'], [2, 'two']]);
  assert.deepEqual(first.map.columns.map((c) => c.name), ['id', 'v']);
  assert.deepEqual(second.rows.map((r) => r.after), [[3, 'three', 8]]);
  assert.deepEqual(second.map.columns.map((c) => c.name), ['id', 'v', 'extra']);
  assert.notEqual(first.map.tableId, second.map.tableId);
});

/** A copy of an event with its type byte and body changed, and a fresh CRC32. */
function rebuild(event: Buffer, type: number, body: Buffer): Buffer {
  const out = Buffer.concat([event.subarray(0, 19), body, Buffer.alloc(4)]);
  out[4] = type;
  out.writeUInt32LE(out.length, 9);
  out.writeUInt32LE(crc32(out, 0, out.length - 4), out.length - 4);
  return out;
}

test('rows v2 (MySQL 8) decode like v1: the extra-data block is skipped', () => {
  const i = raw.findIndex((_, k) => events[k].kind === 'rows' && (events[k] as Rows).map.table === 'small');
  const v1 = raw[i];
  const body = v1.subarray(19, v1.length - 4);
  // v2 post-header: table id (6), flags (2), extra-data length (2, counting itself) + extra data
  const v2body = Buffer.concat([body.subarray(0, 8), Buffer.from([4, 0, 0xaa, 0xbb]), body.subarray(8)]);
  const d = new BinlogDecoder();
  const out = raw.slice(0, i).map((e) => d.decode(e));
  assert.equal(out.at(-1)!.kind, 'table-map');
  const e = d.decode(rebuild(v1, 30, v2body)) as Rows;
  assert.equal(e.version, 2);
  assert.equal(e.rowsKind, 'insert');
  assert.deepEqual(e.rows.map((r) => r.after), [[1, 'one'], [2, 'two']]);
});

test('a corrupt byte fails the CRC32 check instead of decoding garbage', () => {
  const i = raw.findIndex((_, k) => events[k].kind === 'rows');
  const bad = Buffer.from(raw[i]);
  bad[40] ^= 0x01;
  const d = new BinlogDecoder();
  raw.slice(0, i).forEach((e) => d.decode(e));
  assert.throws(() => d.decode(bad), /failed its CRC32 check/);
});

test('compressed events are refused with the fix', () => {
  const d = new BinlogDecoder();
  d.decode(raw[0]);
  const xid = raw[events.findIndex((e) => e.kind === 'xid')];
  assert.throws(() => d.decode(rebuild(xid, 166, Buffer.alloc(8))), /log_bin_compress=OFF/);
});

test('a replica stream (stream.bin): the made-up ROTATE first, a GTID start, and a HEARTBEAT at the idle position', () => {
  const bytes = readFileSync(fileURLToPath(new URL('../../../test/fixtures/binlog/stream.bin', import.meta.url)));
  const d = new BinlogDecoder();
  const got: BinlogEvent[] = [];
  for (let p = 0; p < bytes.length; ) {
    const n = bytes.readUInt32LE(p);
    got.push(d.decode(bytes.subarray(p + 4, p + 4 + n)));
    p += 4 + n;
  }
  assert.deepEqual(got.map((e) => e.kind), ['rotate', 'format-description', 'gtid-list', 'binlog-checkpoint', 'gtid', 'annotate-rows', 'table-map', 'rows', 'xid', 'heartbeat']);
  const [rotate, , list] = got;
  // the server's own ROTATE: no position in the file, no time
  assert.equal(rotate.header.logPos, 0);
  assert.equal(rotate.header.timestamp, 0);
  assert.ok(list.kind === 'gtid-list' && list.gtids.length === 1 && list.gtids[0].seq === 11n);
  const rows = got[7];
  assert.ok(rows.kind === 'rows');
  assert.deepEqual([rows.rows[0].after![0], rows.rows[0].after![TYPES_COLUMNS.indexOf('vc')]], [42n, 'streamed']);
  const [xid, hb] = got.slice(8);
  assert.ok(hb.kind === 'heartbeat' && rotate.kind === 'rotate');
  assert.equal(hb.file, rotate.file);
  assert.equal(hb.header.logPos, xid.header.logPos, 'a heartbeat carries the position the binlog is at');
});
