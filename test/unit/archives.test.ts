/** Archive names (the swap's target in the archive schema) and the `status` archives line's duration. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { archiveName } from '../../src/destinations/postgres/swap.js';
import { formatDuration } from '../../src/pipeline/status.js';

test('archiveName: <archiveSchema>.<schema>_<table>__<run>, within 63 bytes, the run id kept whole', () => {
  assert.deepEqual(archiveName({ schema: 'public', name: 'orders' }, 41, 'sluice_archive'), { schema: 'sluice_archive', name: 'public_orders__41' });
  const long = archiveName({ schema: 'säles_2026', name: 'ö'.repeat(40) }, 123456789, 'sluice_archive');
  assert.ok(Buffer.byteLength(long.name) <= 63, long.name);
  assert.match(long.name, /__123456789$/);
  const a = archiveName({ schema: 's', name: 'x'.repeat(70) }, 1, 'arch');
  const b = archiveName({ schema: 's', name: 'x'.repeat(70) }, 2, 'arch');
  assert.notEqual(a.name, b.name, 'two runs of one table never share a name');
});

test('formatDuration: minutes, hours, days', () => {
  assert.equal(formatDuration(-5), 'now');
  assert.equal(formatDuration(30_000), '< 1 min');
  assert.equal(formatDuration(41 * 60_000), '41 min');
  assert.equal(formatDuration(23 * 3600_000 + 50 * 60_000), '24 h');
  assert.equal(formatDuration(5 * 86400_000), '5 d');
});
