/** The progress and ETA rules (src/pipeline/eta.ts): units, the 100 % cap, the estimate overshoot, active time only, warm-up, catch-up. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { estimateCatchUp, estimateProgress, MIN_ACTIVE_MS, NO_CATCH_UP, NO_RATE, sampleCatchUp, sampleRate, type ProgressInput, type RateState } from '../../src/pipeline/eta.js';

/** Samples every second: `units(i)` done at second i, held back where `held(i)`. */
function run(seconds: number, units: (i: number) => number, held: (i: number) => boolean = () => false, from: RateState = NO_RATE): RateState {
  let s = from;
  for (let i = 0; i <= seconds; i++) s = sampleRate(s, i * 1000, units(i), held(i));
  return s;
}

const input = (over: Partial<ProgressInput>): ProgressInput => ({
  copying: true,
  done: false,
  unit: 'pages',
  unitsDone: 0,
  unitsTotal: 1000,
  rowsCopied: 0,
  rowsEstimated: 0,
  rate: NO_RATE,
  heldBack: null,
  ...over,
});

test('a steady copy: rate in units per second, ETA = units left / rate, progress in the strategy unit', () => {
  const rate = run(60, (i) => i * 5);
  assert.ok(Math.abs(rate.rate! - 5) < 1e-9);
  assert.equal(rate.activeMs, 60_000);
  const p = estimateProgress(input({ unitsDone: 300, rate }));
  assert.equal(p.ratio, 0.3);
  assert.equal(p.unitsPerSecond, 5);
  assert.equal(p.etaSeconds, 140);
  assert.equal(p.etaNote, null);
});

test('no ETA before 30 s of active copying, or before 1 % of the work; a note says why', () => {
  const early = estimateProgress(input({ unitsDone: 500, rate: run(10, (i) => i * 50) }));
  assert.equal(early.etaSeconds, null);
  assert.match(early.etaNote!, /measuring the rate \(10 s of 30 s/);
  const little = estimateProgress(input({ unitsDone: 5, unitsTotal: 1000, rate: run(40, (i) => Math.floor(i / 8)) }));
  assert.equal(little.etaSeconds, null);
  assert.match(little.etaNote!, /under 1 %/);
  assert.equal(MIN_ACTIVE_MS, 30_000);
});

test('throttled time is left out of the rate and the active time; the held-back state is reported beside the ETA', () => {
  // 40 s copying at 10/s, then 100 s paused by the throttle (no progress), then 10 s more at 10/s.
  const units = (i: number) => (i <= 40 ? i * 10 : i <= 140 ? 400 : 400 + (i - 140) * 10);
  const held = (i: number) => i > 40 && i <= 140;
  const s = run(150, units, held);
  assert.equal(s.activeMs, 50_000);
  assert.equal(s.throttledMs, 100_000);
  assert.ok(Math.abs(s.rate! - 10) < 1e-9, `rate ${s.rate}: the pause must not drag it down`);
  const p = estimateProgress(input({ unitsDone: 500, unitsTotal: 1000, rate: s, heldBack: 'paused: replica lag 12 s > 10 s' }));
  assert.equal(p.etaSeconds, 50);
  assert.equal(p.heldBack, 'paused: replica lag 12 s > 10 s');
  assert.equal(p.throttledSeconds, 100);
});

test('the rate is smoothed: a burst moves it part of the way, not all of it', () => {
  const s = run(60, (i) => i * 10);
  const burst = sampleRate(s, 61_000, s.lastUnits + 1000, false);
  assert.ok(burst.rate! > 10 && burst.rate! < 100, `rate ${burst.rate}`);
  // A later interval weighs by its length: a 30 s interval is half the weight (the half-life).
  const half = sampleRate(s, 90_000, s.lastUnits + 30 * 30, false);
  assert.ok(Math.abs(half.rate! - 20) < 1e-9, `rate ${half.rate}`);
});

test('never above 100 %, and below 100 % until the copy is done', () => {
  assert.equal(estimateProgress(input({ unitsDone: 1200, unitsTotal: 1000 })).ratio, 0.999);
  assert.equal(estimateProgress(input({ unitsDone: 1000, unitsTotal: 1000 })).ratio, 0.999);
  assert.equal(estimateProgress(input({ unitsDone: 1000, unitsTotal: 1000, done: true, copying: false })).ratio, 1);
});

test('keyset rows past the estimate: it says so and drops the ETA', () => {
  const rate = run(60, (i) => i * 100);
  const p = estimateProgress(input({ unit: 'rows', unitsDone: 6000, unitsTotal: 5000, rowsCopied: 6000, rowsEstimated: 5000, rate }));
  assert.equal(p.overEstimate, true);
  assert.equal(p.ratio, 0.999);
  assert.equal(p.etaSeconds, null);
  assert.match(p.etaNote!, /copied 6000 rows, past the estimate of 5000: the estimate was low/);
});

test('an unknown total gives no ratio and no ETA; a new run (units going back) starts the rate again', () => {
  const p = estimateProgress(input({ unitsTotal: 0, rate: run(60, (i) => i) }));
  assert.equal(p.ratio, null);
  assert.equal(p.etaSeconds, null);
  const s = sampleRate(run(60, (i) => i * 10), 61_000, 3, false);
  assert.equal(s.rate, null);
  assert.equal(s.activeMs, 0);
});

test('catch-up ETA from apply minus capture; not converging when the backlog does not shrink for long enough', () => {
  let s = NO_CATCH_UP;
  for (let i = 0; i <= 60; i++) s = sampleCatchUp(s, i * 1000, 100_000 - i * 1000);
  const c = estimateCatchUp(s, 60_000, 300_000);
  assert.equal(c.shrinkPerSecond, 1000);
  assert.equal(c.etaSeconds, 40);
  assert.equal(c.notConverging, false);
  // Capture now outpaces apply: the backlog grows.
  let g = s;
  for (let i = 61; i <= 500; i++) g = sampleCatchUp(g, i * 1000, 40_000 + (i - 60) * 500);
  const stuck = estimateCatchUp(g, 500_000, 300_000);
  assert.ok(stuck.shrinkPerSecond! < 0);
  assert.equal(stuck.etaSeconds, null);
  assert.equal(stuck.notConverging, true);
  assert.equal(estimateCatchUp(g, 500_000, 1_000_000).notConverging, false, 'not yet for a longer threshold');
  // An empty backlog has converged, whatever the rate.
  const empty = sampleCatchUp(g, 501_000, 0);
  assert.equal(estimateCatchUp(empty, 501_000, 300_000).notConverging, false);
  assert.equal(estimateCatchUp(empty, 501_000, 300_000).etaSeconds, 0);
});
