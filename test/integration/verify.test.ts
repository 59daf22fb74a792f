/**
 * `sluice verify` range by range: tables are written on both sides with plain SQL (no pipeline),
 * then changed on one side in known ways; verify must say equal exactly when they are, name the
 * changed keys (in the first and last open-ended ranges too), find extra rows crowded into one
 * range by bisecting it, honour a rows/s ceiling, compare only a `--where` scope, and refuse bad
 * flags with exit 2.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { makeWorkdir, sluice, type Workdir } from '../support/sluice.js';
import type { TableVerdict } from '../../src/verify/verifier.js';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;

/** Composite key with text values whose order differs between the C and linguistic collations. */
const create = (t: string) => `CREATE TABLE ${t} (tenant int, code text, amount numeric, note text, PRIMARY KEY (tenant, code))`;
const fill = (t: string, n: number) =>
  `INSERT INTO ${t} SELECT g % 7, 'k' || g || CASE g % 3 WHEN 0 THEN 'B' WHEN 1 THEN 'a' ELSE 'Ä' END, g * 1.5, md5(g::text) FROM generate_series(1, ${n}) g`;

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  for (const [t, n] of [
    ['public.v_main', 12_000],
    ['public.v_crowd', 12_000],
    ['public.v_empty', 0],
  ] as const) {
    await source.query(`${create(t)}; ${fill(t, n)}; ANALYZE ${t}`);
    await destination.query(`${create(t)}; ${fill(t, n)}`);
  }
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    tables: [{ name: 'public.v_main' }, { name: 'public.v_crowd' }, { name: 'public.v_empty' }],
  });
});

after(async () => {
  work?.remove();
  await stopAll?.();
});

async function verify(table: string, ...flags: string[]): Promise<{ code: number | null; v: TableVerdict; stderr: string; ms: number }> {
  const t = Date.now();
  const r = await sluice(['verify', table, '--json', ...flags], { config: work.config, timeoutMs: 60_000 });
  const ms = Date.now() - t;
  assert.ok(r.code === 0 || r.code === 1, `exit ${r.code}: ${r.stdout}${r.stderr}`);
  const out = JSON.parse(r.stdout) as { equal: boolean; tables: TableVerdict[] };
  assert.equal(out.tables.length, 1);
  assert.equal(out.equal, out.tables[0].equal);
  return { code: r.code, v: out.tables[0], stderr: r.stderr, ms };
}

test('equal tables: exit 0 with one range or many, and the same digest on both sides', async () => {
  const one = await verify('public.v_main', '--attempts', '1');
  assert.equal(one.code, 0);
  assert.equal(one.v.ranges, 1);
  assert.equal(one.v.sourceRows, 12_000);
  assert.equal(one.v.destinationRows, 12_000);
  assert.equal(one.v.sourceMd5, one.v.destinationMd5);

  const many = await verify('public.v_main', '--attempts', '1', '--range-rows', '1000');
  assert.equal(many.code, 0, JSON.stringify(many.v));
  // Boundaries every 1,000th source key; the 12th is the last key, so a 13th, open-ended range
  // follows (empty on the source: any extra destination rows past the end land there).
  assert.equal(many.v.ranges, 13);
  assert.equal(many.v.rangesDiffering, 0);
  assert.equal(many.v.sourceRows, 12_000);
  assert.deepEqual(many.v.differences, []);
});

test('a rows/s ceiling paces the reads', async () => {
  const r = await verify('public.v_main', '--attempts', '1', '--range-rows', '1000', '--max-rows-per-second', '6000');
  assert.equal(r.code, 0);
  // 12,000 rows at 6,000 rows/s: the last range is not done before 2 s.
  assert.ok(r.ms >= 1900, `took ${r.ms} ms`);
});

test('changed, deleted and extra rows (before the first and after the last source key) are named', async () => {
  const key = (await source.query(`SELECT tenant, code FROM public.v_main ORDER BY tenant, code OFFSET 5000 LIMIT 2`)).rows;
  await destination.query(`UPDATE public.v_main SET amount = amount + 1 WHERE tenant = $1 AND code = $2`, [key[0].tenant, key[0].code]);
  await destination.query(`DELETE FROM public.v_main WHERE tenant = $1 AND code = $2`, [key[1].tenant, key[1].code]);
  await destination.query(`INSERT INTO public.v_main VALUES (-1, 'first', 1, 'x'), (99, 'last', 1, 'y')`);

  const r = await verify('public.v_main', '--attempts', '1', '--range-rows', '1000');
  assert.equal(r.code, 1);
  assert.equal(r.v.equal, false);
  assert.equal(r.v.sourceRows, 12_000);
  assert.equal(r.v.destinationRows, 12_001);
  assert.notEqual(r.v.sourceMd5, r.v.destinationMd5);
  assert.equal(r.v.ranges, 13);
  assert.equal(r.v.rangesDiffering, 3, 'the first range, the last (open-ended) one, and the one holding both changed keys');
  const got = r.v.differences.map((d) => `${d.key} ${d.problem}`).sort();
  const expected = [
    `(${key[0].tenant},${key[0].code}) differs`,
    `(${key[1].tenant},${key[1].code}) missing in destination`,
    `(-1,first) only in destination`,
    `(99,last) only in destination`,
  ].sort();
  assert.deepEqual(got, expected);

  // The text form says the same for people.
  const text = await sluice(['verify', 'public.v_main', '--attempts', '1', '--range-rows', '1000'], { config: work.config });
  assert.equal(text.code, 1);
  assert.match(text.stdout, /^DIFFERENT public\.v_main: source 12,000 rows .* destination 12,001 rows .*; 3 of 13 key ranges differ$/m);
  assert.match(text.stdout, /^ {2}\(-1,first\): only in destination$/m);
});

test('--where compares only the scope, on both sides; a bad condition exits 2 before anything is read', async () => {
  // After the previous test the differences are in the tenants of two changed keys, and at -1 and 99.
  const changed = (await destination.query(`SELECT DISTINCT tenant FROM public.v_main WHERE tenant BETWEEN 0 AND 6 AND amount <> (regexp_replace(code, '\\D', '', 'g')::int * 1.5)`)).rows.map((r) => r.tenant as number);
  const missing = (await source.query(`SELECT tenant FROM public.v_main s WHERE tenant BETWEEN 0 AND 6 ORDER BY tenant, code OFFSET 5001 LIMIT 1`)).rows[0].tenant as number;
  const dirty = new Set([...changed, missing]);
  const clean = [0, 1, 2, 3, 4, 5, 6].find((t) => !dirty.has(t))!;
  const ok = await verify('public.v_main', '--attempts', '1', '--range-rows', '300', '--where', `tenant = ${clean}`);
  assert.equal(ok.code, 0, JSON.stringify(ok.v));
  assert.equal(ok.v.where, `tenant = ${clean}`);
  const n = (await source.query(`SELECT count(*)::int AS n FROM public.v_main WHERE tenant = ${clean}`)).rows[0].n as number;
  assert.equal(ok.v.sourceRows, n);
  assert.equal(ok.v.destinationRows, n);

  const bad = await verify('public.v_main', '--attempts', '1', '--range-rows', '300', '--where', `tenant IN (${[...dirty].join(', ')}, 99)`);
  assert.equal(bad.code, 1);
  assert.deepEqual(
    bad.v.differences.map((d) => d.problem).sort(),
    ['differs', 'missing in destination', 'only in destination'],
    JSON.stringify(bad.v.differences),
  );
  assert.ok(!bad.v.differences.some((d) => d.key === '(-1,first)'), 'tenant -1 is outside the scope');

  const text = await sluice(['verify', 'public.v_main', '--attempts', '1', '--where', `tenant = ${clean}`], { config: work.config });
  assert.equal(text.code, 0);
  assert.match(text.stdout, new RegExp(`^EQUAL +public\\.v_main \\(where tenant = ${clean}\\): `, 'm'));

  const wrong = await sluice(['verify', 'public.v_main', '--where', 'no_such_column = 1'], { config: work.config });
  assert.equal(wrong.code, 2, wrong.stdout + wrong.stderr);
  assert.match(wrong.stderr, /no_such_column/);
});

test('thousands of extra rows crowded into one range are found by bisecting it, within bounded memory', async () => {
  // 5,000 extra rows between two neighbouring source keys of tenant 3: one source range holds them all.
  await destination.query(`INSERT INTO public.v_crowd SELECT 3, 'k3000a' || lpad(g::text, 5, '0'), 0, 'extra' FROM generate_series(1, 5000) g`);
  const r = await verify('public.v_crowd', '--attempts', '1', '--range-rows', '500');
  assert.equal(r.code, 1);
  assert.equal(r.v.destinationRows, 17_000);
  assert.equal(r.v.rangesDiffering, 1);
  assert.equal(r.v.differences.length, 20, 'the first 20 differing keys');
  for (const d of r.v.differences) {
    assert.equal(d.problem, 'only in destination', d.key);
    assert.match(d.key, /^\(3,k3000a\d{5}\)$/);
  }
});

test('an empty source against a full destination: every key is only in the destination', async () => {
  await destination.query(`INSERT INTO public.v_empty SELECT g, 'e' || g, 0, 'x' FROM generate_series(1, 3000) g`);
  const r = await verify('public.v_empty', '--attempts', '1', '--range-rows', '500');
  assert.equal(r.code, 1);
  assert.equal(r.v.sourceRows, 0);
  assert.equal(r.v.destinationRows, 3000);
  assert.equal(r.v.ranges, 1);
  assert.equal(r.v.differences.length, 20);
  assert.ok(r.v.differences.every((d) => d.problem === 'only in destination'));
});

test('bad flags exit 2 and name the flag', async () => {
  for (const flags of [['--range-rows', '0'], ['--attempts', 'x'], ['--max-rows-per-second', '-5']]) {
    const r = await sluice(['verify', 'public.v_main', ...flags], { config: work.config });
    assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, new RegExp(flags[0]));
  }
});
