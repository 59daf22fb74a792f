/** Lifecycle events are sent once per crossing: lag, throttle, catch-up convergence; backfill.failed only for a table in a backfill. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventBus, type SluiceEvent } from '../../src/core/events.js';
import { SluiceError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { configSchema } from '../../src/config/schema.js';
import { Lifecycle } from '../../src/pipeline/lifecycle.js';
import type { TableRuntime } from '../../src/pipeline/runtime.js';
import type { CatchUp } from '../../src/pipeline/eta.js';

const cfg = configSchema.parse({
  pipeline: { name: 'p' },
  source: { type: 'postgres', url: 'postgres://a/b' },
  destination: { type: 'postgres', url: 'postgres://a/c' },
  notify: { lagSeconds: 10 },
  tables: ['public.t'],
});

function world() {
  const bus = new EventBus('p');
  const seen: SluiceEvent[] = [];
  bus.on((e) => seen.push(e));
  const lifecycle = new Lifecycle(bus, cfg.notify, createLogger({ write: () => {} }));
  const rt = { name: 'public.t', state: 'streaming', mode: 'online', rowsCopied: 5, rowsEstimated: 10, config: { strategy: 'keyset' }, pending: null } as unknown as TableRuntime;
  return { seen, lifecycle, rt, names: () => seen.map((e) => e.name) };
}

const none = { copy: null, catchUp: null };
const catchUp = (notConverging: boolean): CatchUp => ({ backlog: 5000, shrinkPerSecond: notConverging ? -10 : 100, etaSeconds: null, notConverging });

test('lag: exceeded once when it passes the threshold, recovered once when it is back under', () => {
  const { lifecycle, rt, names, seen } = world();
  for (const lag of [1, 11, 15, 30, 10, 9, 12]) lifecycle.observe(rt, lag, none);
  assert.deepEqual(names(), ['lag.exceeded', 'lag.recovered', 'lag.exceeded']);
  assert.deepEqual(seen[0].detail, { lagSeconds: 11, thresholdSeconds: 10, state: 'streaming' });
  assert.equal(seen[0].table, 'public.t');
});

test('throttle: engaged when it closes (with the reason), released when it opens; a new reason while closed is no new event', () => {
  const { lifecycle, names, seen } = world();
  lifecycle.throttle('paused: replica lag 12 s > 10 s', null);
  lifecycle.throttle('paused: replica lag 13 s > 10 s', 'paused: replica lag 12 s > 10 s');
  lifecycle.throttle(null, 'paused: replica lag 13 s > 10 s');
  assert.deepEqual(names(), ['throttle.engaged', 'throttle.released']);
  assert.equal(seen[0].detail.reason, 'paused: replica lag 12 s > 10 s');
  assert.equal(seen[1].detail.was, 'paused: replica lag 13 s > 10 s');
});

test('catch-up: not_converging once while it lasts, again after it converged in between', () => {
  const { lifecycle, rt, names } = world();
  rt.state = 'catching_up';
  for (const stuck of [false, true, true, false, true]) lifecycle.observe(rt, null, { copy: null, catchUp: catchUp(stuck) });
  assert.deepEqual(names(), ['catchup.not_converging', 'catchup.not_converging']);
});

test('backfill events: started, completed with its seconds; failed only for a table in a backfill; cancelled only on a cancel', () => {
  const { lifecycle, rt, names, seen } = world();
  rt.state = 'queued';
  lifecycle.started(rt);
  lifecycle.completed(rt);
  assert.equal(seen[1].detail.seconds, 0);
  rt.state = 'streaming';
  lifecycle.failed(rt, new SluiceError('DESTINATION_ERROR', 'apply failed'));
  rt.state = 'backfilling';
  lifecycle.failed(rt, new SluiceError('DESTINATION_ERROR', 'copy failed'));
  lifecycle.cancelled(rt, 'nothing to cancel: public.t is streaming');
  lifecycle.cancelled(rt, 'cancelled; the table keeps streaming');
  lifecycle.requested('public.t', 7, { mode: 'upsert' }, 'refused: public.t is already backfilling');
  assert.deepEqual(names(), ['backfill.started', 'backfill.completed', 'backfill.failed', 'backfill.cancelled', 'backfill.requested']);
  assert.equal(seen[2].detail.error, 'copy failed');
  assert.deepEqual(seen[4].detail, { requestId: 7, mode: 'upsert', accepted: false, outcome: 'refused: public.t is already backfilling' });
});
