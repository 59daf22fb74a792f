/**
 * State that outlives a release: a destination and a change log written by sluice 0.1.0 (format 1,
 * built from the DDL of that release kept in test/fixtures) are migrated by `sluice run` and the
 * pipeline works on them, keeping what they held; a newer format is refused by `run`, `status` and
 * `backfill` (exit 2); concurrent starts migrate once; a migration waits for no running pipeline
 * but refuses while one runs on the older state.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { LOG_FORMAT } from '../../src/changelog/embedded/log-format.js';
import { SluiceError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { ensureStateSchema, readStateFormat, STATE_FORMAT } from '../../src/destinations/postgres/state-format.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { eventuallyEqual, makeWorkdir, sluice, spawnSluice, type Running, type Workdir } from '../support/sluice.js';

const TABLE = 'public.items';
const LOG_ID = 'log-of-0.1.0';
const fixtures = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../test/fixtures');
const STATE_V1 = readFileSync(join(fixtures, 'state-format-1.sql'), 'utf8');
const LOG_V1 = readFileSync(join(fixtures, 'changelog-format-1.sql'), 'utf8');

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir | undefined;
let run: Running | undefined;
let logFile: string;

/** What another pipeline ("old") left in a format-1 `_sluice`: every table of the schema has a row. */
const OLD_ROWS = `
INSERT INTO _sluice.pipelines (name, slot, publication, log_id, throttle, pid, host, version, started_at, heartbeat_at)
  VALUES ('old', 'sluice_old', 'sluice_old', 'log-old', '{"maxRowsPerSecond": 5}', NULL, 'h1', '0.1.0', '2026-01-02 03:04:05+00', '2026-01-02 03:05:00+00');
INSERT INTO _sluice.tables (pipeline, name, target, state, mode, strategy, chunk_rows, run_id, l0_lsn, last_key, chunks_done, rows_copied,
                            rows_estimated, rows_per_second, pending_lsn, lag_seconds, error, staging, plan, keep_archive, detail, requested_seq, updated_at)
  VALUES ('old', 'public.a', 'public.a', 'streaming', 'online', 'keyset', 5000, 1, '0/16B3748', '"done"', 12, 60000, 61000, 0, '0/16C0000',
          0.5, NULL, NULL, '{"strategy": "keyset"}', false, NULL, 0, '2026-01-02 03:05:00+00'),
         ('old', 'public.b', 'public.b', 'backfilling', 'truncate', 'interval', 1000, 2, '0/1700000', '["41"]', 3, 3000, 9000, 120.5, NULL,
          NULL, NULL, NULL, '{"strategy": "interval", "parallelism": 2}', false, 'waiting', 1, '2026-01-02 03:05:00+00');
INSERT INTO _sluice.cursors (pipeline, name, target, lsn, idx, commit_time, applied_at, changes_applied)
  VALUES ('old', 'public.a', 'public.a', '0/16BFFF0', 7, '2026-01-02 03:04:59+00', '2026-01-02 03:05:00+00', 4242);
INSERT INTO _sluice.chunks (pipeline, table_name, run_id, lo, hi, rows, done_at)
  VALUES ('old', 'public.b', 2, '1', '20', 1000, '2026-01-02 03:05:00+00'), ('old', 'public.b', 2, '21', '41', 1000, '2026-01-02 03:05:00+00');
INSERT INTO _sluice.archives (pipeline, table_name, archive, run_id, created_at, drop_after)
  VALUES ('old', 'public.a', 'public.a__sluice_archive_1', 1, '2026-01-02 03:05:00+00', '2026-01-03 03:05:00+00');
INSERT INTO _sluice.runs (pipeline, table_name, mode, strategy, where_sql, params, version, os_user, host, pid, l0_lsn, started_at, ended_at, status, rows_copied, chunks)
  VALUES ('old', 'public.a', 'online', 'keyset', '', '{"chunkRows": 5000}', '0.1.0', 'ops', 'h1', 99, '0/16B3748', '2026-01-02 03:00:00+00',
          '2026-01-02 03:05:00+00', 'done', 60000, 12),
         ('old', 'public.b', 'truncate', 'interval', '', '{}', '0.1.0', 'ops', 'h1', 99, '0/1700000', '2026-01-02 03:01:00+00', NULL, 'running', 3000, 3);
INSERT INTO _sluice.requests (pipeline, kind, table_name, params, requested_by, requested_at, handled_at, outcome)
  VALUES ('old', 'backfill', 'public.a', '{"mode": "online"}', 'ops', '2026-01-02 03:00:00+00', '2026-01-02 03:00:01+00', 'queued (mode online)');
`;

/** Columns later formats add (null in the rows a format-1 sluice wrote): not part of the comparison. */
const ADDED_COLUMNS = ['progress'];

/** Every row of pipeline "old", table by table, as JSON text. */
async function oldPipelineRows(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [table, where, order] of [
    ['pipelines', 'name', 'name'],
    ['tables', 'pipeline', 'name'],
    ['cursors', 'pipeline', 'name, target'],
    ['chunks', 'pipeline', 'lo'],
    ['archives', 'pipeline', 'archive'],
    ['runs', 'pipeline', 'id'],
    ['requests', 'pipeline', 'id'],
  ]) {
    const r = await destination.query(`SELECT coalesce(json_agg(t ORDER BY ${order})::text, '[]') AS rows FROM _sluice.${table} t WHERE ${where} = 'old'`);
    out[table] = (JSON.parse(r.rows[0].rows) as Record<string, unknown>[]).map((row) =>
      Object.fromEntries(Object.entries(row).filter(([k, v]) => !(ADDED_COLUMNS.includes(k) && v === null))),
    );
  }
  return out;
}

/** A change log file as sluice 0.1.0 created it (user_version 0), with its identity. */
function writeFormat1Log(file: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(LOG_V1);
  db.prepare(`INSERT INTO meta (key, value) VALUES ('log_id', ?)`).run(LOG_ID);
  db.close();
}

function logUserVersion(set?: number): number {
  const db = new Database(logFile);
  try {
    if (set !== undefined) db.pragma(`user_version = ${set}`);
    return Number(db.pragma('user_version', { simple: true }));
  } finally {
    db.close();
  }
}

before(async () => {
  const c = await startClusters();
  source = c.source;
  destination = c.destination;
  stopAll = c.stopAll;
  await source.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, v text NOT NULL); INSERT INTO ${TABLE} SELECT i, 'v' || i FROM generate_series(1, 500) i`);
  work = makeWorkdir({ sourceUrl: source.url(), destinationUrl: destination.url(), tables: [{ name: TABLE, chunkRows: 100 }] });
  // The state of a 0.1.0 installation: its exact DDL, another pipeline's rows, this pipeline's identity and log.
  await destination.query(STATE_V1);
  await destination.query(OLD_ROWS);
  await destination.query(`INSERT INTO _sluice.pipelines (name, slot, publication, log_id, version) VALUES ('test', 'sluice_test', 'sluice_test', $1, '0.1.0')`, [
    LOG_ID,
  ]);
  mkdirSync(join(work.dir, 'log'), { recursive: true });
  logFile = join(work.dir, 'log', 'changes.db');
  writeFormat1Log(logFile);
});

after(async () => {
  if (run && run.child.exitCode === null && run.child.signalCode === null) {
    run.kill('SIGKILL');
    await run.exited(10_000).catch(() => undefined);
  }
  await stopAll?.();
  work?.remove();
});

test('status on a format-1 state reads it and says that `sluice run` migrates it', async () => {
  const r = await sluice(['status'], { config: work!.config });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`the _sluice state is format 1; \`sluice run\` of this version migrates it to format ${STATE_FORMAT} at start`));
  const json = await sluice(['status', '--json'], { config: work!.config });
  assert.match(JSON.parse(json.stdout).pipeline.stateNote, /format 1/);
  assert.equal(await readFormat(), 1, 'status changed nothing');
});

test('sluice run migrates a format-1 state and change log, keeps what they held, and the table streams', async () => {
  const before = await oldPipelineRows();
  run = spawnSluice(['run'], { config: work!.config });
  await run.waitForOutput(/table caught up; streaming/, 60_000);
  assert.match(run.output(), /migrated _sluice from format 1 to 2/);
  assert.match(run.output(), /migrated change log from format 1 to 2/);
  await source.query(`INSERT INTO ${TABLE} SELECT i, 'new' || i FROM generate_series(501, 520) i; UPDATE ${TABLE} SET v = 'upd' WHERE id % 10 = 0; DELETE FROM ${TABLE} WHERE id < 5`);
  await eventuallyEqual(source.url(), destination.url(), TABLE, { what: 'after the migration', run });
  assert.equal(await readFormat(), STATE_FORMAT);
  assert.deepEqual(await oldPipelineRows(), before, "another pipeline's rows are untouched");
  const mine = await destination.query(`SELECT log_id, version FROM _sluice.pipelines WHERE name = 'test'`);
  assert.equal(mine.rows[0].log_id, LOG_ID, 'the change log kept its identity');
  run.kill('SIGTERM');
  assert.equal((await run.exited(30_000)).code, 0);
  assert.equal(logUserVersion(), LOG_FORMAT);
});

test('a restart finds both current: no migration, the table streams on from its cursor', async () => {
  run = spawnSluice(['run'], { config: work!.config });
  await run.waitForOutput(/pipeline running/, 60_000);
  await source.query(`UPDATE ${TABLE} SET v = 'again' WHERE id % 3 = 0; INSERT INTO ${TABLE} VALUES (9999, 'last')`);
  await eventuallyEqual(source.url(), destination.url(), TABLE, { what: 'after the restart', run });
  assert.doesNotMatch(run.output(), /migrated/);
  const runs = await destination.query(`SELECT count(*)::int AS n FROM _sluice.runs WHERE pipeline = 'test'`);
  assert.equal(runs.rows[0].n, 1, 'not reloaded');
  run.kill('SIGTERM');
  assert.equal((await run.exited(30_000)).code, 0);
});

test('a newer _sluice format is refused by run, status and backfill with exit 2, naming both formats', async () => {
  await destination.query(`UPDATE _sluice.meta SET value = '999' WHERE key = 'format'`);
  try {
    const expect = (r: { code: number | null; stderr: string }, what: string) => {
      assert.equal(r.code, 2, `${what}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`_sluice state in the destination is format 999, this sluice reads formats up to ${STATE_FORMAT}`), what);
      assert.match(r.stderr, /this state was written by a newer sluice \(format 999\); upgrade sluice to a version that reads format 999/, what);
    };
    expect(await sluice(['run'], { config: work!.config, timeoutMs: 60_000 }), 'run');
    expect(await sluice(['status'], { config: work!.config }), 'status');
    expect(await sluice(['backfill', TABLE, '--mode', 'upsert'], { config: work!.config }), 'backfill');
    assert.equal(await readFormat(), 999, 'left as it is');
    assert.equal((await destination.query(`SELECT count(*)::int AS n FROM _sluice.requests WHERE pipeline = 'test'`)).rows[0].n, 0, 'nothing recorded');
  } finally {
    await destination.query(`UPDATE _sluice.meta SET value = $1 WHERE key = 'format'`, [String(STATE_FORMAT)]);
  }
});

test('a newer change log format is refused by run with exit 2', async () => {
  logUserVersion(999);
  try {
    const r = await sluice(['run'], { config: work!.config, timeoutMs: 60_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`change log .*changes\\.db is format 999, this sluice reads formats up to ${LOG_FORMAT}`));
    assert.match(r.stderr, /upgrade sluice to a version that reads format 999/);
    assert.equal(logUserVersion(), 999);
  } finally {
    logUserVersion(LOG_FORMAT);
  }
});

/** A scratch database of the destination cluster holding a format-1 state, for the state functions. */
async function scratchFormat1(name: string): Promise<string> {
  await destination.createDatabase(name);
  await destination.query(STATE_V1, undefined, name);
  return destination.url(name);
}

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

test('two processes starting at once: one migrates, the other waits and finds the state current', async () => {
  const url = await scratchFormat1('race');
  const lines: string[] = [];
  const logger = createLogger({ write: (l) => lines.push(l) });
  const [a, b] = [await client(url), await client(url)];
  try {
    const found = await Promise.all([ensureStateSchema(a, logger), ensureStateSchema(b, logger)]);
    assert.deepEqual(found.sort(), [1, STATE_FORMAT]);
    assert.equal(lines.filter((l) => /migrated _sluice from format 1 to 2/.test(l)).length, 1, lines.join('\n'));
    assert.equal(await readStateFormat(a), STATE_FORMAT);
  } finally {
    await a.end();
    await b.end();
  }
});

test('a migration refuses while a pipeline runs on the older state, and proceeds once it stopped', async () => {
  const url = await scratchFormat1('busy');
  const [holder, c] = [await client(url), await client(url)];
  try {
    await c.query(`INSERT INTO _sluice.pipelines (name, slot, publication, pid, host, version) VALUES ('other', 's', 'p', 4242, 'h2', '0.1.0')`);
    // What a running pipeline holds (orchestrator.ts): the session advisory lock keyed by its name.
    await holder.query(`SELECT pg_advisory_lock(hashtextextended('sluice:' || $1, 0))`, ['other']);
    await assert.rejects(ensureStateSchema(c), (err: unknown) => {
      assert.ok(err instanceof SluiceError && err.code === 'STATE_FORMAT' && err.isUsageError);
      assert.match(err.message, new RegExp(`cannot migrate _sluice from format 1 to ${STATE_FORMAT} while pipeline other \\(pid 4242 on h2, sluice 0\\.1\\.0\\) is running`));
      return true;
    });
    assert.equal(await readStateFormat(c), 1, 'rolled back');
    await holder.query(`SELECT pg_advisory_unlock_all()`);
    assert.equal(await ensureStateSchema(c), 1);
    assert.equal(await readStateFormat(c), STATE_FORMAT);
  } finally {
    await holder.end();
    await c.end();
  }
});

async function readFormat(): Promise<number | null> {
  const c = await client(destination.url());
  try {
    return await readStateFormat(c);
  } finally {
    await c.end();
  }
}
