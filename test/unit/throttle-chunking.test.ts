/**
 * Unit checks of two promises the integration tests lean on: a ctid chunk never carries more than
 * `maxChunkBytes` of heap + TOAST, also after the planner has learned the heap's row density; and a
 * rows/s ceiling changed while a chunk waits for its budget applies to that chunk at once; and a
 * ceiling caps chunks at a quarter second of its rows, read at every chunk.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type pg from 'pg';
import { ChunkSizer, CtidPlanner, ceilingCap, type Chunk } from '../../src/pipeline/chunking.js';
import { Throttler } from '../../src/pipeline/throttler.js';

const NO_CLIENT = {} as pg.ClientBase;
const MAX = 64 * 1024 * 1024;

test('ctid: chunks of a TOAST-heavy table stay within 64 MiB as the planner learns the density', async () => {
  // 13 heap pages of 157 rows each, 30 MB of heap + TOAST per page; chunkRows 100000, fixed.
  const planner = new CtidPlanner(3, new ChunkSizer(100_000, 0), 13, 157, 30e6, { frontier: null, pending: [] });
  const chunks: Chunk[] = [];
  for (;;) {
    const c = await planner.next(NO_CLIENT);
    if (!c) break;
    chunks.push(c);
    if (c.range.kind === 'ctid' && c.range.to !== null) planner.done(c, 157 * (c.range.to - c.range.from), 0.5);
  }
  const widths = chunks.map((c) => (c.range.kind === 'ctid' && c.range.to !== null ? c.range.to - c.range.from : null));
  for (const w of widths) if (w !== null) assert.ok(w * 30e6 <= MAX, `a chunk of ${w} pages (${(w * 30).toFixed(0)} MB): ${JSON.stringify(widths)}`);
  assert.ok(chunks.length >= 6, `chunks: ${JSON.stringify(widths)}`);
  assert.equal(chunks[0].range.kind === 'ctid' && chunks[0].range.from, 0);
  const last = chunks[chunks.length - 1].range;
  assert.ok(last.kind === 'ctid' && last.to === null, 'the last chunk is open-ended');
});

test('ctid: an ordinary table is not held to small chunks by the byte cap', async () => {
  // 1,000 pages of 60 rows, 8 kB per page: chunkRows 6000 → 100 pages a chunk.
  const planner = new CtidPlanner(2, new ChunkSizer(6000, 0), 1000, 60, 8192, { frontier: null, pending: [] });
  const first = await planner.next(NO_CLIENT);
  assert.deepEqual(first?.range, { kind: 'ctid', from: 0, to: 100 });
});

const OPEN = { maxRowsPerSecond: 0, maxChunksPerSecond: 0, maxActiveSessions: 0, maxReplicaLagSeconds: 0, maxSlotLagBytes: 0, query: '' };

test('rows/s ceiling: a ceiling raised or lifted while a chunk waits applies to that chunk', async () => {
  const t = new Throttler({ ...OPEN, maxRowsPerSecond: 10 });
  await t.acquire(10); // the second of burst
  const waits: (string | null)[] = [];
  let started = Date.now();
  let p = t.acquire(100, undefined, (why) => waits.push(why)); // owes 100 rows: 10 s at 10 rows/s
  setTimeout(() => t.setLimits({ maxRowsPerSecond: 10_000 }), 300);
  await p;
  // It did wait for its budget (until the ceiling was raised at 300 ms), and not much longer.
  assert.ok(Date.now() - started >= 280, `waited only ${Date.now() - started} ms under a ceiling of 10 rows/s`);
  assert.ok(Date.now() - started < 1500, `waited ${Date.now() - started} ms after the ceiling was raised`);
  assert.equal(waits[0], 'paused: rows/s ceiling 10');
  assert.equal(waits[waits.length - 1], null);

  t.setLimits({ maxRowsPerSecond: 10 });
  await t.acquire(10);
  started = Date.now();
  p = t.acquire(100);
  setTimeout(() => t.setLimits({ maxRowsPerSecond: 0 }), 300);
  await p;
  assert.ok(Date.now() - started >= 280, `waited only ${Date.now() - started} ms under a ceiling of 10 rows/s`);
  assert.ok(Date.now() - started < 1500, `waited ${Date.now() - started} ms after the ceiling was lifted`);
});

test('rows/s ceiling: the rate stays bounded', async () => {
  const t = new Throttler({ ...OPEN, maxRowsPerSecond: 1000 });
  await t.acquire(1000); // the second of burst
  const started = Date.now();
  for (let i = 0; i < 8; i++) await t.acquire(100);
  const ms = Date.now() - started;
  assert.ok(ms >= 700, `800 rows at 1000 rows/s took ${ms} ms`);
});

test('chunks/s ceiling: bounded, reported, and lifted live', async () => {
  const t = new Throttler({ ...OPEN, maxChunksPerSecond: 5 });
  for (let i = 0; i < 5; i++) await t.acquire(1); // the second of burst
  const waits: (string | null)[] = [];
  const started = Date.now();
  for (let i = 0; i < 5; i++) await t.acquire(1, undefined, (why) => waits.push(why));
  const ms = Date.now() - started;
  assert.ok(ms >= 900, `5 chunks at 5 chunks/s took ${ms} ms`);
  assert.equal(waits[0], 'paused: chunks/s ceiling 5');
  assert.equal(waits[waits.length - 1], null);

  t.setLimits({ maxChunksPerSecond: 0.1 }); // one chunk in 10 s
  const since = Date.now();
  const p = t.acquire(1);
  setTimeout(() => t.setLimits({ maxChunksPerSecond: 0 }), 300);
  await p;
  assert.ok(Date.now() - since >= 280, `waited only ${Date.now() - since} ms under a ceiling of one chunk in 10 s`);
  assert.ok(Date.now() - since < 1500, `waited ${Date.now() - since} ms after the ceiling was lifted`);
});

test('chunk size: a rows/s ceiling caps chunks at a quarter second of it, live, never below the minimum', () => {
  let ceiling = 0;
  const sizer = new ChunkSizer(50_000, 2, 100, 2_000_000, () => ceilingCap(ceiling));
  assert.equal(sizer.rows, 50_000, 'no ceiling: the configured size');
  ceiling = 40_000;
  assert.equal(sizer.rows, 10_000, 'a quarter second of 40,000 rows/s');
  ceiling = 1_000_000;
  assert.equal(sizer.rows, 50_000, 'a high ceiling does not grow chunks');
  ceiling = 20;
  assert.equal(sizer.rows, 100, 'never below the minimum chunk');
  // Adapting to chunkSeconds goes on underneath the cap.
  ceiling = 40_000;
  sizer.observe(50_000, 10); // 5,000 rows/s: 2 s are 10,000 rows; one step halves at most: 25,000
  assert.equal(sizer.rows, 10_000);
  sizer.observe(10_000, 8); // 1,250 rows/s: 2,500 rows; halved again: 12,500
  assert.equal(sizer.rows, 10_000);
  sizer.observe(10_000, 8);
  assert.equal(sizer.rows, 6_250, 'below the cap, the adapted size');
  ceiling = 0;
  assert.equal(sizer.rows, 6_250, 'the adapted size without a ceiling');
});
