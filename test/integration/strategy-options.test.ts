/**
 * Contract 9 for backfill options: a strategy, parallelism or scope that cannot work fails with exit
 * code 2 and a message naming the config key and the fix, before anything runs — the source has no
 * slot or publication of the pipeline and the destination database (a fresh one per case) is empty:
 * no table, no type, no `_sluice` schema.
 *
 * In the config (`sluice run`): ctid on a view and on a partitioned table, interval on a uuid primary
 * key, parallelism 3 with keyset, an invalid where. On the command line (`sluice backfill`, no
 * pipeline running): --strategy interval on a uuid key and --parallelism 3 with keyset.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { makeWorkdir, sluice, type Result, type TableSpec, type Workdir } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
const workdirs: Workdir[] = [];

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await source.query(`
    CREATE TABLE public.t (id int PRIMARY KEY, tenant int NOT NULL, v text);
    INSERT INTO public.t SELECT i, i % 10, 'v' || i FROM generate_series(1, 1000) i;
    CREATE VIEW public.t_view AS SELECT * FROM public.t;
    CREATE TABLE public.u (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), v text);
    INSERT INTO public.u (v) SELECT 'v' || i FROM generate_series(1, 100) i;
    CREATE TABLE public.parted (id int, d date, v text, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
    CREATE TABLE public.parted_2024 PARTITION OF public.parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    INSERT INTO public.parted SELECT i, date '2024-01-01' + (i % 300), 'v' FROM generate_series(1, 100) i;
  `);
});

after(async () => {
  for (const w of workdirs) w.remove();
  await stopAll?.();
});

let dbSeq = 0;

/** A fresh, empty destination database for one case. */
async function freshDestination(): Promise<{ name: string; url: string }> {
  const name = `opt_${++dbSeq}`;
  await destination.createDatabase(name);
  return { name, url: destination.url(name) };
}

function assertUsageError(res: Result, cause: RegExp): void {
  assert.equal(res.code, 2, `exit code (stdout: ${res.stdout}; stderr: ${res.stderr})`);
  assert.match(res.stderr, cause);
  assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace');
}

/** Nothing moved: no slot or publication of the pipeline; the destination database holds nothing. */
async function assertNothingRan(pipeline: string, dbName: string): Promise<void> {
  const s = await source.query(
    `SELECT (SELECT count(*)::int FROM pg_replication_slots WHERE slot_name = $1) AS slots,
            (SELECT count(*)::int FROM pg_publication WHERE pubname = $1) AS pubs`,
    [`sluice_${pipeline}`],
  );
  assert.deepEqual(s.rows[0], { slots: 0, pubs: 0 }, `source has a slot or publication of pipeline ${pipeline}`);
  const d = await destination.query(
    `SELECT (SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'p', 'v', 'S')) AS rels,
            (SELECT count(*)::int FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')) AS types,
            (SELECT count(*)::int FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public')) AS schemas`,
    [],
    dbName,
  );
  assert.deepEqual(d.rows[0], { rels: 0, types: 0, schemas: 0 }, `destination database ${dbName} is not empty`);
}

async function runCase(pipeline: string, table: TableSpec, cause: RegExp, code = 'BAD_USAGE'): Promise<void> {
  const dst = await freshDestination();
  const w = makeWorkdir({ sourceUrl: source.url(), destinationUrl: dst.url, pipeline, tables: [table] });
  workdirs.push(w);
  const res = await sluice(['run'], { config: w.config, timeoutMs: 60_000 });
  assertUsageError(res, cause);
  assert.match(res.stderr, new RegExp(`\\[${code}\\]`));
  await assertNothingRan(pipeline, dst.name);
}

test('strategy ctid on a view exits 2 before anything runs', async () => {
  await runCase('ctid_view', { name: 'public.t_view', strategy: 'ctid', parallelism: 3 }, /source public\.t_view is not a table \(relkind v\); sluice replicates ordinary tables/, 'TABLE_NOT_FOUND');
});

test('strategy ctid on a partitioned table exits 2 naming tables[0].strategy and the alternatives', async () => {
  await runCase(
    'ctid_parted',
    { name: 'public.parted', strategy: 'ctid', parallelism: 3 },
    /tables\[0\]\.strategy: ctid reads heap pages, and public\.parted is a partitioned table; use interval or keyset/,
  );
});

test('strategy interval on a uuid primary key exits 2 naming "integer primary key"', async () => {
  await runCase(
    'interval_uuid',
    { name: 'public.u', strategy: 'interval', parallelism: 3 },
    /tables\[0\]\.strategy: interval needs a single integer primary key, and public\.u's is \(id uuid\); use keyset or ctid/,
  );
});

test('parallelism 3 with keyset exits 2 naming tables[0].parallelism and the fix', async () => {
  await runCase('keyset_par', { name: 'public.t', strategy: 'keyset', parallelism: 3 }, /tables\[0\]\.parallelism: keyset reads public\.t with one reader; use strategy interval or ctid/);
});

test('an invalid where in the config exits 2 naming tables[0].where', async () => {
  await runCase('bad_where', { name: 'public.t', mode: 'truncate', where: 'tenant = ' }, /tables\[0\]\.where: "tenant = " is not a valid condition on public\.t: syntax error/);
  await runCase('nonbool_where', { name: 'public.t', mode: 'upsert', where: 'tenant + 1' }, /tables\[0\]\.where: "tenant \+ 1" is not a valid condition on public\.t: .*boolean/);
  await runCase('nocol_where', { name: 'public.t', mode: 'upsert', where: 'tenantx = 1' }, /tables\[0\]\.where: .*column "tenantx" does not exist/);
  // A scope with the default mode (online) would replace the whole table with a part of it.
  await runCase('online_where', { name: 'public.t', where: 'tenant = 1' }, /tables\[0\]\.where: a scoped backfill loads part of public\.t.*use mode upsert or truncate/);
});

test('sluice backfill --strategy interval on a uuid key, or --parallelism 3 with keyset, exits 2 and records nothing', async () => {
  const dst = await freshDestination();
  const w = makeWorkdir({ sourceUrl: source.url(), destinationUrl: dst.url, pipeline: 'cli_opts', tables: [{ name: 'public.u' }, { name: 'public.t' }] });
  workdirs.push(w);
  assertUsageError(
    await sluice(['backfill', 'public.u', '--mode', 'truncate', '--strategy', 'interval', '--parallelism', '3'], { config: w.config }),
    /--strategy: interval needs a single integer primary key/,
  );
  assertUsageError(await sluice(['backfill', 'public.t', '--mode', 'truncate', '--parallelism', '3'], { config: w.config }), /--parallelism: keyset reads public\.t with one reader/);
  assertUsageError(await sluice(['backfill', 'public.t', '--mode', 'truncate', '--strategy', 'sideways'], { config: w.config }), /--strategy sideways: expected one of keyset\|interval\|ctid/);
  assertUsageError(await sluice(['backfill', 'public.t', '--mode', 'truncate', '--parallelism', '0'], { config: w.config }), /--parallelism 0: expected a whole number/);
  await assertNothingRan('cli_opts', dst.name);
});
