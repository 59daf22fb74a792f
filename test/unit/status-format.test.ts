import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RateWindow } from '../../src/pipeline/rate-window.js';
import { describeThrottle, etaSeconds, formatEta, percentCopied } from '../../src/pipeline/status-format.js';

test('rows/s is averaged over the window, not the last step', () => {
  const w = new RateWindow(30_000);
  w.add(0, 0);
  assert.equal(w.rate(), 0, 'one sample: no rate yet');
  // 1000 rows at once, then nothing for 9 s: 1000 rows over 10 s.
  w.add(1000, 1000);
  w.add(10_000, 1000);
  assert.equal(Math.round(w.rate()), 100);
  // Samples older than the window drop out (one stays as the baseline).
  for (let t = 11_000; t <= 60_000; t += 1000) w.add(t, 1000 + (t - 10_000) / 10);
  assert.equal(Math.round(w.rate()), 100);
  // A counter that goes back (a new run) starts again.
  w.add(61_000, 0);
  assert.equal(w.rate(), 0);
});

test('percent is capped below 100 until done; ETA from the rate', () => {
  assert.equal(percentCopied(50, 100), 50);
  assert.equal(percentCopied(150, 100), 99);
  assert.equal(percentCopied(5, 0), null);
  assert.equal(etaSeconds(0, 1000, 10), 100);
  assert.equal(etaSeconds(0, 1000, 0), null);
  assert.equal(formatEta(42), '42s');
  assert.equal(formatEta(150), '3m');
  assert.equal(formatEta(3 * 3600 + 600), '3h10m');
});

test('one throttle description: a ceiling that holds tables back is on the pipeline line', () => {
  const t = { maxRowsPerSecond: 500, maxChunksPerSecond: 0, query: '', state: 'open', source: 'config' };
  assert.equal(describeThrottle(t, [null, 'paused: rows/s ceiling 500']), 'open, held to the rows/s ceiling 500; limits maxRowsPerSecond=500; from config');
  assert.equal(describeThrottle({ ...t, state: 'paused: replica lag 12 s > 10 s' }), 'paused: replica lag 12 s > 10 s; limits maxRowsPerSecond=500; from config');
});
