/**
 * `sluice verify --by day:COLUMN`: the same table written on both sides with plain SQL, then changed
 * in the destination in known ways (a row missing, a value changed, a row moved to another day);
 * verify must say which days differ — in the stated time zone — and which hours of them, and name the
 * keys; equal tables read equal. The sides' sessions run in UTC; the days are New York's.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { makeWorkdir, sluice, type Workdir } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;

const ddl = `CREATE TABLE public.events (id int PRIMARY KEY, at timestamptz NOT NULL, amount numeric NOT NULL, note text)`;
const rows = `INSERT INTO public.events SELECT g, timestamptz '2024-03-01 00:00 America/New_York' + g * interval '7 minutes', g * 1.25, md5(g::text) FROM generate_series(1, 6000) g`;

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  for (const c of [source, destination]) {
    await c.query(ddl);
    await c.query(rows);
  }
  work = makeWorkdir({ sourceUrl: source.url(), destinationUrl: destination.url(), tables: [{ name: 'public.events' }] });
});

after(async () => {
  await stopAll?.();
  work?.remove();
});

interface Verdict {
  equal: boolean;
  buckets: number;
  differingBuckets: { bucket: string; sourceRows: number; destinationRows: number }[];
  differences: { key: string; problem: string }[];
}

const verify = async (...extra: string[]) => {
  const r = await sluice(['verify', 'public.events', '--json', '--attempts', '1', '--by', 'day:at', '--time-zone', 'America/New_York', ...extra], { config: work.config });
  return { code: r.code, v: r.stdout ? (JSON.parse(r.stdout).tables[0] as Verdict) : undefined, stderr: r.stderr };
};

test('equal tables: every day equal', async () => {
  const r = await verify();
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.v!.equal, true);
  assert.equal(r.v!.buckets, 30, '6,000 rows 7 minutes apart span 30 New York days');
});

test('the days and hours that differ, and the keys', async () => {
  // id 1000 is 2024-03-05 20:40 New York (01:40 UTC the next day): its day is the 5th, not the 6th.
  await destination.query(`DELETE FROM public.events WHERE id = 1000`);
  await destination.query(`UPDATE public.events SET amount = amount + 1 WHERE id = 3000`);
  const r = await verify();
  assert.equal(r.code, 1, r.stderr);
  const buckets = r.v!.differingBuckets.map((b) => b.bucket);
  const at1000 = (await source.query(`SELECT to_char(at AT TIME ZONE 'America/New_York', 'YYYY-MM-DD') AS d, to_char(at AT TIME ZONE 'America/New_York', 'HH24') AS h FROM public.events WHERE id = 1000`)).rows[0];
  const at3000 = (await source.query(`SELECT to_char(at AT TIME ZONE 'America/New_York', 'YYYY-MM-DD') AS d, to_char(at AT TIME ZONE 'America/New_York', 'HH24') AS h FROM public.events WHERE id = 3000`)).rows[0];
  assert.equal(at1000.d, '2024-03-05');
  assert.deepEqual(buckets.filter((b) => b.endsWith('00:00')).sort(), [`${at1000.d} 00:00`, `${at3000.d} 00:00`].sort(), JSON.stringify(r.v));
  assert.ok(buckets.includes(`${at1000.d} ${at1000.h}:00`) && buckets.includes(`${at3000.d} ${at3000.h}:00`), 'the hours named');
  const missing = r.v!.differingBuckets.find((b) => b.bucket === `${at1000.d} 00:00`)!;
  assert.equal(missing.sourceRows - missing.destinationRows, 1);
  const keys = r.v!.differences.map((d) => `${d.key} ${d.problem}`).join('; ');
  assert.match(keys, /1000\)? missing in destination/);
  assert.match(keys, /3000\)? differs/);
});

test('bad --by is refused with exit 2', async () => {
  const r = await sluice(['verify', 'public.events', '--by', 'week:at'], { config: work.config });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /expected day:COLUMN or hour:COLUMN/);
  const t = await sluice(['verify', 'public.events', '--by', 'day:amount'], { config: work.config });
  assert.equal(t.code, 2);
  assert.match(t.stderr, /amount is numeric/);
});
