/**
 * The errors of the fault matrix, without a cluster: a full change-log disk (real SQLITE_FULL from
 * SQLite, by a page limit on the log's own connection) and a lost replication slot (the server's
 * SQLSTATEs and messages) get their codes, exit 2, and a message naming the fix.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type Database from 'better-sqlite3';
import { EmbeddedChangeLog } from '../../src/changelog/embedded/embedded-change-log.js';
import { SluiceError } from '../../src/core/errors.js';
import { Lsn, Position } from '../../src/core/types.js';
import { classify } from '../../src/sources/postgres/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-fault-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const cols = { names: ['id', 'v'], typeOids: [20, 25], keyIndexes: [0] };

test('a full change-log disk fails the flush with CHANGELOG_DISK_FULL, and every later flush too: the head never moves past what was written', () => {
  const log = new EmbeddedChangeLog(join(dir, 'full.db'));
  const v = log.relationVersion('public.t', cols);
  log.append({ table: 'public.t', lsn: Lsn.of(100), idx: 0, kind: 'insert', relationVersion: v, row: ['1', 'x'], commitTimeMs: 1 });
  log.commit(Lsn.of(100), Lsn.of(108), 1);
  assert.equal(log.flush().endLsn, Lsn.of(108));

  // The file may not grow any more: SQLite answers SQLITE_FULL, as on a full disk.
  const db = (log as unknown as { db: Database.Database }).db;
  db.pragma(`max_page_count = ${Number(db.pragma('page_count', { simple: true }))}`);
  for (let i = 0; i < 2000; i++) {
    log.append({ table: 'public.t', lsn: Lsn.of(200), idx: i, kind: 'insert', relationVersion: v, row: [String(i), 'y'.repeat(500)], commitTimeMs: 2 });
  }
  log.commit(Lsn.of(200), Lsn.of(208), 2);
  assert.throws(() => log.flush(), (e: unknown) => e instanceof SluiceError && e.code === 'CHANGELOG_DISK_FULL');
  let first: SluiceError | undefined;
  try {
    log.flush();
  } catch (e) {
    first = e as SluiceError;
  }
  assert.ok(first, 'a later flush (only the head would move) fails too');
  assert.equal(first.code, 'CHANGELOG_DISK_FULL');
  assert.equal(first.isUsageError, true, 'exit 2');
  assert.match(first.message, new RegExp(`change log disk full at ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: free space there or move log\\.path .*nothing was acknowledged past position 0/6C`));
  assert.equal(log.head().endLsn, Lsn.of(108), 'the durable head is still the last written one');
  assert.equal(log.read('public.t', Position.start, 10).length, 1);
  log.close();
});

test('a dropped or invalidated slot is SLOT_LOST (exit 2), not a retryable source error', () => {
  const dropped = classify('source', 'START_REPLICATION', Object.assign(new Error('replication slot "sluice_app" does not exist'), { code: '42704' }));
  assert.equal(dropped.code, 'SLOT_LOST');
  assert.equal(dropped.retryable, false);
  assert.equal(dropped.isUsageError, true);
  const invalidated = classify(
    'source',
    'START_REPLICATION',
    Object.assign(new Error('can no longer get changes from replication slot "sluice_app"'), {
      code: '55000',
      detail: 'This slot has been invalidated because it exceeded the maximum reserved size.',
    }),
  );
  assert.equal(invalidated.code, 'SLOT_LOST');
  assert.match(invalidated.message, /invalidated because it exceeded the maximum reserved size/);
  // Another 42704 is not a lost slot.
  assert.equal(classify('source', 'x', Object.assign(new Error('type "foo" does not exist'), { code: '42704' })).code, 'SOURCE_ERROR');
});
