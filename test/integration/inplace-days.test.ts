/**
 * Day and hour chunks (docs/inplace.md): windows in a stated time zone, a skewed day cut into hours
 * and then key ranges, sparse days merged, exactly once under SIGKILL with a non-idempotent job, and
 * the per-window verify naming the day a row was written to since. Plain SQL checks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inplaceFixture } from '../support/inplace.js';
import { spawnSluice } from '../support/sluice.js';

const fx = inplaceFixture('inplace-days');
const one = async (sql: string) => (await fx.db().query(sql)).rows[0];

test('by day in America/New_York: skewed day in hours, sparse days merged, SIGKILL-safe, verified per window', { timeout: 180_000 }, async () => {
  const db = fx.db();
  await db.query(`CREATE TABLE public.events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, amount int NOT NULL, tag text)`);
  await db.query(`CREATE INDEX ON public.events (created_at)`);
  // 20 days from 2024-03-01 New York time: 200 rows a day, except 2024-03-10 (the DST switch) with 30,000.
  await db.query(`INSERT INTO public.events
    SELECT g, (timestamp '2024-03-01 00:00' + ((g % 20) || ' days')::interval + ((g * 37 % 86399) || ' seconds')::interval) AT TIME ZONE 'America/New_York', 0, NULL
      FROM generate_series(1, 4000) g`);
  await db.query(`INSERT INTO public.events
    SELECT 100000 + g, (timestamp '2024-03-10 00:00' + ((g * 7 % 86399) || ' seconds')::interval) AT TIME ZONE 'America/New_York', 0, NULL
      FROM generate_series(1, 30000) g`);
  await db.query(`ANALYZE public.events`);
  const total = (await one(`SELECT count(*)::int AS n FROM public.events`)).n as number;

  const job = fx.jobFile(
    'tag-days',
    `table: events\nkind: update\nset: "amount = amount + 1, tag = 'seen'"\nwhere: "tag IS NULL"\nchunk: { by: day, column: created_at, timeZone: America/New_York, rows: 1000, maxRows: 5000, targetSeconds: 0.05 }\nthrottle: { maxRowsPerSecond: 20000 }`,
  );
  const plan = await fx.cli(['plan', job]);
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, /scope 2024-03-01 00:00:00 to 2024-03-21 00:00:00: 20 buckets with rows, 34,000 rows for the job/);
  assert.match(plan.stdout, /2024-03-10 00:00:00 +30,200 rows/);

  // Killed twice on the way; then run to the end.
  for (let i = 0; i < 2; i++) {
    const r = spawnSluice(['-c', '/nonexistent.yaml', 'inplace', 'run', job]);
    await r.waitForOutput(/run started|resuming run/, 60_000);
    await new Promise((res) => setTimeout(res, 400 + i * 300));
    if (r.child.exitCode === null) r.kill('SIGKILL');
    await r.exited(10_000);
  }
  const mid = (await one(`SELECT count(*)::int AS n FROM public.events WHERE tag = 'seen'`)).n as number;
  const done = await fx.cli(['run', job]);
  assert.equal(done.code, 0, done.stdout + done.stderr);
  const after = await one(`SELECT count(*) FILTER (WHERE amount = 1 AND tag = 'seen')::int AS once, count(*) FILTER (WHERE amount <> 1)::int AS wrong FROM public.events`);
  assert.deepEqual(after, { once: total, wrong: 0 }, `exactly once (${mid} rows done when the kills stopped)`);

  // The windows: contiguous over the scope, hours for the skewed day, merged runs of small days.
  const wins = (await db.query(`SELECT DISTINCT win_from, win_to FROM _sluice.inplace_chunks c JOIN _sluice.inplace_runs r ON r.id = c.run_id WHERE r.job = 'tag-days' ORDER BY 1`)).rows as { win_from: string; win_to: string }[];
  assert.equal(wins[0].win_from, '2024-03-01 00:00:00');
  assert.equal(wins[wins.length - 1].win_to, '2024-03-21 00:00:00');
  for (let i = 1; i < wins.length; i++) assert.equal(wins[i].win_from, wins[i - 1].win_to, 'contiguous windows');
  assert.ok(wins.some((w) => w.win_from.startsWith('2024-03-10 ') && !w.win_from.endsWith('00:00:00')), 'the skewed day is cut into hours');
  assert.ok(wins.some((w) => w.win_to.slice(0, 10) > addDays(w.win_from.slice(0, 10), 1)), 'small days are merged');

  const v = await fx.cli(['verify', job, '--json']);
  assert.equal(v.code, 0, v.stdout);
  const verdict = JSON.parse(v.stdout) as { windows: { span: string; remaining: number }[] };
  assert.equal(verdict.windows.length, wins.length);

  // A row written since into a finished day is named with its day.
  await db.query(`INSERT INTO public.events VALUES (999999, timestamptz '2024-03-15 12:00 America/New_York', 0, NULL)`);
  const v2 = await fx.cli(['verify', job]);
  assert.equal(v2.code, 1, v2.stdout);
  assert.match(v2.stdout, /2024-03-1[0-5][^\n]*1 still match/);
});

test('day chunks refuse rows whose column is NULL, and a column that is not a time', { timeout: 60_000 }, async () => {
  const db = fx.db();
  await db.query(`CREATE TABLE public.notes (id int PRIMARY KEY, at timestamptz, n int)`);
  await db.query(`INSERT INTO public.notes SELECT g, CASE WHEN g = 5 THEN NULL ELSE now() - g * interval '1 hour' END, g FROM generate_series(1, 100) g`);
  const r = await fx.cli(['run', fx.jobFile('notes-null', `table: notes\nkind: delete\nchunk: { by: day, column: at }`)]);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /1 rows it is for have at NULL and lie in no day: add "AND at IS NOT NULL"/);
  const t = await fx.cli(['run', fx.jobFile('notes-int', `table: notes\nkind: delete\nchunk: { by: hour, column: n }`)]);
  assert.equal(t.code, 2);
  assert.match(t.stderr, /chunk.column n is integer/);
  assert.equal((await one(`SELECT count(*)::int AS n FROM public.notes`)).n, 100);
});

function addDays(day: string, n: number): string {
  return new Date(Date.parse(day + 'T00:00:00Z') + n * 86_400_000).toISOString().slice(0, 10);
}
