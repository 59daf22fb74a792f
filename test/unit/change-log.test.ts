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
