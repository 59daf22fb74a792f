import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createDemoTable, Workload } from '../../src/demo/workload.js';
import { startCluster, type Cluster } from '../support/clusters.js';

let source: Cluster | undefined;

before(async () => {
  source = await startCluster({ name: 'workload', logical: true });
});

after(async () => {
  await source?.destroy();
});

async function counts(c: Cluster): Promise<{ rows: number; maxId: number; toasted: number }> {
  const r = await c.query(
    `SELECT count(*)::int AS rows, coalesce(max(id), 0)::bigint::text AS max_id,
            count(*) FILTER (WHERE length(note) > 1000)::int AS toasted
       FROM public.orders`,
  );
  return { rows: r.rows[0].rows, maxId: Number(r.rows[0].max_id), toasted: r.rows[0].toasted };
}

test('createDemoTable fills the table with mixed types, NULLs and TOASTed notes', async () => {
  const c = source!;
  const t0 = Date.now();
  await createDemoTable(c.url(), { rows: 20_000 });
  console.log(`# createDemoTable(20000) took ${Date.now() - t0} ms`);

  const before = await counts(c);
  assert.equal(before.rows, 20_000);
  assert.equal(before.maxId, 20_000);
  assert.ok(before.toasted >= 300 && before.toasted <= 500, `~2% TOASTed notes, got ${before.toasted}`);

  const cols = await c.query(
    `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
       FROM pg_attribute a WHERE a.attrelid = 'public.orders'::regclass AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
  );
  assert.deepEqual(
    cols.rows.map((r) => `${r.attname} ${r.type}${r.attnotnull ? ' not null' : ''}`),
    [
      'id bigint not null',
      'customer_id integer not null',
      'status order_status not null',
      'amount numeric(12,2)',
      'price double precision',
      'note text',
      'tags text[]',
      'attrs jsonb',
      'ref uuid',
      'created_at timestamp with time zone not null',
      'ship_date date',
      'flags bit varying(8)',
      'active boolean',
      'payload bytea',
    ],
  );
  const pk = await c.query(
    `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'public.orders'::regclass AND contype = 'p'`,
  );
  assert.equal(pk.rows[0]?.def, 'PRIMARY KEY (id)');

  // every nullable column has some NULLs and some values
  const nulls = await c.query(
    `SELECT ${['amount', 'price', 'note', 'tags', 'attrs', 'ref', 'ship_date', 'flags', 'active', 'payload']
      .map((col) => `count(*) FILTER (WHERE ${col} IS NULL)::int AS ${col}`)
      .join(', ')} FROM public.orders`,
  );
  for (const [col, n] of Object.entries(nulls.rows[0] as Record<string, number>)) {
    assert.ok(n > 0 && n < 20_000, `${col}: ${n} NULLs`);
  }
  // the long notes are stored out of line, uncompressed
  const toast = await c.query(
    `SELECT pg_relation_size(reltoastrelid) AS size FROM pg_class WHERE oid = 'public.orders'::regclass`,
  );
  assert.ok(Number(toast.rows[0].size) > 1_000_000, `TOAST relation size ${toast.rows[0].size}`);
  const analyzed = await c.query(`SELECT last_analyze FROM pg_stat_user_tables WHERE relid = 'public.orders'::regclass`);
  assert.ok(analyzed.rows[0].last_analyze, 'table was analyzed');
});

test('Workload at 300 ops/s for 3 s: inserts, updates, deletes, key changes, TOAST updates', async () => {
  const c = source!;
  const before = await counts(c);
  // snapshot of the TOASTed notes, to check that the workload never rewrites them
  await c.query(
    `CREATE TABLE public.note_snapshot AS SELECT id, md5(note) AS h, amount FROM public.orders WHERE length(note) > 1000`,
  );

  const w = new Workload(c.url(), { ratePerSecond: 300, seed: 7 });
  w.start();
  await new Promise((r) => setTimeout(r, 3000));
  await w.stop();
  console.log(`# workload stats ${JSON.stringify(w.stats)}${w.lastError ? ` last error: ${w.lastError}` : ''}`);

  const s = w.stats;
  // pacing: ~900 operations (plus at most one tick's initial allowance; a busy machine may fall behind)
  assert.ok(s.ops >= 450 && s.ops <= 1000, `ops ${s.ops}`);
  assert.ok(s.inserts > 0, 'inserts');
  assert.ok(s.updates > 0, 'updates');
  assert.ok(s.deletes > 0, 'deletes');
  assert.ok(s.keyChanges > 0, 'keyChanges');
  assert.ok(s.toastUpdates > 0, 'toastUpdates');
  assert.ok(s.transactions > 0, 'transactions');
  assert.ok(s.errors <= 5, `errors ${s.errors}: ${w.lastError}`);

  const afterCounts = await counts(c);
  assert.notEqual(afterCounts.rows, before.rows);
  assert.ok(afterCounts.maxId > before.maxId, 'new ids above the old max');
  assert.equal(afterCounts.rows, before.rows + s.inserts - s.deletes);
  assert.ok(afterCounts.maxId <= w.currentMax, `max id ${afterCounts.maxId} <= handed out ${w.currentMax}`);
  // TOASTed notes survive: only deletes remove some, no statement rewrites a long note
  assert.ok(afterCounts.toasted > 0, 'TOASTed notes still there');
  const notes = await c.query(
    `SELECT count(*) FILTER (WHERE s.h IS DISTINCT FROM md5(o.note))::int AS rewritten,
            count(*) FILTER (WHERE s.h = md5(o.note) AND s.amount IS DISTINCT FROM o.amount)::int AS updated_kept
       FROM public.orders o LEFT JOIN public.note_snapshot s USING (id)
      WHERE o.id <= $1 AND length(o.note) > 1000`,
    [before.maxId],
  );
  assert.equal(notes.rows[0].rewritten, 0, 'no long note of the original rows was rewritten');
  assert.ok(notes.rows[0].updated_kept > 0, 'rows with TOASTed notes were updated and kept their note');
  // stop() is final and idempotent
  await w.stop();
  assert.throws(() => w.start(), /stopped/);
});
