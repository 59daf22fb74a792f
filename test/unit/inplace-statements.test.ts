import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseJob } from '../../src/inplace/job.js';
import { boundarySql, chunkSql, rangeParams, remainingSql, setTargets, type JobTable } from '../../src/inplace/statements.js';

const t: JobTable = { schema: 'public', name: 'events', key: [{ name: 'tenant', type: 'text' }, { name: 'id', type: 'integer' }] };

test('chunk statements: row-value key ranges, open ends, the where joined', () => {
  assert.equal(
    chunkSql({ kind: 'update', set: 'v = v + 1', where: "tenant = 'b'" }, t, true, true).text,
    `UPDATE "public"."events" SET v = v + 1 WHERE ("tenant", "id") > ($1::text, $2::integer) AND ("tenant", "id") <= ($3::text, $4::integer) AND (tenant = 'b')`,
  );
  assert.equal(chunkSql({ kind: 'delete', where: '' }, t, false, true).text, `DELETE FROM "public"."events" WHERE ("tenant", "id") <= ($1::text, $2::integer)`);
  assert.equal(chunkSql({ kind: 'delete', where: '' }, t, false, false).text, `DELETE FROM "public"."events" WHERE true`);
  assert.equal(remainingSql({ where: 'x IS NULL' }, t, true, false), `SELECT count(*)::int8 AS n FROM "public"."events" WHERE ("tenant", "id") > ($1::text, $2::integer) AND (x IS NULL)`);
  assert.deepEqual(rangeParams(['a', '1'], ['b', '2']), ['a', '1', 'b', '2']);
  assert.deepEqual(rangeParams(null, ['b', '2']), ['b', '2']);
});

test('the boundary walk sorts by the key columns, not by their text (outputs are aliased)', () => {
  assert.equal(
    boundarySql(t, true),
    `SELECT "tenant"::text AS k0, "id"::text AS k1 FROM "public"."events" WHERE ("tenant", "id") > ($1::text, $2::integer) ORDER BY "tenant", "id" OFFSET $3 LIMIT 1`,
  );
  assert.equal(boundarySql(t, false), `SELECT "tenant"::text AS k0, "id"::text AS k1 FROM "public"."events" ORDER BY "tenant", "id" OFFSET $1 LIMIT 1`);
});

test('the columns a SET list assigns', () => {
  assert.deepEqual(setTargets(`total = qty * price, "Note" = 'a, b', (x, y) = (1, coalesce(z, 2))`), ['total', 'Note', 'x', 'y']);
  assert.deepEqual(setTargets('Balance = Balance + 1'), ['balance']);
});

test('a job: defaults, and problems that name the key', () => {
  const j = parseJob(`job: fill\ndatabase: postgres://x/y\ntable: orders\nkind: update\nset: "a = 1"\nreason: r\n`);
  assert.equal(j.chunk.rows, 1000);
  assert.equal(j.chunk.targetSeconds, 0.5);
  assert.equal(j.lockTimeoutMs, 2000);
  assert.equal(j.throttle.maxRowsPerSecond, 0);
  assert.throws(() => parseJob(`job: fill\ntable: orders\nkind: update\n`), /set: an update job needs set:/);
  assert.throws(() => parseJob(`job: fill\ntable: orders\nkind: merge\n`), /kind/);
  assert.throws(() => parseJob(`job: Fill!\ntable: orders\nkind: delete\n`), /job: must be/);
  assert.throws(() => parseJob(`job: fill\ntable: orders\nkind: delete\nchunk: { size: 3 }\n`), /chunk/);
});

test('a job from --with key=value, alone or over a file: dotted paths, typed values, SQL kept as text', async () => {
  const { loadJob } = await import('../../src/inplace/job.js');
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const j = loadJob({ with: ['job=fill', 'table=orders', 'kind=update', 'set=total = qty * price', "where=status = 'x: y'", 'chunk.rows=500', 'throttle.pauseWhileAutovacuum=true', 'finish.notNull=[total]', 'reason=r'] });
  assert.equal(j.set, 'total = qty * price');
  assert.equal(j.where, "status = 'x: y'");
  assert.equal(j.chunk.rows, 500);
  assert.equal(j.throttle.pauseWhileAutovacuum, true);
  assert.deepEqual(j.finish.notNull, ['total']);
  const f = join(mkdtempSync(join(tmpdir(), 'sluice-job-')), 'j.yaml');
  writeFileSync(f, 'job: fill\ntable: orders\nkind: delete\nchunk: { rows: 100 }\nthrottle: { maxRowsPerSecond: 10 }\n');
  const o = loadJob({ file: f, with: ['throttle.maxRowsPerSecond=5000', 'where=id < 10'] });
  assert.equal(o.throttle.maxRowsPerSecond, 5000);
  assert.equal(o.chunk.rows, 100);
  assert.equal(o.where, 'id < 10');
  assert.throws(() => loadJob({ with: ['job'] }), /--with job: expected key=value/);
  assert.throws(() => loadJob({}), /give a job file, or the job's keys with --with/);
  assert.throws(() => loadJob({ with: ['job=x', 'table=t', 'kind=update'] }), /the job given with --with: the job is not valid:\n {2}set:/);
});

test('a plan that reads the whole table for each chunk is found, wherever the Seq Scan sits', async () => {
  const { seqScanOf } = await import('../../src/inplace/plan-check.js');
  const plan = (inner: object) => [{ Plan: { 'Node Type': 'ModifyTable', 'Relation Name': 'orders', Plans: [inner] } }];
  assert.equal(seqScanOf(plan({ 'Node Type': 'Seq Scan', 'Relation Name': 'orders' }), 'orders'), true);
  assert.equal(seqScanOf(plan({ 'Node Type': 'Hash Join', Plans: [{ 'Node Type': 'Seq Scan', 'Relation Name': 'orders' }] }), 'orders'), true);
  assert.equal(seqScanOf(plan({ 'Node Type': 'Index Scan', 'Relation Name': 'orders', 'Index Name': 'orders_pkey' }), 'orders'), false);
  assert.equal(seqScanOf(plan({ 'Node Type': 'Seq Scan', 'Relation Name': 'customers' }), 'orders'), false);
});
