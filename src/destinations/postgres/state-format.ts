/**
 * The format of sluice's state in the destination (schema `_sluice`), and how an older format is
 * brought forward at start.
 *
 * Format 1 is the schema of sluice 0.1.0, which recorded no format: `_sluice.tables` exists and
 * `_sluice.meta` does not. From format 2 on, `_sluice.meta` holds the row `('format', '<n>')`. That
 * record never moves or changes shape in any later format: it is how an older sluice recognises a
 * newer state and refuses it instead of misreading it.
 *
 * Each later format is one step of STATE_MIGRATIONS (ordered; a step takes format `to - 1` to `to`);
 * the last step's `to` is the format this sluice reads and writes. FORMAT_1_DDL is frozen (test:
 * it equals test/fixtures/state-format-1.sql): a change to the schema is a new step, never an edit
 * of it or of an earlier step. A new state is created as format 1 and brought forward by the same
 * steps, so every start of sluice takes the path an upgrade takes.
 *
 * All of it runs in one transaction under a destination-wide advisory lock: two processes starting
 * at once serialise and the second finds the state current; a step that fails rolls everything
 * back and the state keeps its old format.
 */
import type pg from 'pg';
import { SluiceError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';

/** The `_sluice` schema of format 1, exactly as sluice 0.1.0 created it. Never edit it: add a step. */
export const FORMAT_1_DDL = `
CREATE SCHEMA IF NOT EXISTS _sluice;
CREATE TABLE IF NOT EXISTS _sluice.pipelines (
  name text PRIMARY KEY,
  slot text NOT NULL,
  publication text NOT NULL,
  log_id text,
  throttle jsonb,
  pid int,
  host text,
  version text,
  started_at timestamptz,
  heartbeat_at timestamptz
);
CREATE TABLE IF NOT EXISTS _sluice.tables (
  pipeline text NOT NULL,
  name text NOT NULL,
  target text NOT NULL,
  state text NOT NULL,
  mode text,
  strategy text NOT NULL DEFAULT 'keyset',
  chunk_rows int,
  run_id bigint,
  l0_lsn pg_lsn,
  last_key jsonb,
  chunks_done bigint NOT NULL DEFAULT 0,
  rows_copied bigint NOT NULL DEFAULT 0,
  rows_estimated bigint NOT NULL DEFAULT 0,
  rows_per_second float8 NOT NULL DEFAULT 0,
  pending_lsn pg_lsn,
  lag_seconds float8,
  error text,
  staging text,
  plan jsonb,
  keep_archive boolean NOT NULL DEFAULT false,
  detail text,
  requested_seq bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (pipeline, name)
);
CREATE TABLE IF NOT EXISTS _sluice.cursors (
  pipeline text NOT NULL,
  name text NOT NULL,
  target text NOT NULL,
  lsn pg_lsn NOT NULL,
  idx bigint NOT NULL,
  commit_time timestamptz,
  applied_at timestamptz NOT NULL DEFAULT now(),
  changes_applied bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (pipeline, name, target)
);
CREATE TABLE IF NOT EXISTS _sluice.chunks (
  pipeline text NOT NULL,
  table_name text NOT NULL,
  run_id bigint NOT NULL,
  lo text NOT NULL,
  hi text,
  rows bigint NOT NULL,
  done_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (pipeline, table_name, run_id, lo)
);
CREATE TABLE IF NOT EXISTS _sluice.archives (
  pipeline text NOT NULL,
  table_name text NOT NULL,
  archive text NOT NULL,
  run_id bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  drop_after timestamptz,
  dropped_at timestamptz,
  PRIMARY KEY (pipeline, archive)
);
CREATE TABLE IF NOT EXISTS _sluice.runs (
  id bigserial PRIMARY KEY,
  pipeline text NOT NULL,
  table_name text NOT NULL,
  mode text NOT NULL,
  strategy text NOT NULL,
  where_sql text NOT NULL DEFAULT '',
  params jsonb NOT NULL DEFAULT '{}',
  version text,
  os_user text,
  host text,
  pid int,
  l0_lsn pg_lsn,
  started_at timestamptz NOT NULL DEFAULT now(),
  ended_at timestamptz,
  status text NOT NULL DEFAULT 'running',
  rows_copied bigint NOT NULL DEFAULT 0,
  chunks bigint NOT NULL DEFAULT 0,
  error text
);
CREATE TABLE IF NOT EXISTS _sluice.requests (
  id bigserial PRIMARY KEY,
  pipeline text NOT NULL,
  kind text NOT NULL,
  table_name text NOT NULL,
  params jsonb NOT NULL DEFAULT '{}',
  requested_by text,
  requested_at timestamptz NOT NULL DEFAULT now(),
  handled_at timestamptz,
  outcome text
);
`;

export interface StateMigration {
  /** The format this step produces (from `to - 1`). */
  readonly to: number;
  /** What changes, for the log. */
  readonly what: string;
  readonly up: (client: pg.ClientBase) => Promise<void>;
}

export const STATE_MIGRATIONS: readonly StateMigration[] = [
  {
    to: 2,
    what: 'the format record _sluice.meta',
    up: async (c) => {
      await c.query(`CREATE TABLE _sluice.meta (key text PRIMARY KEY, value text NOT NULL)`);
    },
  },
  {
    to: 3,
    what: 'the progress and ETA of each table (_sluice.tables.progress)',
    up: async (c) => {
      await c.query(`ALTER TABLE _sluice.tables ADD COLUMN progress jsonb`);
    },
  },
];

/** The format this sluice reads and writes. */
export const STATE_FORMAT = STATE_MIGRATIONS[STATE_MIGRATIONS.length - 1].to;

/** Serialises every creation or migration of `_sluice` in the destination database. */
const MIGRATION_LOCK = 7303872061;

/** The format of the destination's `_sluice` state; null when there is none yet. */
export async function readStateFormat(client: pg.ClientBase): Promise<number | null> {
  const r = await client.query(`SELECT to_regclass('_sluice.meta') IS NOT NULL AS meta, to_regclass('_sluice.tables') IS NOT NULL AS tables`);
  if (!r.rows[0].meta) return r.rows[0].tables ? 1 : null;
  const v = await client.query(`SELECT value FROM _sluice.meta WHERE key = 'format'`);
  const format = Number(v.rows[0]?.value);
  if (!Number.isInteger(format) || format < 1) {
    throw new SluiceError(
      'STATE_FORMAT',
      `the _sluice state in the destination has no readable format record (_sluice.meta 'format' is ${v.rows[0] ? `'${v.rows[0].value}'` : 'missing'}); ` +
        `restore the _sluice schema from a backup (pg_dump -n _sluice), or drop it to start over (every table reloads)`,
    );
  }
  return format;
}

/** Refuses a state this sluice cannot read: one written by a newer sluice. */
export function assertStateReadable(format: number | null): void {
  if (format === null || format <= STATE_FORMAT) return;
  throw new SluiceError(
    'STATE_FORMAT',
    `the _sluice state in the destination is format ${format}, this sluice reads formats up to ${STATE_FORMAT}: ` +
      `this state was written by a newer sluice (format ${format}); upgrade sluice to a version that reads format ${format}, ` +
      `or, to go back to this version, restore the _sluice schema and the change log file saved before the upgrade ` +
      `(docs/operations.md, "Upgrading sluice")`,
    { context: { format, supported: STATE_FORMAT } },
  );
}

/**
 * Creates the `_sluice` schema, or brings an older format forward to STATE_FORMAT; refuses a newer
 * one. Runs its own transaction (call it outside one). Returns the format found (null: none).
 */
export async function ensureStateSchema(client: pg.ClientBase, log?: Logger): Promise<number | null> {
  await client.query('BEGIN');
  let found: number | null;
  const done: StateMigration[] = [];
  try {
    await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    found = await readStateFormat(client);
    assertStateReadable(found);
    if (found !== STATE_FORMAT) {
      if (found === null) await client.query(FORMAT_1_DDL);
      else await refuseWhilePipelinesRun(client, found);
      for (const step of STATE_MIGRATIONS) {
        if (step.to <= (found ?? 1)) continue;
        await step.up(client);
        done.push(step);
      }
      await client.query(
        `INSERT INTO _sluice.meta (key, value) VALUES ('format', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
        [String(STATE_FORMAT)],
      );
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
  if (found === null) log?.info(`created the _sluice state in the destination (format ${STATE_FORMAT})`);
  else for (const step of done) log?.info(`migrated _sluice from format ${step.to - 1} to ${step.to}`, { change: step.what });
  return found;
}

/**
 * A pipeline running on this destination reads the state in the format it was started with: the
 * state does not change under it. A running pipeline holds its advisory lock (orchestrator.ts), keyed
 * by its name. Reads only what every format has (`_sluice.pipelines`: name, pid, host, version).
 */
async function refuseWhilePipelinesRun(client: pg.ClientBase, found: number): Promise<void> {
  const r = await client.query(
    `SELECT p.name, p.pid, p.host, p.version FROM _sluice.pipelines p
      WHERE EXISTS (SELECT 1 FROM pg_locks l
                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.pid <> pg_backend_pid()
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended('sluice:' || p.name, 0))
      ORDER BY p.name`,
  );
  if (r.rowCount === 0) return;
  const running = r.rows.map((p) => `${p.name} (pid ${p.pid ?? '?'} on ${p.host ?? '?'}, sluice ${p.version ?? '?'})`).join(', ');
  throw new SluiceError(
    'STATE_FORMAT',
    `cannot migrate _sluice from format ${found} to ${STATE_FORMAT} while ${r.rowCount === 1 ? 'pipeline' : 'pipelines'} ${running} ` +
      `${r.rowCount === 1 ? 'is' : 'are'} running on this destination with the older state: stop ${r.rowCount === 1 ? 'it' : 'them'}, start this sluice, ` +
      `then start the others with a sluice that reads format ${STATE_FORMAT}`,
    { context: { format: found, supported: STATE_FORMAT } },
  );
}
