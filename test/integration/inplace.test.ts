/**
 * In-place jobs on a real PostgreSQL (docs/inplace.md): exactly-once under SIGKILL with a
 * non-idempotent job, fills with where and their post-check, deletes on a composite key, a poison
 * row sent to the dead-letter table, the health gate holding on a user query, pause/resume/throttle
 * from another process, the audit ledger's hash chain, and bad inputs refused before any row changes.
 * The checks read the table with plain SQL.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { inplaceFixture } from '../support/inplace.js';
import { sluice, spawnSluice, waitUntil } from '../support/sluice.js';

const fx = inplaceFixture('inplace');
const jobFile = fx.jobFile;
const cli = fx.cli;
const db = { query: (sql: string, params?: unknown[]) => fx.db().query(sql, params), url: () => fx.db().url() };
const dir = () => fx.dir();

test('a non-idempotent job (balance = balance + 1) killed with SIGKILL again and again changes each row exactly once', { timeout: 240_000 }, async () => {
  const ROWS = 120_000;
  await db.query(`CREATE TABLE public.accounts (id bigint PRIMARY KEY, balance int NOT NULL)`);
  await db.query(`INSERT INTO public.accounts SELECT g, 0 FROM generate_series(1, ${ROWS}) g`);
  await db.query(`ANALYZE public.accounts`);
  const job = jobFile('bump', `table: public.accounts\nkind: update\nset: "balance = balance + 1"\nchunk: { rows: 500, targetSeconds: 0.02, maxRows: 1500 }\nthrottle: { maxRowsPerSecond: 40000 }`);
  const kills: string[] = [];
  let midway = 0;
  for (let i = 0; i < 4; i++) {
    const run = spawnSluice(['-c', join(dir(), 'none.yaml'), 'inplace', 'run', job]);
    await run.waitForOutput(/run started|resuming run/, 60_000);
    await new Promise((r) => setTimeout(r, 200 + Math.floor(Math.random() * 600)));
    if (run.child.exitCode !== null) break;
    run.kill('SIGKILL');
    await run.exited(10_000);
    const done = (await db.query(`SELECT count(*)::int AS n FROM public.accounts WHERE balance = 1`)).rows[0].n as number;
    kills.push(`kill ${i + 1}: ${done} rows done`);
    if (done > 0 && done < ROWS) midway++;
  }
  assert.ok(midway > 0, `a kill landed in the middle of the run: ${kills.join('; ')}`);
  const st = await cli(['status', job, '--json']);
  assert.equal(st.code, 0, st.stderr);
  const status = JSON.parse(st.stdout) as { state: string; running: boolean };
  assert.ok(['stopped', 'done'].includes(status.state), `after the kills: ${st.stdout}`);
  assert.equal(status.running, false);

  const r = await cli(['run', job]);
  assert.equal(r.code, 0, `${kills.join('\n')}\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /done/);
  const check = (await db.query(`SELECT count(*)::int AS n, sum(balance)::int8 AS s, count(*) FILTER (WHERE balance <> 1)::int AS wrong FROM public.accounts`)).rows[0];
  assert.equal(check.wrong, 0, `every row changed exactly once; ${kills.join('; ')}`);
  assert.equal(Number(check.s), ROWS);
  const ledger = (await db.query(`SELECT sum(c.rows_affected)::int8 AS rows, count(*)::int AS chunks FROM _sluice.inplace_chunks c JOIN _sluice.inplace_runs r ON r.id = c.run_id WHERE r.job = 'bump'`)).rows[0];
  assert.equal(Number(ledger.rows), ROWS, 'the ledger counts each row once');

  // Done: a second run does nothing without --again; ensure-finished says so.
  const again = await cli(['run', job]);
  assert.equal(again.code, 0);
  assert.match(again.stdout, /already done/);
  assert.equal((await db.query(`SELECT count(*) FILTER (WHERE balance <> 1)::int AS wrong FROM public.accounts`)).rows[0].wrong, 0);
  assert.equal((await cli(['ensure-finished', job])).code, 0);

  // The ledger: intact, then an edited run and a deleted chunk are both found.
  const ok = await cli(['audit', job, '--check']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /ledger intact/);
  await db.query(`UPDATE _sluice.inplace_runs SET reason = 'something else' WHERE job = 'bump'`);
  await db.query(`DELETE FROM _sluice.inplace_chunks WHERE seq = 2 AND run_id = (SELECT id FROM _sluice.inplace_runs WHERE job = 'bump')`);
  const edited = await cli(['audit', job, '--check']);
  assert.equal(edited.code, 1, edited.stdout);
  assert.match(edited.stdout, /opening record .* does not match its hash/);
  assert.match(edited.stdout, /chunk records were edited/);
});

test('a fill with where: done, verified, a row written since is named; ensure-finished before and after', { timeout: 120_000 }, async () => {
  await db.query(`CREATE TABLE public.orders (id int PRIMARY KEY, qty int NOT NULL, price numeric(10,2) NOT NULL, total numeric(12,2))`);
  await db.query(`INSERT INTO public.orders SELECT g, 1 + g % 5, (g % 100) + 0.5, CASE WHEN g % 3 = 0 THEN 1 END FROM generate_series(1, 30000) g`);
  const job = jobFile('fill-total', `table: orders\nkind: update\nset: "total = qty * price"\nwhere: "total IS NULL"\nchunk: { rows: 2000 }`);
  assert.equal((await cli(['ensure-finished', job])).code, 1);
  const plan = await cli(['plan', job]);
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, /Index Scan.*orders_pkey|Bitmap/);
  assert.match(plan.stdout, /sample: 3 chunks run and rolled back: 6,000 rows scanned, 4,000 changed/);
  assert.equal((await db.query(`SELECT count(*)::int AS n FROM public.orders WHERE total IS NULL`)).rows[0].n, 20000, 'plan changed nothing');

  const r = await cli(['run', job]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const rows = (await db.query(`SELECT count(*) FILTER (WHERE total IS NULL)::int AS missing, count(*) FILTER (WHERE g.id % 3 <> 0 AND total <> qty * price)::int AS wrong FROM public.orders g`)).rows[0];
  assert.deepEqual(rows, { missing: 0, wrong: 0 });
  assert.equal((await db.query(`SELECT count(*)::int AS n FROM public.orders WHERE id % 3 = 0 AND total <> 1`)).rows[0].n, 0, 'rows outside where untouched');
  const v = await cli(['verify', job, '--json']);
  assert.equal(v.code, 0, v.stdout);
  assert.equal(JSON.parse(v.stdout).remaining, 0);
  assert.equal((await cli(['ensure-finished', job])).code, 0);

  await db.query(`UPDATE public.orders SET total = NULL WHERE id = 12001`);
  const v2 = await cli(['verify', job]);
  assert.equal(v2.code, 1, v2.stdout);
  assert.match(v2.stdout, /1 rows in \d+ checked key ranges still match/);
});

test('a delete on a composite key, and a poison row that goes to the dead-letter table while the run goes on', { timeout: 120_000 }, async () => {
  await db.query(`CREATE TABLE public.events (tenant text, id int, v int NOT NULL CHECK (v < 100), PRIMARY KEY (tenant, id))`);
  await db.query(`INSERT INTO public.events SELECT t, g, CASE WHEN t = 'b' AND g = 777 THEN 95 ELSE g % 50 END FROM unnest(ARRAY['a','b','c']) t, generate_series(1, 4000) g`);
  const del = jobFile('purge-c', `table: public.events\nkind: delete\nwhere: "tenant = 'c'"\nchunk: { rows: 700 }`);
  const d = await cli(['run', del]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const left = (await db.query(`SELECT tenant, count(*)::int AS n FROM public.events GROUP BY 1 ORDER BY 1`)).rows;
  assert.deepEqual(left, [{ tenant: 'a', n: 4000 }, { tenant: 'b', n: 4000 }]);

  const bump = jobFile('bump-b', `table: public.events\nkind: update\nset: "v = v + 10"\nwhere: "tenant = 'b'"\nchunk: { rows: 1000 }`);
  const u = await cli(['run', bump]);
  assert.equal(u.code, 0, u.stdout + u.stderr);
  assert.match(u.stdout, /1 rows in _sluice.inplace_dead_letters/);
  const dl = (await db.query(`SELECT key, sqlstate FROM _sluice.inplace_dead_letters`)).rows;
  assert.deepEqual(dl, [{ key: ['b', '777'], sqlstate: '23514' }]);
  const b = (await db.query(`SELECT count(*) FILTER (WHERE v = id % 50 + 10)::int AS bumped, count(*) FILTER (WHERE id = 777 AND v = 95)::int AS poison FROM public.events WHERE tenant = 'b'`)).rows[0];
  assert.deepEqual(b, { bumped: 3999, poison: 1 });
  assert.equal((await db.query(`SELECT count(*)::int AS n FROM public.events WHERE tenant = 'a' AND v <> id % 50`)).rows[0].n, 0);

  // The cause fixed, the failed row is done by retry-failed; the ledger still adds up.
  const early = await cli(['retry-failed', bump]);
  assert.equal(early.code, 1, 'still failing while the cause is there');
  assert.match(early.stdout, /1 fail again: \["b","777"\]/);
  await db.query(`ALTER TABLE public.events DROP CONSTRAINT events_v_check, ADD CONSTRAINT events_v_check CHECK (v < 200)`);
  const retried = await cli(['retry-failed', bump]);
  assert.equal(retried.code, 0, retried.stdout + retried.stderr);
  assert.match(retried.stdout, /1 failed rows done now/);
  assert.equal((await db.query(`SELECT v FROM public.events WHERE tenant = 'b' AND id = 777`)).rows[0].v, 105);
  const run = (await db.query(`SELECT rows_affected::int AS rows, dead_letters FROM _sluice.inplace_runs WHERE job = 'bump-b'`)).rows[0];
  assert.deepEqual(run, { rows: 4000, dead_letters: 0 });
  assert.equal((await cli(['retry-failed', bump])).code, 0, 'nothing left: exit 0');
  // (The first test edits its own run on purpose; this run must not be among the problems.)
  const audit = JSON.parse((await cli(['audit', bump, '--check', '--json'])).stdout) as { problems: { run: number }[] };
  const id = (await db.query(`SELECT id::int AS id FROM _sluice.inplace_runs WHERE job = 'bump-b'`)).rows[0].id as number;
  assert.deepEqual(audit.problems.filter((p) => p.run === id), []);
});

test('held by the throttle query; paused, retuned and resumed from another process', { timeout: 120_000 }, async () => {
  await db.query(`CREATE TABLE public.flags (on_hold int NOT NULL)`);
  await db.query(`INSERT INTO public.flags VALUES (1)`);
  await db.query(`CREATE TABLE public.items (id int PRIMARY KEY, seen bool NOT NULL DEFAULT false)`);
  await db.query(`INSERT INTO public.items (id) SELECT generate_series(1, 20000)`);
  const job = jobFile('mark', `table: items\nkind: update\nset: "seen = true"\nchunk: { rows: 200, maxRows: 200 }\nthrottle: { query: "SELECT sum(on_hold) FROM public.flags", maxRowsPerSecond: 2000 }`);
  const run = spawnSluice(['-c', join(dir(), 'none.yaml'), 'inplace', 'run', job]);
  try {
    await run.waitForOutput(/held: throttle query returned 1/, 30_000);
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM public.items WHERE seen`)).rows[0].n, 0, 'nothing changes while held');
    await db.query(`UPDATE public.flags SET on_hold = 0`);
    await waitUntil('some rows marked', async () => (await db.query(`SELECT count(*)::int AS n FROM public.items WHERE seen`)).rows[0].n > 0, 30_000);

    const p = await cli(['pause', job]);
    assert.equal(p.code, 0, p.stderr);
    await waitUntil('paused', async () => JSON.parse((await cli(['status', job, '--json'])).stdout).state === 'paused', 30_000);
    const n1 = (await db.query(`SELECT count(*)::int AS n FROM public.items WHERE seen`)).rows[0].n as number;
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM public.items WHERE seen`)).rows[0].n, n1, 'no chunk while paused');

    assert.equal((await cli(['throttle', job, '--max-rows-per-second', '0'])).code, 0);
    assert.equal((await cli(['resume', job])).code, 0);
    const r = await run.exited(60_000);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /throttle changed/);
  } finally {
    if (run.child.exitCode === null) run.kill('SIGKILL');
  }
  assert.equal((await db.query(`SELECT count(*)::int AS n FROM public.items WHERE NOT seen`)).rows[0].n, 0);
});

test('bad inputs exit 2 before any row changes, naming the fix', { timeout: 120_000 }, async () => {
  await db.query(`CREATE TABLE public.nokey (a int, b int)`);
  await db.query(`INSERT INTO public.nokey SELECT g, g FROM generate_series(1, 100) g`);
  await db.query(`CREATE TABLE public.keyed (id int PRIMARY KEY, b int)`);
  await db.query(`INSERT INTO public.keyed SELECT g, g FROM generate_series(1, 100) g`);
  const cases: [string, string, RegExp][] = [
    ['unknown-column', `table: keyed\nkind: update\nset: "nope = 1"`, /column "nope" of relation "keyed" does not exist.*check set: and where:/],
    ['bad-where', `table: keyed\nkind: update\nset: "b = 0"\nwhere: "b >>> 1 AND"`, /syntax error.*check set: and where:/],
    ['no-key', `table: nokey\nkind: update\nset: "b = 0"`, /no primary key/],
    ['no-table', `table: missing\nkind: delete`, /table public.missing not found/],
    ['no-set', `table: keyed\nkind: update`, /an update job needs set:/],
    ['typo', `table: keyed\nkind: delete\nchunks: { rows: 10 }`, /chunks/],
  ];
  for (const [name, yaml, pattern] of cases) {
    const r = await cli(['run', jobFile(name, yaml)]);
    assert.equal(r.code, 2, `${name}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, pattern, name);
  }
  // Chunks so large that PostgreSQL reads the whole table for each rather than the key's index.
  await db.query(`CREATE TABLE public.dated (id int PRIMARY KEY, at timestamptz NOT NULL, b int)`);
  await db.query(`INSERT INTO public.dated SELECT g, '2026-01-01'::timestamptz + g * interval '1 minute', g FROM generate_series(1, 30000) g`);
  await db.query(`ANALYZE public.dated`);
  const scanJob = jobFile('scan', `table: dated\nkind: update\nset: "b = 0"\nchunk: { by: key, rows: 25000 }`);
  const scan = await cli(['plan', scanJob]);
  assert.equal(scan.code, 2, `scan: ${scan.stdout}${scan.stderr}`);
  assert.match(scan.stderr, /each chunk would read all of public\.dated .*Seq Scan.*--allow-scan/);
  const allowed = await cli(['plan', scanJob, '--allow-scan']);
  assert.equal(allowed.code, 0, `allowed: ${allowed.stdout}${allowed.stderr}`);
  assert.match(allowed.stdout, /reads the whole table: allowed by --allow-scan/);
  assert.equal((await db.query(`SELECT count(*)::int AS n FROM public.dated WHERE b = 0`)).rows[0].n, 0, 'plan changed nothing');
  const noReason = join(dir(), 'no-reason.yaml');
  writeFileSync(noReason, `job: no-reason\ndatabase: "${db.url()}"\ntable: keyed\nkind: delete\n`);
  const r = await cli(['run', noReason]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /say why it runs/);
  assert.deepEqual((await db.query(`SELECT count(*)::int AS n, sum(b)::int AS s FROM public.keyed`)).rows[0], { n: 100, s: 5050 });
  assert.equal((await db.query(`SELECT count(*)::int AS n FROM public.nokey WHERE b = 0`)).rows[0].n, 0);
});
