/**
 * A destination as users have it: a Chinook-shaped schema (artist ← album ← track ← invoice_line →
 * invoice → customer → employee, employee reporting to employee) with foreign keys between the
 * replicated tables and secondary indexes, created in the destination FIRST (as `pg_dump -s` or the
 * team's migrations would), replicated while a writer changes rows across the tables in source
 * transactions that respect the keys (parents before children, children deleted first).
 *
 * - The first load lands in the tables created first, in the default (online) mode.
 * - Every table is re-backfilled in each mode that applies to it while the writer runs: online and
 *   upsert on a referenced table; truncate on an unreferenced one; drop without `--cascade` on a
 *   referenced table is refused (exit 2) naming the foreign key, with `--cascade` it reloads.
 * - Afterwards the oracle (ordered md5 per table, computed by each server) is equal on every table,
 *   and the destination has the same foreign keys (name, definition, validated) and the same
 *   indexes as it had before sluice touched it.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { killIfRunning, makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

const TABLES = ['artist', 'album', 'track', 'employee', 'customer', 'invoice', 'invoice_line'].map((t) => `public.${t}`);

const SCHEMA = `
  CREATE TABLE artist (artist_id int PRIMARY KEY, name varchar(120));
  CREATE TABLE album (album_id int PRIMARY KEY, title varchar(160) NOT NULL,
    artist_id int NOT NULL REFERENCES artist (artist_id));
  CREATE INDEX album_artist_id_idx ON album (artist_id);
  CREATE TABLE track (track_id int PRIMARY KEY, name varchar(200) NOT NULL,
    album_id int REFERENCES album (album_id), milliseconds int NOT NULL, unit_price numeric(10,2) NOT NULL);
  CREATE INDEX track_album_id_idx ON track (album_id);
  CREATE INDEX track_name_lower_idx ON track (lower(name));
  CREATE TABLE employee (employee_id int PRIMARY KEY, last_name varchar(20) NOT NULL,
    reports_to int REFERENCES employee (employee_id));
  CREATE INDEX employee_reports_to_idx ON employee (reports_to);
  CREATE TABLE customer (customer_id int PRIMARY KEY, email varchar(60) NOT NULL,
    support_rep_id int REFERENCES employee (employee_id));
  CREATE UNIQUE INDEX customer_email_key ON customer (email);
  CREATE TABLE invoice (invoice_id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customer (customer_id),
    invoice_date timestamptz NOT NULL, total numeric(10,2) NOT NULL);
  CREATE INDEX invoice_customer_id_idx ON invoice (customer_id);
  CREATE INDEX invoice_recent_idx ON invoice (invoice_date) WHERE total > 10;
  CREATE TABLE invoice_line (invoice_line_id int PRIMARY KEY,
    invoice_id int NOT NULL REFERENCES invoice (invoice_id) ON DELETE CASCADE,
    track_id int NOT NULL REFERENCES track (track_id), unit_price numeric(10,2) NOT NULL, quantity int NOT NULL);
  CREATE INDEX invoice_line_invoice_id_idx ON invoice_line (invoice_id);
  CREATE INDEX invoice_line_track_id_idx ON invoice_line (track_id);
`;

const DATA = `
  INSERT INTO artist SELECT g, 'artist ' || g FROM generate_series(1, 300) g;
  INSERT INTO album SELECT g, 'album ' || g, 1 + g % 300 FROM generate_series(1, 900) g;
  INSERT INTO track SELECT g, 'Track ' || g, 1 + g % 900, 100000 + g, 0.99 FROM generate_series(1, 9000) g;
  INSERT INTO employee VALUES (1, 'Adams', NULL);
  INSERT INTO employee SELECT g, 'emp' || g, 1 + (g - 2) / 3 FROM generate_series(2, 30) g;
  INSERT INTO customer SELECT g, 'c' || g || '@example.com', 1 + g % 30 FROM generate_series(1, 600) g;
  INSERT INTO invoice SELECT g, 1 + g % 600, '2026-01-01'::timestamptz + g * interval '1 hour', (g % 25)::numeric FROM generate_series(1, 4000) g;
  INSERT INTO invoice_line SELECT g, 1 + g % 4000, 1 + (g * 7) % 9000, 0.99, 1 + g % 3 FROM generate_series(1, 12000) g;
  ANALYZE;
`;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;

/** The destination's foreign keys and indexes, as they read before sluice touched it. */
let shapeBefore: { fks: string[]; indexes: string[] };

async function shape(c: Cluster): Promise<{ fks: string[]; indexes: string[]; notValid: string[] }> {
  const fks = await c.query(
    `SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) AS d, convalidated AS v
       FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace ORDER BY 1`,
  );
  const idx = await c.query(`SELECT indexdef AS d FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname`);
  return {
    fks: fks.rows.map((r) => r.d as string),
    notValid: fks.rows.filter((r) => !r.v).map((r) => r.d as string),
    indexes: idx.rows.map((r) => r.d as string),
  };
}

/** Keys of rows the writers insert (one sequence for all of them). */
let nextKey = 1_000_000;

/** Changes rows across the tables, each source transaction keeping every foreign key. */
class Writer {
  private stopped = false;
  private done: Promise<void> | null = null;
  transactions = 0;
  constructor(private readonly url: string) {}
  start(): void {
    this.done = this.loop();
  }
  private async loop(): Promise<void> {
    const c = new pg.Client({ connectionString: this.url });
    await c.connect();
    try {
      while (!this.stopped) {
        const n = nextKey++;
        const k = this.transactions;
        await c.query('BEGIN');
        // A new artist with an album and tracks, sold at once: parents first.
        await c.query(`INSERT INTO artist VALUES ($1::int, 'new artist ' || $1::int)`, [n]);
        await c.query(`INSERT INTO album VALUES ($1::int, 'new album', $1::int)`, [n]);
        await c.query(`INSERT INTO track SELECT $1::int * 10 + g, 'New ' || g, $1::int, 1000 * g, 1.29 FROM generate_series(0, 2) g`, [n]);
        await c.query(`INSERT INTO invoice VALUES ($1::int, 1 + $1::int % 600, now(), 3.87)`, [n]);
        await c.query(`INSERT INTO invoice_line SELECT $1::int * 10 + g, $1::int, $1::int * 10 + g, 1.29, 1 FROM generate_series(0, 2) g`, [n]);
        // Children deleted before their parents.
        await c.query(`DELETE FROM invoice_line WHERE track_id IN (SELECT track_id FROM track WHERE album_id = 1 + $1 % 900)`, [k]);
        await c.query(`DELETE FROM track WHERE album_id = 1 + $1 % 900`, [k]);
        await c.query(`UPDATE track SET album_id = NULL WHERE album_id = 1 + ($1 + 450) % 900`, [k]);
        await c.query(`DELETE FROM album WHERE album_id = 1 + ($1 + 450) % 900 AND NOT EXISTS (SELECT 1 FROM track t WHERE t.album_id = album.album_id)`, [k]);
        await c.query(`UPDATE track SET unit_price = unit_price + 0.01 WHERE track_id % 97 = $1 % 97`, [k]);
        // A customer moves to another support rep; an employee to another manager.
        await c.query(`UPDATE customer SET support_rep_id = 1 + ($1 * 7) % 30 WHERE customer_id = 1 + $1 % 600`, [k]);
        await c.query(`UPDATE employee SET reports_to = 1 WHERE employee_id = 2 + $1 % 29`, [k]);
        await c.query('COMMIT');
        this.transactions++;
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await c.end().catch(() => {});
    }
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

async function tableStates(): Promise<Record<string, string>> {
  const r = await sluice(['status', '--json'], { config: work.config });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const s = JSON.parse(r.stdout) as { tables: { name: string; state: string }[] };
  return Object.fromEntries(s.tables.map((t) => [t.name, t.state]));
}

async function allEqual(what: string): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (const t of TABLES) {
    for (;;) {
      try {
        await assertTablesEqual(source.url(), destination.url(), t);
        break;
      } catch (err) {
        if (run && run.child.exitCode !== null) throw new Error(`sluice exited during "${what}":\n${run.output().slice(-4000)}`);
        if (Date.now() > deadline) {
          (err as Error).message = `${what}: ${(err as Error).message}\n--- sluice output (tail):\n${run?.output().slice(-4000)}`;
          throw err;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }
}

/** Every foreign key and index the destination had before, all foreign keys validated again. */
async function assertShapeKept(what: string): Promise<void> {
  await waitUntil(`${what}: foreign keys validated`, async () => (await shape(destination)).notValid.length === 0, 60_000);
  const now = await shape(destination);
  assert.deepEqual(now.fks, shapeBefore.fks, `${what}: foreign keys`);
  assert.deepEqual(now.indexes, shapeBefore.indexes, `${what}: indexes`);
}

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await source.query(SCHEMA + DATA);
  await destination.query(SCHEMA);
  const s = await shape(destination);
  shapeBefore = { fks: s.fks, indexes: s.indexes };
  assert.equal(shapeBefore.fks.length, 7);
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline: 'chinook',
    pipelineExtra: 'concurrency: 3',
    tables: TABLES.map((name) => ({ name, chunkRows: 2000 })),
  });
});

after(async () => {
  await killIfRunning(run);
  work?.remove();
  await stopAll?.();
});

test('the first load lands in the schema created first, with writes across the tables, foreign keys and indexes kept', async () => {
  const writer = new Writer(source.url());
  writer.start();
  try {
    run = spawnSluice(['run'], { config: work.config });
    await waitUntil(
      'every table streaming',
      async () => {
        if (run!.child.exitCode !== null) throw new Error(`sluice exited:\n${run!.output()}`);
        const st = await tableStates().catch(() => ({}) as Record<string, string>);
        return TABLES.every((t) => st[t] === 'streaming');
      },
      180_000,
      500,
    );
  } finally {
    await writer.stop();
  }
  assert.ok(writer.transactions > 5, 'the writer ran during the load');
  // The UNIQUE index of the schema created first is named, with what it can do and the way out.
  assert.match(run!.output(), /destination public\.customer has the UNIQUE index customer_email_key beyond its primary key/);
  await allEqual('after the first load');
  await assertShapeKept('after the first load');
});

for (const [table, mode] of [
  ['public.album', 'online'],
  ['public.artist', 'upsert'],
  ['public.invoice_line', 'truncate'],
  ['public.employee', 'online'],
] as const) {
  test(`backfill ${table} --mode ${mode} under writes across the tables keeps every foreign key and index`, async () => {
    const writer = new Writer(source.url());
    writer.start();
    try {
      const r = await sluice(['backfill', table, '--mode', mode, '--wait'], { config: work.config, timeoutMs: 180_000 });
      assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n--- run:\n${run?.output().slice(-3000)}`);
    } finally {
      await writer.stop();
    }
    await allEqual(`after --mode ${mode} of ${table}`);
    await assertShapeKept(`after --mode ${mode} of ${table}`);
  });
}

test('--mode drop of a referenced table is refused naming what depends on it; --cascade reloads it and the keys come back', async () => {
  const refused = await sluice(['backfill', 'public.album', '--mode', 'drop', '--wait'], { config: work.config });
  assert.equal(refused.code, 2, refused.stdout + refused.stderr);
  assert.match(refused.stdout + refused.stderr, /track_album_id_fkey/);
  assert.match(refused.stdout + refused.stderr, /--cascade/);
  assert.deepEqual((await shape(destination)).fks, shapeBefore.fks, 'nothing was dropped by the refusal');

  const writer = new Writer(source.url());
  writer.start();
  try {
    const r = await sluice(['backfill', 'public.album', '--mode', 'drop', '--cascade', '--wait'], { config: work.config, timeoutMs: 180_000 });
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n--- run:\n${run?.output().slice(-3000)}`);
  } finally {
    await writer.stop();
  }
  await allEqual('after --mode drop --cascade of album');
  await assertShapeKept('after --mode drop --cascade of album');
});
