import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  compareFilePositions,
  formatBinlogPosition,
  GtidPosition,
  orderKey,
  parseBinlogPosition,
} from '../../src/sources/mysql/binlog-position.js';

test('GTID positions parse, print sorted by domain, and overwrite a domain on each commit', () => {
  const p = GtidPosition.parse('1-3-7, 0-1-42');
  assert.equal(p.toString(), '0-1-42,1-3-7');
  // a commit replaces its domain's entry, even with a lower seq from another server (failover)
  assert.equal(p.with({ domain: 0, server: 2, seq: 5n }).toString(), '0-2-5,1-3-7');
  assert.equal(GtidPosition.parse('').isEmpty, true);
  assert.throws(() => GtidPosition.parse('0-1'), /domain-server-seq/);
  assert.throws(() => GtidPosition.parse('0-1-2,0-1-3'), /twice/);
});

test('contains: every domain at or past the other position', () => {
  const a = GtidPosition.parse('0-1-10,1-1-5');
  assert.equal(a.contains(GtidPosition.parse('0-1-10')), true);
  assert.equal(a.contains(GtidPosition.parse('0-1-11')), false);
  assert.equal(a.contains(GtidPosition.parse('2-1-1')), false);
  assert.equal(a.contains(GtidPosition.empty), true);
});

test('file:pos orders commits across files (the change log order key)', () => {
  const a = { file: 'binlog.000009', pos: 4_000_000_000 };
  const b = { file: 'binlog.000010', pos: 4 };
  assert.ok(orderKey(a) < orderKey(b));
  assert.equal(compareFilePositions(b, a), 1);
  assert.equal(orderKey({ file: 'binlog.000001', pos: 256 }), (1n << 32n) | 256n);
  assert.throws(() => orderKey({ file: 'binlog', pos: 4 }), /binlog file name/);
});

test('a binlog position round-trips through its text form', () => {
  const text = 'binlog.000002:7492@0-7-11,3-1-2';
  const p = parseBinlogPosition(text);
  assert.equal(p.file, 'binlog.000002');
  assert.equal(p.pos, 7492);
  assert.equal(formatBinlogPosition(p), text);
  assert.equal(formatBinlogPosition(parseBinlogPosition('mysql-bin.000001:4')), 'mysql-bin.000001:4');
});

test('an order key gives back its file:pos', async () => {
  const { filePositionOf } = await import('../../src/sources/mysql/binlog-position.js');
  assert.deepEqual(filePositionOf(orderKey({ file: 'binlog.000042', pos: 1234 }), 'binlog'), { file: 'binlog.000042', pos: 1234 });
});
