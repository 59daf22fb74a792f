import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { EmbeddedChangeLog } from '../../src/changelog/embedded/embedded-change-log.js';
import { Lsn, Position } from '../../src/core/types.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-log-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const cols = { names: ['id', 'v'], typeOids: [20, 25], keyIndexes: [0] };

test('only flushed, committed transactions are readable, and they survive a reopen', () => {
  const file = join(dir, 'a.db');
  const log = new EmbeddedChangeLog(file);
  const v = log.relationVersion('public.t', cols);
  log.append({ table: 'public.t', lsn: Lsn.of(100), idx: 0, kind: 'insert', relationVersion: v, row: ['1', 'a\tb'], commitTimeMs: 5 });
  log.commit(Lsn.of(100), Lsn.of(108), 5);
  assert.equal(log.read('public.t', Position.start, 10).length, 0, 'not durable before flush');
  log.flush();
  // A transaction in progress: appended and even flushed, but never committed.
  log.append({ table: 'public.t', lsn: Lsn.of(200), idx: 0, kind: 'update', relationVersion: v, row: ['1', false], commitTimeMs: 6 });
  log.flush();
  const got = log.read('public.t', Position.start, 10);
  assert.deepEqual(got.map((c) => [c.kind, c.row]), [['insert', ['1', 'a\tb']]]);
  log.close();

  const again = new EmbeddedChangeLog(file);
  assert.equal(again.head().endLsn, Lsn.of(108));
  assert.equal(again.read('public.t', Position.start, 10).length, 1, 'the uncommitted transaction is gone');
  assert.deepEqual(again.relation(v), cols);
  assert.equal(again.relationVersion('public.t', cols), v, 'same column set, same version');
  again.close();
});

test('reads start after a cursor, per table, in position order; purge drops what was applied', () => {
  const log = new EmbeddedChangeLog(join(dir, 'b.db'));
  const v = log.relationVersion('public.t', cols);
  for (let l = 1; l <= 3; l++) {
    for (let i = 0; i < 2; i++) {
      log.append({ table: 'public.t', lsn: Lsn.of(l * 10), idx: i, kind: 'insert', relationVersion: v, row: [`${l}${i}`, null], commitTimeMs: l });
    }
    log.append({ table: 'public.u', lsn: Lsn.of(l * 10), idx: 2, kind: 'truncate', relationVersion: v, commitTimeMs: l });
    log.commit(Lsn.of(l * 10), Lsn.of(l * 10 + 1), l);
  }
  log.flush();
  const after = log.read('public.t', { lsn: Lsn.of(10), idx: 1 }, 100);
  assert.deepEqual(after.map((c) => Position.format(c.position)), ['0/14#0', '0/14#1', '0/1E#0', '0/1E#1']);
  assert.equal(log.read('public.t', Position.before(Lsn.of(30)), 100).length, 2);
  assert.equal(log.purge('public.t', { lsn: Lsn.of(20), idx: 1 }), 4);
  assert.equal(log.count('public.t', Position.start), 2);
  assert.equal(log.count('public.u', Position.start), 3);
  log.close();
});

test('a large transaction reads in batches from any position, up to a bound, and purges up to a position; interleaved tables stay apart', () => {
  const log = new EmbeddedChangeLog(join(dir, 'c.db'));
  const v = log.relationVersion('public.t', cols);
  // 2,500 changes to public.t interleaved with 500 to public.u in one transaction (idx 0..2999).
  for (let i = 0; i < 3000; i++) {
    const table = i % 6 === 5 ? 'public.u' : 'public.t';
    log.append({ table, lsn: Lsn.of(1000), idx: i, kind: 'insert', relationVersion: v, row: [String(i), null], commitTimeMs: 9 });
  }
  log.commit(Lsn.of(1000), Lsn.of(1001), 9);
  log.flush();
  const all: number[] = [];
  let at = Position.start;
  for (;;) {
    const batch = log.read('public.t', at, 700);
    if (batch.length === 0) break;
    assert.ok(batch.length <= 700);
    all.push(...batch.map((c) => c.position.idx));
    at = batch[batch.length - 1].position;
  }
  const expected = [...Array(3000).keys()].filter((i) => i % 6 !== 5);
  assert.deepEqual(all, expected, 'every change of public.t once, in order, none of public.u');
  assert.deepEqual(log.read('public.u', Position.start, 10_000).map((c) => c.position.idx), [...Array(3000).keys()].filter((i) => i % 6 === 5));
  // Bounded reads: upTo inside a slice.
  const upTo = log.read('public.t', { lsn: Lsn.of(1000), idx: 100 }, 10_000, { lsn: Lsn.of(1000), idx: 1210 });
  assert.deepEqual(
    upTo.map((c) => c.position.idx),
    expected.filter((i) => i > 100 && i <= 1210),
  );
  const removed = log.purge('public.t', { lsn: Lsn.of(1000), idx: 1500 });
  assert.equal(removed, expected.filter((i) => i <= 1500).length);
  const rest = log.read('public.t', { lsn: Lsn.of(1000), idx: 1500 }, 10_000).map((c) => c.position.idx);
  assert.deepEqual(rest, expected.filter((i) => i > 1500));
  assert.equal(log.count('public.t', { lsn: Lsn.of(1000), idx: 2990 }), expected.filter((i) => i > 2990).length);
  log.close();
});

test('a read larger than one call into SQLite (1,024 changes) returns every change once, across transactions, with or without a bound', () => {
  const log = new EmbeddedChangeLog(join(dir, 'pages.db'));
  const v = log.relationVersion('public.t', cols);
  // 7 transactions of 700 changes: page boundaries fall inside and between transactions.
  const positions: string[] = [];
  for (let t = 1; t <= 7; t++) {
    for (let i = 0; i < 700; i++) {
      log.append({ table: 'public.t', lsn: Lsn.of(t * 10_000), idx: i, kind: 'insert', relationVersion: v, row: [`${t}:${i}`, null], commitTimeMs: t });
      positions.push(`${t * 10_000}/${i}`);
    }
    log.commit(Lsn.of(t * 10_000), Lsn.of(t * 10_000 + 1), t);
  }
  log.flush();
  const key = (c: { position: Position }) => `${c.position.lsn}/${c.position.idx}`;
  const first = log.read('public.t', Position.start, 2048);
  assert.deepEqual(first.map(key), positions.slice(0, 2048), 'a limit of exactly two pages');
  assert.deepEqual(first[2047].row, ['3:647', null]);
  const rest = log.read('public.t', first[2047].position, 10_000);
  assert.deepEqual(rest.map(key), positions.slice(2048), 'the rest, fewer than the limit');
  const bounded = log.read('public.t', { lsn: Lsn.of(10_000), idx: 5 }, 10_000, { lsn: Lsn.of(50_000), idx: 3 });
  assert.deepEqual(bounded.map(key), positions.slice(6, 4 * 700 + 4), 'a bound three pages away');
  const limited = log.read('public.t', { lsn: Lsn.of(10_000), idx: 5 }, 1500, { lsn: Lsn.of(50_000), idx: 3 });
  assert.deepEqual(limited.map(key), positions.slice(6, 1506), 'the limit before the bound');
  log.close();
});

test('a transaction sent again with other flush boundaries (a reconnect before its commit) is stored once', () => {
  const log = new EmbeddedChangeLog(join(dir, 'd.db'));
  const v = log.relationVersion('public.t', cols);
  const send = (from: number, to: number) => {
    for (let i = from; i < to; i++) log.append({ table: 'public.t', lsn: Lsn.of(5000), idx: i, kind: 'update', relationVersion: v, row: [String(i), 'x'], commitTimeMs: 3 });
  };
  // First try: 1,700 changes flushed in two parts, the connection drops before the commit.
  send(0, 600);
  log.flush();
  send(600, 1700);
  log.flush();
  assert.equal(log.read('public.t', Position.start, 10_000).length, 0, 'nothing readable before the commit');
  // Sent again from the start, flushed at other places, then committed.
  send(0, 1000);
  log.flush();
  send(1000, 1300);
  log.flush();
  send(1300, 1700);
  log.commit(Lsn.of(5000), Lsn.of(5001), 3);
  log.flush();
  const got = log.read('public.t', Position.start, 10_000).map((c) => c.position.idx);
  assert.deepEqual(got, [...Array(1700).keys()], 'each change once, in order');
  assert.equal(log.count('public.t', Position.start), 1700);
  log.close();
});

test('a batch stops at its byte budget (at least one change), and says whether more may follow', () => {
  const log = new EmbeddedChangeLog(join(dir, 'bytes.db'));
  const v = log.relationVersion('public.t', cols);
  const wide = 'x'.repeat(1000);
  for (let i = 0; i < 3000; i++) log.append({ table: 'public.t', lsn: Lsn.of(10), idx: i, kind: 'insert', relationVersion: v, row: [String(i), wide], commitTimeMs: 1 });
  log.commit(Lsn.of(10), Lsn.of(11), 1);
  log.flush();
  // ~1 KiB a row: a 100 KiB budget ends the batch after about 100 changes, across no page boundary.
  const small = log.readBatch('public.t', Position.start, { limit: 20_000, maxBytes: 100 * 1024 });
  assert.ok(small.full, 'stopped by the budget: more follow');
  assert.ok(small.changes.length >= 95 && small.changes.length <= 103, `${small.changes.length} changes in 100 KiB`);
  assert.deepEqual(small.changes.map((c) => c.position.idx), [...Array(small.changes.length).keys()], 'in order, from the start');
  // Across pages (1,024 changes a page), resuming after the last change read.
  const big = log.readBatch('public.t', small.changes.at(-1)!.position, { limit: 20_000, maxBytes: 2_000 * 1024 });
  assert.ok(big.full && big.changes.length > 1024 && big.changes.length < 2100, `${big.changes.length}`);
  assert.equal(big.changes[0].position.idx, small.changes.length);
  // A budget smaller than one row still returns that row.
  assert.equal(log.readBatch('public.t', Position.start, { limit: 10, maxBytes: 1 }).changes.length, 1);
  // The rest, within both limits: nothing more.
  const rest = log.readBatch('public.t', big.changes.at(-1)!.position, { limit: 20_000, maxBytes: 1 << 30 });
  assert.equal(rest.full, false);
  assert.equal(small.changes.length + big.changes.length + rest.changes.length, 3000);
  // A change limit that ends exactly at the last change still says "may be more" (the caller reads again).
  assert.equal(log.readBatch('public.t', Position.start, { limit: 3000, maxBytes: 1 << 30 }).full, true);
  log.close();
});
