/**
 * `sluice verify` range by range: tables are written on both sides with plain SQL (no pipeline),
 * then changed on one side in known ways; verify must say equal exactly when they are, name the
 * changed keys (in the first and last open-ended ranges too), find extra rows crowded into one
 * range by bisecting it, honour a rows/s ceiling, compare only a `--where` scope, and refuse bad
 * flags with exit 2.
 *
 * The two sides sort text differently, as servers do: the source database's default collation is
 * "C" (byte order), the destination database's is ICU en-US ('B' < 'a' in one, 'a' < 'B' in the
 * other). Equal tables must still read as equal with many ranges: the key walk, the range bounds
 * and the row order all compare text keys byte-wise on both sides.
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
/** The destination database: ICU en-US by default, unlike the source's "C". */
const DST_DB = 'verify_icu';
const dst = (sql: string, params?: unknown[]) => destination.query(sql, params, DST_DB);

/**
 * Composite key with text values whose order differs between the C and linguistic collations: in "C"
 * every 'kB…' sorts before every 'ka…', and those before every 'kÄ…'; in en-US 'ka…' and 'kÄ…'
 * interleave, and both come before 'kB…'.
 */
const create = (t: string) => `CREATE TABLE ${t} (tenant int, code text, amount numeric, note text, PRIMARY KEY (tenant, code))`;
const fill = (t: string, n: number) =>
  `INSERT INTO ${t} SELECT g % 7, 'k' || CASE g % 3 WHEN 0 THEN 'B' WHEN 1 THEN 'a' ELSE 'Ä' END || g, g * 1.5, md5(g::text) FROM generate_series(1, ${n}) g`;

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await destination.query(`CREATE DATABASE ${DST_DB} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`);
  const order = async (q: (sql: string) => Promise<{ rows: { x: string }[] }>) =>
    (await q(`SELECT x FROM unnest(ARRAY['a', 'B']) x ORDER BY x`)).rows.map((r) => r.x).join('');
  assert.equal(await order((sql) => source.query(sql)), 'Ba', 'the source sorts byte-wise');
  assert.equal(await order((sql) => dst(sql)), 'aB', 'the destination sorts linguistically');
  for (const [t, n] of [
    ['public.v_main', 12_000],
    ['public.v_crowd', 12_000],
    ['public.v_empty', 0],
  ] as const) {
    await source.query(`${create(t)}; ${fill(t, n)}; ANALYZE ${t}`);
    await dst(`${create(t)}; ${fill(t, n)}`);
  }
  await source.query(create('public.v_only_source'));
  await dst(create('public.v_only_destination'));
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(DST_DB),
    tables: [
      { name: 'public.v_main' },
      { name: 'public.v_crowd' },
      { name: 'public.v_empty' },
      { name: 'public.v_only_source' },
      { name: 'public.v_only_destination' },
    ],
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
  let out: { equal: boolean; tables: TableVerdict[] };
  try {
    out = JSON.parse(r.stdout) as typeof out;
  } catch {
    assert.fail(`exit ${r.code}, no JSON: ${r.stdout}${r.stderr}`);
  }
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

test('a rows/s ceiling paces the reads: a paced run takes the time the ceiling sets, beyond an unpaced run', async () => {
  const unpaced = await verify('public.v_main', '--attempts', '1', '--range-rows', '1000');
  assert.equal(unpaced.code, 0);
  // A ceiling at which reading 12,000 rows takes 3 s longer than the whole unpaced run did: the paced
  // run cannot end sooner than that (its pacing starts after its own start-up), whatever the machine.
  const rate = Math.floor(12_000 / ((unpaced.ms + 3000) / 1000));
  const paced = await verify('public.v_main', '--attempts', '1', '--range-rows', '1000', '--max-rows-per-second', String(rate));
  assert.equal(paced.code, 0);
  assert.ok(paced.ms >= unpaced.ms + 2500, `unpaced ${unpaced.ms} ms; paced at ${rate} rows/s ${paced.ms} ms`);
});

test('changed, deleted and extra rows (before the first and after the last source key) are named', async () => {
  const key = (await source.query(`SELECT tenant, code FROM public.v_main ORDER BY tenant, code OFFSET 5000 LIMIT 2`)).rows;
  await dst(`UPDATE public.v_main SET amount = amount + 1 WHERE tenant = $1 AND code = $2`, [key[0].tenant, key[0].code]);
  await dst(`DELETE FROM public.v_main WHERE tenant = $1 AND code = $2`, [key[1].tenant, key[1].code]);
  await dst(`INSERT INTO public.v_main VALUES (-1, 'first', 1, 'x'), (99, 'last', 1, 'y')`);

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
  const changed = (await dst(`SELECT DISTINCT tenant FROM public.v_main WHERE tenant BETWEEN 0 AND 6 AND amount <> (regexp_replace(code, '\\D', '', 'g')::int * 1.5)`)).rows.map((r) => r.tenant as number);
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
  await dst(`INSERT INTO public.v_crowd SELECT 3, 'k3000a' || lpad(g::text, 5, '0'), 0, 'extra' FROM generate_series(1, 5000) g`);
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
  await dst(`INSERT INTO public.v_empty SELECT g, 'e' || g, 0, 'x' FROM generate_series(1, 3000) g`);
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

test('a table missing on one side: exit 2 naming that side', async () => {
  const noDst = await sluice(['verify', 'public.v_only_source'], { config: work.config });
  assert.equal(noDst.code, 2, noDst.stdout + noDst.stderr);
  assert.match(noDst.stderr, /destination table public\.v_only_source does not exist/);
  const noSrc = await sluice(['verify', 'public.v_only_destination'], { config: work.config });
  assert.equal(noSrc.code, 2, noSrc.stdout + noSrc.stderr);
  assert.match(noSrc.stderr, /source table public\.v_only_destination does not exist/);
});
