/**
 * Every common built-in type (plus an enum, a domain with a CHECK, an array of the enum) round-trips
 * exactly through the backfill and through CDC, and the destination's column types equal the source's.
 *
 * Two tables with the same columns: `types` has an array of a user enum, so its backfill goes through
 * text COPY (arrays of user types embed type OIDs in binary); `types_bin` lacks that column (dropped
 * after creation, which leaves a dropped attribute behind) and is backfilled with binary COPY.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { COLUMNS, DDL, EDGE_ROWS, generatedRowsSql } from '../support/round-trip-types.js';
import { makeWorkdir, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir | undefined;
let run: Running | undefined;

const TABLES = ['public.types', 'public.types_bin'];

const BIN_COLUMNS = COLUMNS.filter((c) => c !== 'c_enum_arr');

async function sourceTypes(c: Cluster, table: string): Promise<string[]> {
  const r = await c.query(
    `SELECT attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END AS d
       FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [table],
  );
  return r.rows.map((x) => x.d as string);
}

async function allEqual(): Promise<boolean> {
  for (const t of TABLES) {
    try {
      await assertTablesEqual(source.url(), destination.url(), t);
    } catch {
      return false;
    }
  }
  return true;
}

async function states(): Promise<Record<string, string>> {
  const r = await destination
    .query(`SELECT name, state, error FROM _sluice.tables WHERE pipeline = 'types'`)
    .catch(() => ({ rows: [] as { name: string; state: string; error: string | null }[] }));
  return Object.fromEntries(r.rows.map((x) => [x.name, x.error ? `${x.state}: ${x.error}` : x.state]));
}

before(async () => {
  const clusters = await startClusters();
  source = clusters.source;
  destination = clusters.destination;
  stopAll = clusters.stopAll;
  await source.query(DDL);
  for (const [i, row] of EDGE_ROWS.entries()) {
    await source.query(`INSERT INTO public.types (${COLUMNS.join(', ')}) VALUES ${row.replace('$ID', String(i + 1))}`);
  }
  await source.query(generatedRowsSql(100, 1099));
  await source.query(`
    CREATE TABLE public.types_bin (LIKE public.types INCLUDING ALL);
    ALTER TABLE public.types_bin DROP COLUMN c_enum_arr;
    INSERT INTO public.types_bin SELECT ${BIN_COLUMNS.join(', ')} FROM public.types;
    ANALYZE public.types, public.types_bin;
  `);
});

after(async () => {
  if (run && run.child.exitCode === null) {
    run.kill('SIGTERM');
    await run.exited(30_000).catch(() => run!.kill('SIGKILL'));
  }
  work?.remove();
  await stopAll?.();
});

test('every common type round-trips through the backfill and through CDC', { timeout: 180_000 }, async () => {
  const count = await source.query(`SELECT count(*)::int AS n FROM public.types`);
  assert.equal(count.rows[0].n, EDGE_ROWS.length + 1000);

  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    pipeline: 'types',
    tables: TABLES.map((name) => ({ name, chunkRows: 300 })),
  });
  const t0 = Date.now();
  run = spawnSluice(['run'], { config: work.config });
  await waitUntil(
    'both tables streaming',
    async () => {
      if (run!.child.exitCode !== null) throw new Error(`sluice run exited (${run!.child.exitCode}):\n${run!.output()}`);
      const s = await states();
      if (Object.values(s).some((v) => v.startsWith('failed'))) throw new Error(`a table failed: ${JSON.stringify(s)}\n${run!.output()}`);
      return TABLES.every((t) => s[t] === 'streaming');
    },
    90_000,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}\n--- sluice output ---\n${run!.output()}`);
  });
  console.log(`# backfill to streaming took ${Date.now() - t0} ms`);

  // Backfill: text COPY for `types` (enum array), binary COPY for `types_bin`.
  const out = run.output();
  assert.match(out, /backfill started.*table=public\.types .*binary=false/);
  assert.match(out, /backfill started.*table=public\.types_bin .*binary=true/);
  for (const t of TABLES) {
    await assertTablesEqual(source.url(), destination.url(), t);
    assert.deepEqual(await sourceTypes(destination, t), await sourceTypes(source, t), `${t}: destination column types`);
  }

  // CDC: new edge rows, every column of some rows updated (incl. to and from NULL), key changes, deletes.
  // Each step runs on both tables (types_bin without the enum array column).
  const t1 = Date.now();
  type Step = (table: string, cols: string[]) => string;
  const setAll = (cols: string[]) => cols.filter((c) => c !== 'id').map((c) => `${c} = o.${c}`).join(', ');
  const steps: Step[] = [
    ...EDGE_ROWS.map((row, i): Step => (table, cols) =>
      table === 'public.types'
        ? `INSERT INTO public.types (${COLUMNS.join(', ')}) VALUES ${row.replace('$ID', String(5000 + i))}`
        : `INSERT INTO ${table} (${cols.join(', ')}) SELECT ${cols.join(', ')} FROM public.types WHERE id = ${5000 + i}`,
    ),
    (table, cols) =>
      table === 'public.types'
        ? generatedRowsSql(2000, 2099)
        : `INSERT INTO ${table} (${cols.join(', ')}) SELECT ${cols.join(', ')} FROM public.types WHERE id BETWEEN 2000 AND 2099`,
    // every column of some generated rows takes the value of another row (NULLs both ways)
    (table, cols) => `UPDATE ${table} t SET ${setAll(cols)} FROM ${table} o WHERE o.id = t.id + 337 AND t.id BETWEEN 100 AND 160`,
    // generated rows take the edge rows' values, then the edge rows take generated values
    (table, cols) => `UPDATE ${table} t SET ${setAll(cols)} FROM ${table} o WHERE o.id = t.id - 300 AND t.id BETWEEN 301 AND ${300 + EDGE_ROWS.length}`,
    (table, cols) => `UPDATE ${table} t SET ${setAll(cols)} FROM ${table} o WHERE o.id = t.id + 200 AND t.id BETWEEN 1 AND ${EDGE_ROWS.length}`,
    // the TOASTed row: other columns change, the long text and bytea are left out of the update image
    (table) => `UPDATE ${table} SET c_int = -1, c_enum = 'happy', c_notnull = 'toast kept' WHERE id = 5005`,
    // key changes, one of them of the TOASTed row
    (table) => `UPDATE ${table} SET id = id + 100000 WHERE id BETWEEN 500 AND 520`,
    (table) => `UPDATE ${table} SET id = 6005, c_smallint = 7 WHERE id = 5005`,
    (table) => `DELETE FROM ${table} WHERE id % 9 = 0 AND id < 2000`,
    (table) => `DELETE FROM ${table} WHERE id = 5006`,
  ];
  for (const step of steps) {
    await source.query(step('public.types', COLUMNS));
    await source.query(step('public.types_bin', BIN_COLUMNS));
  }
  assert.equal((await source.query(`SELECT count(*)::int AS n FROM public.types WHERE id = 6005 AND length(c_text) = 192000`)).rows[0].n, 1);

  await waitUntil('destination equals source after CDC', allEqual, 30_000, 250).catch(async () => {
    const s = await states();
    for (const t of TABLES) await assertTablesEqual(source.url(), destination.url(), t).catch((e) => console.log(`# ${e.message}`));
    throw new Error(`not equal after 30 s; states ${JSON.stringify(s)}\n--- sluice output ---\n${run!.output()}`);
  });
  console.log(`# CDC round trip took ${Date.now() - t1} ms`);
  for (const t of TABLES) {
    await assertTablesEqual(source.url(), destination.url(), t);
    assert.deepEqual(await sourceTypes(destination, t), await sourceTypes(source, t), `${t}: destination column types`);
  }
  const s = await states();
  assert.deepEqual(s, { 'public.types': 'streaming', 'public.types_bin': 'streaming' });
  const applied = await destination.query(`SELECT name, changes_applied::int AS n FROM _sluice.cursors WHERE pipeline = 'types' ORDER BY name`);
  for (const r of applied.rows) assert.ok(r.n >= 100, `${r.name}: ${r.n} changes applied through CDC`);
  // The user types were re-created with the same definition: enum labels in order, the domain's CHECK.
  const typeDefs = `SELECT (SELECT array_agg(enumlabel ORDER BY enumsortorder)::text FROM pg_enum WHERE enumtypid = 'public.mood'::regtype) AS labels,
      (SELECT string_agg(pg_get_constraintdef(oid), ' ') FROM pg_constraint WHERE contypid = 'extra.posint'::regtype) AS checks,
      format_type('extra.posint'::regtype, NULL) AS domain, (SELECT format_type(typbasetype, typtypmod) FROM pg_type WHERE oid = 'extra.posint'::regtype) AS base`;
  assert.deepEqual((await destination.query(typeDefs)).rows[0], (await source.query(typeDefs)).rows[0]);
  assert.equal((await destination.query(typeDefs)).rows[0].checks, 'CHECK ((VALUE > 0))');

  run.kill('SIGTERM');
  const res = await run.exited(30_000);
  assert.equal(res.code, 0, res.stderr);
});
