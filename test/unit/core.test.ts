import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lsn, Position, TableName } from '../../src/core/types.js';
import { TRANSITIONS, canTransition, inBackfill } from '../../src/core/table-state.js';
import { backoffMs } from '../../src/core/retry.js';

test('LSN text form round-trips, including above 32 bits', () => {
  for (const s of ['0/0', '0/16B3748', '16/B374D848', 'FFFFFFFF/FFFFFFFF']) assert.equal(Lsn.format(Lsn.parse(s)), s);
  assert.equal(Lsn.parse('1/0'), 4294967296n);
  assert.throws(() => Lsn.parse('nope'));
});

test('positions order by LSN then index; before(l) precedes every change at l', () => {
  const a = { lsn: Lsn.of(10), idx: 5 };
  const b = { lsn: Lsn.of(11), idx: 0 };
  assert.ok(Position.compare(a, b) < 0);
  assert.ok(Position.compare(Position.before(Lsn.of(11)), b) < 0);
  assert.ok(Position.compare(Position.before(Lsn.of(11)), a) > 0);
});

test('table names: defaults, quoting, errors', () => {
  assert.deepEqual(TableName.parse('orders'), { schema: 'public', name: 'orders' });
  assert.deepEqual(TableName.parse('"My.Schema"."T"'), { schema: 'My.Schema', name: 'T' });
  assert.throws(() => TableName.parse('a.b.c'));
});

test('every state has somewhere to go, and the lifecycle path is allowed', () => {
  for (const [from, tos] of Object.entries(TRANSITIONS)) assert.ok(tos.length > 0, from);
  const path = ['queued', 'backfilling', 'catching_up', 'streaming', 'queued'] as const;
  for (let i = 1; i < path.length; i++) assert.ok(canTransition(path[i - 1], path[i]), `${path[i - 1]} → ${path[i]}`);
  assert.ok(!canTransition('cancelled', 'catching_up'));
});

test('a backfill is under way while loading, replaying or swapping', () => {
  assert.ok(inBackfill('backfilling') && inBackfill('catching_up') && inBackfill('swapping'));
  assert.ok(!inBackfill('streaming') && !inBackfill('queued') && !inBackfill('failed'));
  assert.ok(canTransition('catching_up', 'swapping') && canTransition('swapping', 'streaming'));
});
test('backoff grows and is capped', () => {
  for (let i = 0; i < 50; i++) {
    assert.ok(backoffMs(1, 100, 1000) <= 100);
    assert.ok(backoffMs(20, 100, 1000) <= 1000);
    assert.ok(backoffMs(20, 100, 1000) >= 500);
  }
});

test('pretty log lines leave out fields that are undefined', async () => {
  const { createLogger } = await import('../../src/core/logger.js');
  const lines: string[] = [];
  const log = createLogger({ format: 'pretty', write: (l: string) => lines.push(l) });
  log.info('backfill started', { scope: undefined, mode: 'upsert' });
  assert.match(lines[0], /backfill started {2}mode=upsert$/);
  assert.doesNotMatch(lines[0], /undefined/);
});

test('osUser falls back to the process account when $USER and $LOGNAME are empty', async () => {
  const { osUser } = await import('../../src/core/os-user.js');
  const { userInfo } = await import('node:os');
  const saved = { USER: process.env.USER, LOGNAME: process.env.LOGNAME };
  try {
    process.env.USER = '';
    delete process.env.LOGNAME;
    assert.equal(osUser(), userInfo().username);
    process.env.USER = 'alice';
    assert.equal(osUser(), 'alice');
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});
