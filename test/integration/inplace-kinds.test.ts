/**
 * In-place job kinds beyond plain update/delete (docs/inplace.md): undo and revert (rows changed
 * since are left and named), archive-delete (rows move in the delete's own statement),
 * insert-select, and the NOT NULL finish of a fill. Checked with plain SQL on the table.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inplaceFixture } from '../support/inplace.js';
import { sluice } from '../support/sluice.js';

const fx = inplaceFixture('inplace-kinds');
const jobFile = fx.jobFile;
const cli = fx.cli;
const db = { query: (sql: string, params?: unknown[]) => fx.db().query(sql, params) };
const one = async (sql: string) => (await db.query(sql)).rows[0];

test('undo keeps before-images; revert restores them chunk by chunk and leaves rows changed since', { timeout: 120_000 }, async () => {
  await db.query(`CREATE TABLE public.prices (id int PRIMARY KEY, price numeric(12,4) NOT NULL, note text, at timestamptz)`);
  await db.query(`INSERT INTO public.prices SELECT g, g / 7.0, CASE WHEN g % 4 = 0 THEN NULL ELSE 'n' || g END, timestamptz '2024-01-01' + g * interval '1 minute' FROM generate_series(1, 5000) g`);
  const before = await one(`SELECT md5(string_agg(p::text, ',' ORDER BY id)) AS h FROM public.prices p`);
  const job = jobFile('raise', `table: prices\nkind: update\nset: "price = price * 1.1, note = 'raised', at = now()"\nwhere: "id <= 3000"\nundo: true\nchunk: { rows: 400 }`);
  const r = await cli(['run', job]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal((await one(`SELECT count(*)::int AS n FROM public.prices WHERE note = 'raised'`)).n, 3000);
  assert.equal((await one(`SELECT count(*)::int AS n FROM _sluice.inplace_images`)).n, 3000, 'one image a changed row');

  // The application changes two rows since; one is deleted.
  await db.query(`UPDATE public.prices SET price = 999 WHERE id = 10`);
  await db.query(`UPDATE public.prices SET note = 'edited' WHERE id = 2500`);
  await db.query(`DELETE FROM public.prices WHERE id = 77`);
  const rv = await cli(['revert', job]);
  assert.equal(rv.code, 0, rv.stdout + rv.stderr);
  assert.match(rv.stdout, /2,997 rows restored, 3 left as they are/);
  assert.match(rv.stdout, /\["10"\]/);

  // Everything else is as it was before the job, to the byte.
  await db.query(`UPDATE public.prices SET price = 10 / 7.0, note = 'n10' WHERE id = 10`);
  await db.query(`UPDATE public.prices SET price = 2500 / 7.0, note = NULL, at = timestamptz '2024-01-01' + 2500 * interval '1 minute' WHERE id = 2500`);
  await db.query(`UPDATE public.prices SET at = timestamptz '2024-01-01' + 10 * interval '1 minute' WHERE id = 10`);
  await db.query(`INSERT INTO public.prices VALUES (77, 77 / 7.0, 'n77', timestamptz '2024-01-01' + 77 * interval '1 minute')`);
  assert.equal((await one(`SELECT md5(string_agg(p::text, ',' ORDER BY id)) AS h FROM public.prices p`)).h, before.h);

  const fin = await cli(['ensure-finished', job]);
  assert.equal(fin.code, 1);
  assert.match(fin.stdout, /reverted by run/);
  const again = await cli(['revert', job]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /reverted already/);
  assert.equal((await cli(['audit', job, '--check'])).code, 0);
});

test('archive-delete moves rows to the archive table in the same statement; insert-select fills another table', { timeout: 120_000 }, async () => {
  await db.query(`CREATE TABLE public.logs (id bigint PRIMARY KEY, at date NOT NULL, body jsonb)`);
  await db.query(`INSERT INTO public.logs SELECT g, date '2020-01-01' + (g % 1500), jsonb_build_object('g', g) FROM generate_series(1, 20000) g`);
  const old = await one(`SELECT count(*)::int AS n, md5(string_agg(l::text, ',' ORDER BY id)) AS h FROM public.logs l WHERE at < date '2022-01-01'`);
  const job = jobFile('expire-logs', `table: logs\nkind: archive-delete\nwhere: "at < date '2022-01-01'"\nchunk: { rows: 3000 }`);
  const plan = await cli(['plan', job]);
  assert.equal(plan.code, 0, plan.stderr);
  assert.equal((await one(`SELECT to_regclass('sluice_archive.logs_expire_logs') IS NULL AS gone`)).gone, true, 'plan made no archive table');
  const r = await cli(['run', job]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal((await one(`SELECT count(*)::int AS n FROM public.logs WHERE at < date '2022-01-01'`)).n, 0);
  assert.equal((await one(`SELECT count(*)::int AS n FROM public.logs`)).n, 20000 - old.n);
  const archived = await one(`SELECT count(*)::int AS n, md5(string_agg(l::text, ',' ORDER BY id)) AS h FROM sluice_archive.logs_expire_logs l`);
  assert.deepEqual(archived, old, 'the archive holds exactly the deleted rows');

  await db.query(`CREATE TABLE public.log_ids (id bigint PRIMARY KEY, day date NOT NULL)`);
  await db.query(`INSERT INTO public.log_ids VALUES (19999, date '1999-01-01')`);
  const copy = jobFile('copy-ids', `table: logs\nkind: insert-select\ninto: public.log_ids\ncolumns: [id, day]\nselect: "id, at"\nonConflict: "DO NOTHING"\nchunk: { rows: 2500 }`);
  const c = await cli(['run', copy]);
  assert.equal(c.code, 0, c.stdout + c.stderr);
  const extra = await one(`SELECT count(*)::int AS n FROM public.log_ids i WHERE NOT EXISTS (SELECT 1 FROM public.logs l WHERE l.id = i.id)`);
  assert.equal(extra.n, 1, 'only the row that was there before');
  const missing = await one(`SELECT count(*)::int AS n FROM public.logs l WHERE NOT EXISTS (SELECT 1 FROM public.log_ids i WHERE i.id = l.id)`);
  assert.equal(missing.n, 0, 'every row copied');
  assert.equal((await one(`SELECT day::text AS d FROM public.log_ids WHERE id = 19999`)).d, '1999-01-01', 'the conflict kept the existing row');
});

test('a fill finishes with NOT NULL (check NOT VALID, validate, set, drop); a null left behind fails the finish, named', { timeout: 120_000 }, async () => {
  await db.query(`CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL, domain text)`);
  await db.query(`INSERT INTO public.users SELECT g, 'u' || g || '@ex' || (g % 3) || '.org', NULL FROM generate_series(1, 8000) g`);
  const job = jobFile('fill-domain', `table: users\nkind: update\nset: "domain = split_part(email, '@', 2)"\nwhere: "domain IS NULL"\nfinish: { notNull: [domain] }\nchunk: { rows: 1500 }`);
  const r = await cli(['run', job]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal((await one(`SELECT attnotnull FROM pg_attribute WHERE attrelid = 'public.users'::regclass AND attname = 'domain'`)).attnotnull, true);
  assert.equal((await one(`SELECT count(*)::int AS n FROM pg_constraint WHERE conrelid = 'public.users'::regclass AND contype = 'c'`)).n, 0, 'the helper check is gone');

  await db.query(`CREATE TABLE public.members (id int PRIMARY KEY, tier text)`);
  await db.query(`INSERT INTO public.members SELECT g, NULL FROM generate_series(1, 3000) g`);
  const partial = jobFile('fill-tier', `table: members\nkind: update\nset: "tier = 'basic'"\nwhere: "tier IS NULL AND id <> 1234"\nfinish: { notNull: [tier] }`);
  const f = await cli(['run', partial]);
  assert.equal(f.code, 1, f.stdout + f.stderr);
  assert.match(f.stderr, /finish: 1 rows of public.members still have tier NULL/);
  assert.equal((await one(`SELECT attnotnull FROM pg_attribute WHERE attrelid = 'public.members'::regclass AND attname = 'tier'`)).attnotnull, false);
  await db.query(`UPDATE public.members SET tier = 'gold' WHERE id = 1234`);
  const again = await cli(['run', partial]);
  assert.equal(again.code, 0, again.stdout + again.stderr);
  assert.equal((await one(`SELECT attnotnull FROM pg_attribute WHERE attrelid = 'public.members'::regclass AND attname = 'tier'`)).attnotnull, true);
});
