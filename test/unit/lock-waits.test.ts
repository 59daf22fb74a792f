import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeLockWait, waitIsOn, type LockWait } from '../../src/destinations/postgres/lock-waits.js';

const wait = (over: Partial<LockWait> = {}): LockWait => ({
  relation: 'public.orders',
  mode: 'RowExclusiveLock',
  pid: 101,
  applicationName: 'sluice-apply',
  waitingSeconds: 12,
  query: 'INSERT INTO "public"."orders" SELECT * FROM _sluice_up_1 ON CONFLICT …',
  blockers: [{ pid: 202, applicationName: 'psql', state: 'idle in transaction', query: 'LOCK TABLE orders IN ACCESS EXCLUSIVE MODE', transactionSeconds: 30 }],
  ...over,
});

test('a lock wait is placed on its relation, or for a row wait on the table its statement names', () => {
  assert.equal(waitIsOn(wait(), 'public.orders'), true);
  assert.equal(waitIsOn(wait(), 'public.orders__sluice_staging'), false);
  assert.equal(waitIsOn(wait({ relation: null }), 'public.orders'), true);
  assert.equal(waitIsOn(wait({ relation: null, query: 'UPDATE "public"."items" SET …' }), 'public.orders'), false);
});

test('a lock wait is described with its holder', () => {
  assert.equal(
    describeLockWait(wait(), 'public.orders'),
    'sluice-apply (pid 101) waiting 12 s for a lock on public.orders (RowExclusiveLock) held by pid 202 ' +
      '(application_name psql, idle in transaction, transaction open 30 s, query: LOCK TABLE orders IN ACCESS EXCLUSIVE MODE)',
  );
  const two = wait({ relation: null, blockers: [...wait().blockers, { pid: 303, applicationName: '', state: 'active', query: '', transactionSeconds: null }] });
  assert.match(describeLockWait(two, 'public.orders'), /lock on public\.orders .* and pid 303 \(application_name \(none\), active\)$/);
});
