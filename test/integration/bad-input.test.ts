/**
 * Contract 9: bad input fails before any data moves, with exit code 2 and a message that names the
 * cause and the fix. "Nothing moved" means: the destination database (a fresh one per case) has no
 * table, no type and no `_sluice` schema, and the source has no slot or publication of the pipeline.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { freePort, startCluster, startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { makeWorkdir, sluice, spawnSluice, waitUntil, type Result, type Running, type Workdir } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let noLogical: Cluster | undefined;
const workdirs: Workdir[] = [];
const cleanups: (() => Promise<void>)[] = [];

before(async () => {
  const [clusters, third] = await Promise.all([startClusters(), startCluster({ name: 'not-logical', logical: false })]);
  source = clusters.source;
  destination = clusters.destination;
  stopAll = clusters.stopAll;
  noLogical = third;
  await source.query(`
    CREATE TABLE public.t (id int PRIMARY KEY, v text);
    INSERT INTO public.t SELECT i, 'v' || i FROM generate_series(1, 100) i;
    CREATE TABLE public.nopk (id int, v text);
    INSERT INTO public.nopk SELECT i, 'v' || i FROM generate_series(1, 10) i;
    CREATE TYPE public.pair AS (a int, b text);
    CREATE TABLE public.comp (id int PRIMARY KEY, c public.pair);
    INSERT INTO public.comp VALUES (1, ROW(1, 'x'));
    CREATE EXTENSION citext;
    CREATE TABLE public.ext (id int PRIMARY KEY, c citext);
    INSERT INTO public.ext VALUES (1, 'Hello');
    CREATE ROLE app LOGIN PASSWORD 'x';
    GRANT SELECT ON public.t TO app;
    CREATE ROLE repl LOGIN REPLICATION PASSWORD 'x';
    GRANT SELECT ON public.t TO repl;
    REVOKE CREATE ON DATABASE postgres FROM PUBLIC;
  `);
  await noLogical.query(`CREATE TABLE public.t (id int PRIMARY KEY, v text); INSERT INTO public.t VALUES (1, 'a')`);
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  for (const w of workdirs) w.remove();
  await noLogical?.destroy();
  await stopAll?.();
});

let dbSeq = 0;

/** A fresh, empty destination database for one case. */
async function freshDestination(): Promise<{ name: string; url: string }> {
  const name = `case_${++dbSeq}`;
  await destination.createDatabase(name);
  return { name, url: destination.url(name) };
}

function workdir(opts: Parameters<typeof makeWorkdir>[0]): Workdir {
  const w = makeWorkdir(opts);
  workdirs.push(w);
  return w;
}

function assertUsageError(res: Result, cause: RegExp, code: string): void {
  assert.equal(res.code, 2, `exit code (stdout: ${res.stdout}; stderr: ${res.stderr})`);
  assert.match(res.stderr, cause);
  assert.match(res.stderr, new RegExp(`\\[${code}\\]`));
  assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace');
}

/** The destination database holds nothing: no table, no user type, no `_sluice` schema. */
async function assertDestinationEmpty(dbName: string): Promise<void> {
  const r = await destination.query(
    `SELECT (SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'p', 'v', 'S')) AS rels,
            (SELECT count(*)::int FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')) AS types,
            (SELECT count(*)::int FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public')) AS schemas`,
    [],
    dbName,
  );
  assert.deepEqual(r.rows[0], { rels: 0, types: 0, schemas: 0 }, `destination database ${dbName} is not empty`);
}

/** The source has no slot and no publication of the pipeline. */
async function assertSourceUntouched(c: Cluster, pipeline: string): Promise<void> {
  const r = await c.query(
    `SELECT (SELECT count(*)::int FROM pg_replication_slots WHERE slot_name = $1) AS slots,
            (SELECT count(*)::int FROM pg_publication WHERE pubname = $1) AS pubs`,
    [`sluice_${pipeline}`],
  );
  assert.deepEqual(r.rows[0], { slots: 0, pubs: 0 }, `source has a slot or publication of pipeline ${pipeline}`);
}

async function runOnce(config: string): Promise<Result> {
  return sluice(['run'], { config, timeoutMs: 60_000 });
}

test('(a) wal_level is not logical', async () => {
  const dst = await freshDestination();
  const w = workdir({ sourceUrl: noLogical!.url(), destinationUrl: dst.url, pipeline: 'wal', tables: [{ name: 'public.t' }] });
  const res = await runOnce(w.config);
  assertUsageError(res, /wal_level is 'replica', sluice needs 'logical'.*ALTER SYSTEM SET wal_level = logical.*restart/, 'WAL_LEVEL_NOT_LOGICAL');
  await assertDestinationEmpty(dst.name);
  await assertSourceUntouched(noLogical!, 'wal');
});

test('(b) the source role lacks the REPLICATION privilege', async () => {
  const dst = await freshDestination();
  const url = `postgres://app:x@127.0.0.1:${source.port}/postgres`;
  const w = workdir({ sourceUrl: url, destinationUrl: dst.url, pipeline: 'norepl', tables: [{ name: 'public.t' }] });
  const res = await runOnce(w.config);
  assertUsageError(res, /role app lacks the REPLICATION privilege.*ALTER ROLE app WITH REPLICATION/, 'MISSING_REPLICATION_PRIVILEGE');
  assert.doesNotMatch(res.stderr, /app:x@/, 'the password is not printed');
  await assertDestinationEmpty(dst.name);
  await assertSourceUntouched(source, 'norepl');
});

test('(b2) a role that may replicate but not create the publication: exit 2 with the grant to run', async () => {
  const dst = await freshDestination();
  const url = `postgres://repl:x@127.0.0.1:${source.port}/postgres`;
  const w = workdir({ sourceUrl: url, destinationUrl: dst.url, pipeline: 'nopub', tables: [{ name: 'public.t' }] });
  const res = await runOnce(w.config);
  assertUsageError(res, /role repl cannot create the publication sluice_nopub.*GRANT CREATE ON DATABASE "postgres" TO "repl"/, 'MISSING_PRIVILEGE');
  await assertSourceUntouched(source, 'nopub');
});

test('(c) a table that does not exist', async () => {
  const dst = await freshDestination();
  const w = workdir({
    sourceUrl: source.url(),
    destinationUrl: dst.url,
    pipeline: 'nosuch',
    tables: [{ name: 'public.t' }, { name: 'public.nope' }],
  });
  const res = await runOnce(w.config);
  assertUsageError(res, /source table public\.nope does not exist; check tables\[\]\.name/, 'TABLE_NOT_FOUND');
  await assertDestinationEmpty(dst.name);
  await assertSourceUntouched(source, 'nosuch');
});

test('(d) a table without a primary key or REPLICA IDENTITY FULL', async () => {
  const dst = await freshDestination();
  const w = workdir({ sourceUrl: source.url(), destinationUrl: dst.url, pipeline: 'nopk', tables: [{ name: 'public.nopk' }] });
  const res = await runOnce(w.config);
  assertUsageError(res, /source public\.nopk: no primary key.*ALTER TABLE public\.nopk ADD PRIMARY KEY/, 'NO_PRIMARY_KEY');
  await assertDestinationEmpty(dst.name);
  await assertSourceUntouched(source, 'nopk');
});

test('(e) a column of a type sluice cannot carry: a composite type', async () => {
  const dst = await freshDestination();
  const w = workdir({ sourceUrl: source.url(), destinationUrl: dst.url, pipeline: 'comp', tables: [{ name: 'public.comp' }] });
  const res = await runOnce(w.config);
  assertUsageError(res, /public\.comp\.c: type pair is not supported \(a composite type\); exclude the table, or change the column/, 'UNSUPPORTED_TYPE');
  await assertDestinationEmpty(dst.name);
  await assertSourceUntouched(source, 'comp');
});

test('(e) a column of a type from an extension the destination lacks', async () => {
  const dst = await freshDestination();
  const w = workdir({ sourceUrl: source.url(), destinationUrl: dst.url, pipeline: 'ext', tables: [{ name: 'public.ext' }] });
  const res = await runOnce(w.config);
  assertUsageError(res, /public\.ext\.c: type "public"\."citext" comes from an extension the destination lacks; install the same extension/, 'UNSUPPORTED_TYPE');
  await assertDestinationEmpty(dst.name);
  await assertSourceUntouched(source, 'ext');
});

test('(f) an invalid config: a wrong enum value and an unknown key, named by path', async () => {
  const dst = await freshDestination();
  const w = workdir({
    sourceUrl: source.url(),
    destinationUrl: dst.url,
    pipeline: 'badcfg',
    tables: [{ name: 'public.t', strategy: 'fast' }],
  });
  let res = await runOnce(w.config);
  assertUsageError(res, /tables\[0\]\.strategy: expected one of keyset\|interval\|ctid\|daterange, got "fast"/, 'CONFIG_INVALID');

  writeFileSync(w.config, readFileSync(w.config, 'utf8').replace('strategy: fast', 'chunkrows: 5'));
  res = await runOnce(w.config);
  assertUsageError(res, /tables\[0\]\.chunkrows: unknown key; did you mean chunkRows\?/, 'CONFIG_INVALID');
  assert.doesNotMatch(res.stderr, /expected one of keyset/);

  writeFileSync(w.config, readFileSync(w.config, 'utf8').replace('chunkrows: 5', 'mode: sideways').replace('pipeline: {', 'pipline: {'));
  res = await runOnce(w.config);
  assertUsageError(res, /tables\[0\]\.mode: expected one of online\|upsert\|truncate\|drop, got "sideways"/, 'CONFIG_INVALID');
  assert.match(res.stderr, /pipline: unknown key; did you mean pipeline\?/);

  await assertDestinationEmpty(dst.name);
  await assertSourceUntouched(source, 'badcfg');
});

test('(g) an unreachable source, and an unreachable destination', async () => {
  const port = await freePort();
  const dst = await freshDestination();
  let w = workdir({
    sourceUrl: `postgres://postgres:secret@127.0.0.1:${port}/postgres`,
    destinationUrl: dst.url,
    pipeline: 'nosrc',
    tables: [{ name: 'public.t' }],
  });
  let res = await runOnce(w.config);
  assertUsageError(res, new RegExp(`source postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${port}/postgres: cannot connect: .*ECONNREFUSED.*check that the server runs and source\\.url is right`), 'SOURCE_UNREACHABLE');
  assert.doesNotMatch(res.stderr, /secret/, 'the password is not printed');
  await assertDestinationEmpty(dst.name);

  w = workdir({
    sourceUrl: source.url(),
    destinationUrl: `postgres://postgres:secret@127.0.0.1:${port}/postgres`,
    pipeline: 'nodst',
    tables: [{ name: 'public.t' }],
  });
  res = await runOnce(w.config);
  assertUsageError(res, /destination postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres: cannot connect: .*check that the server runs and destination\.url is right/, 'DESTINATION_UNREACHABLE');
  assert.doesNotMatch(res.stderr, /secret/, 'the password is not printed');
  await assertSourceUntouched(source, 'nodst');
});

test('(h) the replication slot is in use by another consumer', async () => {
  const dst = await freshDestination();
  await source.query(`CREATE PUBLICATION x FOR TABLE public.t`);
  await source.query(`SELECT pg_create_logical_replication_slot('sluice_held', 'pgoutput')`);
  const holder = new pg.Client({ connectionString: source.url(), replication: 'database' } as pg.ClientConfig);
  holder.on('error', () => {});
  await holder.connect();
  cleanups.push(async () => {
    await source.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'sluice_held' AND active`);
    await Promise.race([holder.end().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
  });
  await new Promise<void>((resolve, reject) => {
    holder.connection.once('replicationStart' as never, () => resolve());
    holder.query(`START_REPLICATION SLOT sluice_held LOGICAL 0/0 (proto_version '1', publication_names 'x')`, (err: Error | null) => {
      if (err) reject(err);
    });
  });
  await waitUntil('the slot is active', async () => (await source.query(`SELECT active FROM pg_replication_slots WHERE slot_name = 'sluice_held'`)).rows[0].active);
  const pid = (await source.query(`SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'sluice_held'`)).rows[0].active_pid as number;

  const w = workdir({ sourceUrl: source.url(), destinationUrl: dst.url, pipeline: 'held', tables: [{ name: 'public.t' }] });
  const res = await runOnce(w.config);
  assertUsageError(
    res,
    new RegExp(`replication slot sluice_held is in use by another consumer \\(pid ${pid}\\); stop it .*pg_terminate_backend\\(${pid}\\).* pipeline\\.slotName`),
    'SLOT_IN_USE',
  );
  await assertDestinationEmpty(dst.name);
  const after = await source.query(
    `SELECT active_pid, (SELECT count(*)::int FROM pg_publication WHERE pubname = 'sluice_held') AS pubs FROM pg_replication_slots WHERE slot_name = 'sluice_held'`,
  );
  assert.deepEqual(after.rows[0], { active_pid: pid, pubs: 0 }, 'the other consumer keeps the slot; no publication was created');
});

test('(i) an online backfill whose swap could not carry a dependent is refused before anything loads', async () => {
  const dst = await freshDestination();
  // The destination table exists (loaded earlier) and a materialized view depends on it by identity.
  await destination.query(
    `CREATE TABLE public.t (id int PRIMARY KEY, v text); INSERT INTO public.t VALUES (1, 'a');
     CREATE MATERIALIZED VIEW public.t_summary AS SELECT count(*) AS n FROM public.t`,
    [],
    dst.name,
  );
  const w = workdir({ sourceUrl: source.url(), destinationUrl: dst.url, pipeline: 'online', tables: [{ name: 'public.t' }] });
  const res = await sluice(['backfill', 'public.t', '--mode', 'online'], { config: w.config });
  assertUsageError(res, /the online swap of public\.t cannot carry materialized view (public\.)?t_summary; remove them, or use --mode truncate/, 'BAD_USAGE');
  assert.doesNotMatch(res.stdout, /requested/);
  const left = await destination.query(
    `SELECT to_regclass('public.t__sluice_staging') IS NULL AS no_staging, to_regclass('_sluice.requests') IS NULL AS no_request`,
    [],
    dst.name,
  );
  assert.deepEqual(left.rows[0], { no_staging: true, no_request: true });
  await assertSourceUntouched(source, 'online');
});

test('(j) a second `sluice run` of a running pipeline', { timeout: 120_000 }, async () => {
  const dst = await freshDestination();
  const w = workdir({ sourceUrl: source.url(), destinationUrl: dst.url, pipeline: 'twice', tables: [{ name: 'public.t' }] });
  const first: Running = spawnSluice(['run'], { config: w.config });
  cleanups.push(async () => {
    if (first.child.exitCode === null) first.kill('SIGKILL');
  });
  const state = async () =>
    (await destination.query(`SELECT state FROM _sluice.tables WHERE pipeline = 'twice' AND name = 'public.t'`, [], dst.name).catch(() => ({ rows: [] })))
      .rows[0]?.state;
  await waitUntil('the first run streams', async () => {
    if (first.child.exitCode !== null) throw new Error(`first run exited:\n${first.output()}`);
    return (await state()) === 'streaming';
  });
  await assertTablesEqual(source.url(), dst.url, 'public.t');
  const pidBefore = (await destination.query(`SELECT pid FROM _sluice.pipelines WHERE name = 'twice'`, [], dst.name)).rows[0].pid;
  assert.equal(pidBefore, first.child.pid);

  const res = await runOnce(w.config);
  assertUsageError(res, new RegExp(`pipeline twice is already running \\(pid ${first.child.pid} on [^)]+\\); stop it first`), 'SLOT_IN_USE');

  // The first run is unaffected: still registered, still streaming, still applying changes.
  assert.equal(first.child.exitCode, null, 'the first run keeps running');
  assert.equal((await destination.query(`SELECT pid FROM _sluice.pipelines WHERE name = 'twice'`, [], dst.name)).rows[0].pid, first.child.pid);
  await source.query(`INSERT INTO public.t VALUES (1000, 'after the second run')`);
  await waitUntil('the change reaches the destination', async () => {
    try {
      await assertTablesEqual(source.url(), dst.url, 'public.t');
      return true;
    } catch {
      return false;
    }
  }, 30_000);
  assert.equal(await state(), 'streaming');
  first.kill('SIGTERM');
  const end = await first.exited(30_000);
  assert.equal(end.code, 0, end.stderr);
  await source.query(`DELETE FROM public.t WHERE id = 1000`);
  await source.query(`SELECT pg_drop_replication_slot('sluice_twice'); DROP PUBLICATION sluice_twice`);
});
