/**
 * Foreign keys in the destination (issue 8): a Chinook-shaped schema (artist ← album ← track, and
 * employee.reports_to → employee) is created FIRST in the destination with its foreign keys, as
 * `pg_dump -s` or migrations would. Then:
 * - the first load in the default online mode loads the empty tables in place (no swap), whatever
 *   the order of the tables (track comes first in the config);
 * - a writer inserts parent then child in one source transaction and deletes child then parent;
 * - re-backfills in every mode (online, upsert, truncate of a table nobody references; truncate of
 *   a referenced one refused; drop without --cascade refused with the dependents named; drop with
 *   --cascade) each end with the oracle equal on every table and the set of foreign keys
 *   (name, definition, validated) in the destination exactly as it was.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { killIfRunning, makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

const PIPELINE = 'fks';
const TABLES = ['public.track', 'public.album', 'public.artist', 'public.employee'];
const SCHEMA = `
  CREATE TABLE public.artist (id int PRIMARY KEY, name text NOT NULL);
  CREATE TABLE public.album (id int PRIMARY KEY, artist_id int NOT NULL REFERENCES public.artist (id), title text NOT NULL);
  CREATE TABLE public.track (id int PRIMARY KEY, album_id int CONSTRAINT track_album_fk REFERENCES public.album (id), name text NOT NULL);
  CREATE INDEX track_album_idx ON public.track (album_id);
  CREATE TABLE public.employee (id int PRIMARY KEY, reports_to int CONSTRAINT employee_reports_to_fk REFERENCES public.employee (id), name text NOT NULL);`;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;
let fksBefore: string;
const t0 = Date.now();
const note = (line: string) => console.log(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await source.query(SCHEMA);
  await source.query(`
    INSERT INTO public.artist SELECT i, 'artist ' || i FROM generate_series(1, 40) i;
    INSERT INTO public.album SELECT i, 1 + i % 40, 'album ' || i FROM generate_series(1, 200) i;
    INSERT INTO public.track SELECT i, 1 + i % 200, 'track ' || i FROM generate_series(1, 3000) i;
    INSERT INTO public.employee VALUES (1, NULL, 'boss');
    INSERT INTO public.employee SELECT i, i / 2, 'employee ' || i FROM generate_series(2, 300) i;`);
  // The destination's schema exists before sluice runs, foreign keys included.
  await destination.query(SCHEMA);
  fksBefore = await foreignKeys();
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline: PIPELINE,
    tables: TABLES.map((name) => ({ name, chunkRows: 500 })),
  });
  run = spawnSluice(['run'], { config: work.config });
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  work?.remove();
});

/** The destination's foreign keys: table, name, definition, validated. */
async function foreignKeys(): Promise<string> {
  const r = await destination.query(
    `SELECT conrelid::regclass::text AS t, conname, pg_get_constraintdef(oid) AS def, convalidated
       FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace ORDER BY 1, 2`,
  );
  return r.rows.map((x) => `${x.t} ${x.conname} ${x.def} valid=${x.convalidated}`).join('\n');
}

function alive(): void {
  if (run && (run.child.exitCode !== null || run.child.signalCode !== null)) {
    throw new Error(`sluice run exited (${run.child.exitCode}/${run.child.signalCode}):\n${run.output().slice(-4000)}`);
  }
}

async function cli(args: string[], timeoutMs = 120_000) {
  const r = await sluice(args, { config: work.config, timeoutMs });
  note(`sluice ${args.join(' ')} → ${r.code}: ${(r.stdout + r.stderr).trim().replace(/\n/g, ' | ').slice(0, 600)}`);
  return r;
}

/** Every table equal by the oracle, and the foreign keys as they were (validation runs after a load). */
async function allAgree(what: string): Promise<void> {
  let last = '';
  await waitUntil(`${what}: every table equal and every foreign key in place and valid`, async () => {
    alive();
    try {
      for (const t of TABLES) await assertTablesEqual(source.url(), destination.url(), t);
    } catch (err) {
      last = (err as Error).message;
      return false;
    }
    last = await foreignKeys();
    return last === fksBefore;
  }, 90_000, 300).catch((err) => {
    throw new Error(`${(err as Error).message}\nlast: ${last}\nexpected fks:\n${fksBefore}\n--- sluice output (tail):\n${run?.output().slice(-4000)}`);
  });
}

/** Source transactions across the tables: parent then child inserted together, child then parent deleted together. */
class Writer {
  private stopped = false;
  private done: Promise<void> | null = null;
  private static next = 100_000;
  private static oldAlbum = 200;
  txns = 0;

  start(): void {
    // Caught here and rethrown by stop(): an unhandled rejection would end the test early.
    this.done = this.loop().catch((err) => {
      this.error = err as Error;
    });
  }

  private error: Error | null = null;

  private async loop(): Promise<void> {
    const c = new pg.Client({ connectionString: source.url() });
    await c.connect();
    try {
      while (!this.stopped) {
        const n = Writer.next++;
        await c.query(`BEGIN`);
        await c.query(`INSERT INTO public.artist VALUES ($1, 'new artist')`, [n]);
        await c.query(`INSERT INTO public.album VALUES ($1, $1, 'new album')`, [n]);
        await c.query(`INSERT INTO public.track VALUES ($1, $1, 'new track'), ($1 + 500000, $1, 'another')`, [n]);
        await c.query(`UPDATE public.track SET album_id = $1 WHERE id = $2`, [n, 1 + (n % 3000)]);
        await c.query(`INSERT INTO public.employee VALUES ($1, 1 + $1 % 300, 'hire')`, [n]);
        await c.query(`COMMIT`);
        if (n % 2 === 0) {
          // Child then parent, in one transaction: an earlier trio, and now and then an original album.
          const m = n - 1;
          await c.query(`BEGIN`);
          await c.query(`UPDATE public.employee SET reports_to = NULL WHERE reports_to = $1`, [m]);
          await c.query(`DELETE FROM public.employee WHERE id = $1`, [m]);
          await c.query(`UPDATE public.track SET album_id = NULL WHERE album_id = $1`, [m]);
          await c.query(`DELETE FROM public.track WHERE id IN ($1, $1 + 500000)`, [m]);
          await c.query(`DELETE FROM public.album WHERE id = $1`, [m]);
          await c.query(`DELETE FROM public.artist WHERE id = $1`, [m]);
          if (n % 10 === 0 && Writer.oldAlbum > 150) {
            const a = Writer.oldAlbum--;
            await c.query(`DELETE FROM public.track WHERE album_id = $1`, [a]);
            await c.query(`DELETE FROM public.album WHERE id = $1`, [a]);
          }
          await c.query(`COMMIT`);
        }
        this.txns++;
        await new Promise((r) => setTimeout(r, 15));
      }
    } finally {
      await c.end().catch(() => {});
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    if (this.error) throw this.error;
  }
}

async function underWrites<T>(fn: () => Promise<T>): Promise<T> {
  const w = new Writer();
  w.start();
  try {
    await new Promise((r) => setTimeout(r, 300));
    return await fn();
  } finally {
    await w.stop();
    note(`writer: ${w.txns} transactions`);
    assert.ok(w.txns > 0);
  }
}

test('first load of a schema created first: online loads the empty tables in place, foreign keys kept', { timeout: 180_000 }, async () => {
  await waitUntil('every table streaming after the first load', async () => {
    alive();
    const r = await destination.query(`SELECT state FROM _sluice.tables WHERE pipeline = $1`, [PIPELINE]).catch(() => ({ rows: [] as { state: string }[] }));
    return r.rows.length === 4 && r.rows.every((x) => x.state === 'streaming');
  }, 150_000, 300);
  assert.match(run!.output(), /loads in place/);
  const staging = await destination.query(`SELECT relname FROM pg_class WHERE relname LIKE '%sluice%' AND relkind = 'r'`);
  assert.deepEqual(staging.rows, [], 'no staging or archive table: nothing was swapped');
  await underWrites(async () => new Promise((r) => setTimeout(r, 2000)));
  await allAgree('after the first load and writes');
});

for (const [table, mode, ...extra] of [
  ['public.album', 'online'],
  ['public.employee', 'online'],
  ['public.track', 'online'],
  ['public.album', 'upsert'],
  ['public.track', 'truncate'],
  ['public.track', 'drop'],
  ['public.employee', 'drop'],
  // ctid builds the key after the load: the keys are added back then.
  ['public.employee', 'drop', '--strategy', 'ctid', '--parallelism', '2'],
  ['public.album', 'online', '--strategy', 'ctid', '--parallelism', '2'],
] as const) {
  test(`backfill ${table} --mode ${mode}${extra.length ? ` ${extra.join(' ')}` : ''} under writes across tables: equal, foreign keys in place`, { timeout: 180_000 }, async () => {
    await underWrites(async () => {
      const r = await cli(['backfill', table, '--mode', mode, ...extra, '--wait']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    });
    await allAgree(`after backfill ${table} --mode ${mode}`);
    if (mode === 'online') {
      const archives = await destination.query(`SELECT archive FROM _sluice.archives WHERE pipeline = $1 AND table_name = $2`, [PIPELINE, table]);
      for (const a of archives.rows) {
        const fk = await destination.query(`SELECT conname FROM pg_constraint WHERE contype = 'f' AND (conrelid = to_regclass($1) OR confrelid = to_regclass($1))`, [a.archive]);
        assert.deepEqual(fk.rows, [], `archive ${a.archive} has no foreign key from or to it`);
      }
    }
  });
}

test('truncate of a referenced table is refused; drop of a referenced table is refused without --cascade, naming the dependents', { timeout: 60_000 }, async () => {
  const t = await cli(['backfill', 'public.album', '--mode', 'truncate']);
  assert.equal(t.code, 2);
  assert.match(t.stderr, /track_album_fk/);
  await destination.query(`CREATE VIEW public.album_titles AS SELECT id, title FROM public.album`);
  try {
    const d = await cli(['backfill', 'public.album', '--mode', 'drop', '--wait']);
    assert.equal(d.code, 2, d.stdout + d.stderr);
    assert.match(d.stderr, /foreign key track_album_fk on (public\.)?track/);
    assert.match(d.stderr, /view (public\.)?album_titles/);
    assert.match(d.stderr, /--cascade/);
    // The running pipeline refuses it too (a request recorded without the CLI's check).
    await destination.query(`INSERT INTO _sluice.requests (pipeline, kind, table_name, params) VALUES ($1, 'backfill', 'public.album', '{"mode":"drop"}')`, [PIPELINE]);
    await destination.query(`NOTIFY sluice_requests`);
    await waitUntil('the pipeline answers the drop request', async () => {
      alive();
      const r = await destination.query(`SELECT outcome FROM _sluice.requests WHERE pipeline = $1 AND handled_at IS NOT NULL ORDER BY id DESC LIMIT 1`, [PIPELINE]);
      return /refused: .*track_album_fk/.test(r.rows[0]?.outcome ?? '');
    }, 30_000);
  } finally {
    await destination.query(`DROP VIEW IF EXISTS public.album_titles`);
  }
  assert.equal(await foreignKeys(), fksBefore);
});

test('drop --cascade of a referenced table: the foreign keys of other tables are added back and validated, views created again', { timeout: 180_000 }, async () => {
  await destination.query(`
    CREATE VIEW public.album_titles WITH (security_barrier) AS SELECT id, title FROM public.album WHERE id > 10;
    CREATE VIEW public.album_title_count AS SELECT count(*) AS n FROM public.album_titles;
    CREATE ROLE reader; GRANT SELECT ON public.album_titles TO reader;`);
  const viewsOf = async () =>
    (await destination.query(
      `SELECT c.relname, pg_get_viewdef(c.oid) AS def, c.reloptions, c.relacl::text AS acl FROM pg_class c
        WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace ORDER BY 1`,
    )).rows;
  const before = await viewsOf();
  assert.equal(before.length, 2);
  await underWrites(async () => {
    const r = await cli(['backfill', 'public.album', '--mode', 'drop', '--cascade', '--wait']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  await allAgree('after backfill album --mode drop --cascade');
  assert.deepEqual(await viewsOf(), before, 'the views are there again, with their options and grants');
  await destination.query(`DROP VIEW public.album_title_count, public.album_titles; DROP ROLE reader`);
  await underWrites(async () => {
    const r = await cli(['backfill', 'public.artist', '--mode', 'drop', '--cascade', '--wait']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  await allAgree('after backfill artist --mode drop --cascade');
});

test('a scoped truncate of a referenced table deletes its rows without tripping the foreign key', { timeout: 180_000 }, async () => {
  await underWrites(async () => {
    const r = await cli(['backfill', 'public.album', '--mode', 'truncate', '--where', 'id > 100', '--wait']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
  await allAgree('after a scoped truncate of album');
});

test('TRUNCATE of parent and child at the source: applied although the destination parent is referenced', { timeout: 120_000 }, async () => {
  await source.query(`TRUNCATE public.track, public.album`);
  await source.query(`
    INSERT INTO public.album SELECT i, 1 + i % 40, 'album again ' || i FROM generate_series(1, 20) i;
    INSERT INTO public.track SELECT i, 1 + i % 20, 'track again ' || i FROM generate_series(1, 100) i;`);
  await allAgree('after TRUNCATE track, album at the source');
  const st = await destination.query(`SELECT name, state, error FROM _sluice.tables WHERE pipeline = $1 AND state <> 'streaming'`, [PIPELINE]);
  assert.deepEqual(st.rows, []);
});

test('a validation cut short by a stop is resumed at the next start', { timeout: 120_000 }, async () => {
  await waitUntil('no run left with keys to validate', async () => {
    const r = await destination.query(`SELECT count(*)::int AS n FROM _sluice.runs WHERE pipeline = $1 AND params ? 'validate'`, [PIPELINE]);
    return r.rows[0].n === 0;
  }, 60_000);
  run!.kill('SIGTERM');
  await run!.exited(30_000);
  // As a crash right after a swap's commit leaves it: the key added back NOT VALID, the run listing it.
  await destination.query(`ALTER TABLE public.track DROP CONSTRAINT track_album_fk`);
  await destination.query(`ALTER TABLE public.track ADD CONSTRAINT track_album_fk FOREIGN KEY (album_id) REFERENCES public.album (id) NOT VALID`);
  const fk = { name: 'track_album_fk', table: { schema: 'public', name: 'track' }, references: { schema: 'public', name: 'album' }, definition: 'FOREIGN KEY (album_id) REFERENCES album(id)', validated: true };
  await destination.query(
    `UPDATE _sluice.runs SET params = params || jsonb_build_object('validate', $2::jsonb) WHERE id = (SELECT max(id) FROM _sluice.runs WHERE pipeline = $1)`,
    [PIPELINE, JSON.stringify([fk])],
  );
  assert.notEqual(await foreignKeys(), fksBefore);
  run = spawnSluice(['run'], { config: work.config });
  await allAgree('after a restart with a validation pending');
  await waitUntil('the run no longer lists keys to validate', async () => {
    const r = await destination.query(`SELECT count(*)::int AS n FROM _sluice.runs WHERE pipeline = $1 AND params ? 'validate'`, [PIPELINE]);
    return r.rows[0].n === 0;
  }, 30_000);
});
