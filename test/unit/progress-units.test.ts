/** Progress in the strategy's unit: a range planner counts the space its finished chunks cover; the CLI's bars. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type pg from 'pg';
import { ChunkSizer, CtidPlanner, type Chunk } from '../../src/pipeline/chunking.js';
import { bar, tableLine } from '../../src/cli/commands/progress-bars.js';

// Page ranges are never probed: the ctid planner does not use its client.
const noClient = null as unknown as pg.ClientBase;

test('ctid: pages covered by finished chunks, in any order, reach the whole table only when every chunk is done', async () => {
  const planner = new CtidPlanner(4, new ChunkSizer(1000, 0), 100, 100, 100, { frontier: null, pending: [] });
  const chunks: Chunk[] = [];
  for (let c = await planner.next(noClient); c; c = await planner.next(noClient)) chunks.push(c);
  assert.ok(chunks.length >= 5, `${chunks.length} chunks`);
  assert.deepEqual(planner.progress(), { done: 0, total: 100 });
  // Finished out of order (parallel readers): progress only counts what is done.
  const [first, ...rest] = chunks;
  for (const c of rest) planner.done(c, 1000, 1);
  const partial = planner.progress();
  assert.ok(partial.done < 100 && partial.done > 0, `${partial.done}`);
  planner.done(first, 1000, 1);
  assert.deepEqual(planner.progress(), { done: 100, total: 100 });
});

test('ctid resumed: the pages before the frontier count as done, except the chunks still pending', () => {
  const pending: Chunk[] = [{ range: { kind: 'ctid', from: 10, to: 20 }, expectedRows: 1000 }];
  const planner = new CtidPlanner(1, new ChunkSizer(1000, 0), 100, 100, 100, { frontier: 50n, pending });
  assert.deepEqual(planner.progress(), { done: 40, total: 100 });
});

test('progress bars: a bar in percent, never past 100 %; a line per table with the ETA or why none', () => {
  assert.equal(bar(0.5, 10), '[#####-----]  50%');
  assert.equal(bar(1.7, 10), '[##########] 100%');
  assert.equal(bar(null, 4), '[····]    ?');
  const rt = { name: 'public.orders', state: 'backfilling' as const, mode: 'online' as const, rowsCopied: 1500, rowsEstimated: 3000, rowsPerSecond: 120, detail: 'paused: replica lag 12 s > 10 s' };
  const line = tableLine(rt, { ratio: 0.25, etaSeconds: null, etaNote: 'measuring the rate (3 s of 30 s copied)' });
  assert.match(line, /^public\.orders\s+\[######-+\]\s+25%\s+1\.5k\/~3\.0k rows\s+120\/s\s+ETA after 30 s copying \(3 s\)\s+paused: replica lag 12 s > 10 s$/);
  assert.match(tableLine({ ...rt, state: 'catching_up', detail: null }, null), /^public\.orders\s+catching_up \(online\)$/);
});
