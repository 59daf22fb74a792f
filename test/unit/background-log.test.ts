import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BackgroundLog } from '../../src/changelog/embedded/background-log.js';
import { EmbeddedChangeLog } from '../../src/changelog/embedded/embedded-change-log.js';
import type { LogHead } from '../../src/changelog/changelog.js';
import { encodeTuple } from '../../src/core/tuple-data.js';
import { Lsn, Position } from '../../src/core/types.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-bglog-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const cols = { names: ['id', 'v'], typeOids: [20, 25], keyIndexes: [0] };

test('a log written in its own thread: durable only when the write reports it, a flush during a write goes in the next, a reader sees every change', async () => {
  const file = join(dir, 'bg.db');
  const heads: LogHead[] = [];
  const counts: number[] = [];
  const log = new BackgroundLog(new EmbeddedChangeLog(file, { role: 'writer' }), {
    fsync: true,
    onWritten: (head, changes) => {
      heads.push(head);
      counts.push(changes);
    },
    onFailed: (err) => assert.fail(err),
  });
  const reader = new EmbeddedChangeLog(file, { role: 'reader' });
  const v = log.relationVersion('public.t', cols);
  const txn = (t: number) => {
    const lsn = Lsn.of(t * 100);
    for (let i = 0; i < 1000; i++) {
      // The row bytes are a view of a reused buffer, as capture hands them: the log must copy them.
      const scratch = Buffer.concat([encodeTuple([`${t}:${i}`, 'x'.repeat(i % 50)]), Buffer.alloc(8)]);
      log.append({ table: 'public.t', lsn, idx: i, kind: 'update', relationVersion: v, rowData: scratch.subarray(0, scratch.length - 8), commitTimeMs: t });
      scratch.fill(0);
    }
    log.append({ table: 'public.t', lsn, idx: 1000, kind: 'delete', relationVersion: v, oldKey: [`gone${t}`], commitTimeMs: t });
    log.commit(lsn, Lsn.of(t * 100 + 8), t);
  };
  txn(1);
  txn(2);
  assert.equal(log.flush().lsn, Lsn.zero, 'flush returns the head durable so far');
  assert.equal(log.writing, true);
  txn(3);
  log.flush();
  await log.settle();
  assert.equal(log.writing, false);
  assert.deepEqual(
    heads.map((h) => h.lsn),
    [Lsn.of(200), Lsn.of(300)],
    'two writes: the first two transactions, then the one that arrived during it',
  );
  assert.deepEqual(counts, [2002, 1001], 'each write reports the changes it stored');
  assert.equal(log.head().endLsn, Lsn.of(308));
  reader.setDurable(log.head());
  const got = reader.read('public.t', Position.start, 10_000);
  assert.equal(got.length, 3003);
  assert.deepEqual(got[1001].row, ['2:0', '']);
  assert.deepEqual(got[1049].row, ['2:48', 'x'.repeat(48)]);
  assert.deepEqual([got[3002].kind, got[3002].oldKey], ['delete', ['gone3']]);
  await log.end();
  reader.close();
});

test('a log written in its own thread is backlogged past 100,000 waiting changes, and a write clears it', async () => {
  const file = join(dir, 'backlog.db');
  let written = 0;
  const log = new BackgroundLog(new EmbeddedChangeLog(file, { role: 'writer', fsync: false }), {
    fsync: false,
    onWritten: () => written++,
    onFailed: (err) => assert.fail(err),
  });
  const v = log.relationVersion('public.t', cols);
  const row = encodeTuple(['1', 'v']);
  for (let i = 0; i < 100_000; i++) {
    assert.equal(log.backlogged, false, `backlogged after ${i} changes`);
    log.append({ table: 'public.t', lsn: Lsn.of(500), idx: i, kind: 'insert', relationVersion: v, rowData: row, commitTimeMs: 1 });
  }
  assert.equal(log.backlogged, true);
  log.commit(Lsn.of(500), Lsn.of(508), 1);
  log.flush();
  assert.equal(log.backlogged, false, 'the write took them');
  await log.settle();
  assert.equal(written, 1);
  assert.equal(log.head().lsn, Lsn.of(500));
  await log.end();
});
