/**
 * Foreign keys in the destination when sluice's destination role may not set
 * `session_replication_role` (not a superuser, no `GRANT SET ON PARAMETER`): sluice warns at start
 * with the grant to run; a load that meets a row before its parent fails naming that grant (never
 * a bare foreign-key error); once the grant is made, the reload works and the keys stay valid.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { killIfRunning, makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

const PIPELINE = 'fkrole';
// The child first, one table at a time: track's chunks arrive before any album row.
const TABLES = ['public.track', 'public.album'];
const SCHEMA = `
  CREATE TABLE public.album (id int PRIMARY KEY, title text NOT NULL);
  CREATE TABLE public.track (id int PRIMARY KEY, album_id int NOT NULL CONSTRAINT track_album_fk REFERENCES public.album (id), name text NOT NULL);`;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await source.query(SCHEMA);
  await source.query(`
    INSERT INTO public.album SELECT i, 'album ' || i FROM generate_series(1, 50) i;
    INSERT INTO public.track SELECT i, 1 + i % 50, 'track ' || i FROM generate_series(1, 1000) i;`);
  // sluice's destination role owns the database and the schema, and nothing more.
  await destination.query(`CREATE ROLE app LOGIN; ALTER DATABASE postgres OWNER TO app; ALTER SCHEMA public OWNER TO app`);
  const appUrl = destination.url().replace(/^postgres:\/\/[^:]+:/, 'postgres://app:');
  await destination.query(`SET ROLE app; ${SCHEMA}; RESET ROLE`);
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: appUrl,
    pipeline: PIPELINE,
    pipelineExtra: 'concurrency: 1',
    tables: TABLES.map((name) => ({ name, chunkRows: 200 })),
  });
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  work?.remove();
});

async function states(): Promise<Record<string, { state: string; error: string | null }>> {
  const r = await destination.query(`SELECT name, state, error FROM _sluice.tables WHERE pipeline = $1`, [PIPELINE]).catch(() => ({ rows: [] }));
  return Object.fromEntries(r.rows.map((x) => [x.name, { state: x.state, error: x.error }]));
}

test('without the right to set session_replication_role: a warning with the grant, and a load that meets a missing parent names it', { timeout: 120_000 }, async () => {
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/cannot set session_replication_role/, 60_000);
  assert.match(run.output(), /GRANT SET ON PARAMETER session_replication_role TO "?app"?/);
  await waitUntil('track fails, album streams', async () => {
    const s = await states();
    return s['public.track']?.state === 'failed' && s['public.album']?.state === 'streaming';
  }, 90_000, 300);
  const s = await states();
  assert.match(s['public.track'].error ?? '', /track_album_fk/);
  assert.match(s['public.track'].error ?? '', /GRANT SET ON PARAMETER session_replication_role/);
  // status says it too, with the grant, as long as the role lacks it.
  const st = await sluice(['status'], { config: work.config });
  assert.match(st.stdout, /^warning: foreign keys involve the replicated tables and role app may not set session_replication_role.*GRANT SET ON PARAMETER session_replication_role TO "?app"?/m);
});

test('after the grant and a restart, the failed load resumes and works; a reload works; the foreign key stays valid', { timeout: 120_000 }, async () => {
  await destination.query(`GRANT SET ON PARAMETER session_replication_role TO app`);
  run!.kill('SIGTERM');
  await run!.exited(30_000);
  run = spawnSluice(['run'], { config: work.config });
  await waitUntil('both tables streaming', async () => {
    const s = await states();
    return s['public.track']?.state === 'streaming' && s['public.album']?.state === 'streaming';
  }, 60_000, 300);
  const r = await sluice(['backfill', 'public.track', '--mode', 'truncate', '--wait'], { config: work.config, timeoutMs: 90_000 });
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${run.output().slice(-3000)}`);
  assert.doesNotMatch(run.output(), /cannot set session_replication_role/);
  await source.query(`INSERT INTO public.album VALUES (51, 'new'); INSERT INTO public.track VALUES (1001, 51, 'new')`);
  await waitUntil('both tables equal', async () => {
    try {
      for (const t of TABLES) await assertTablesEqual(source.url(), destination.url(), t);
      return true;
    } catch {
      return false;
    }
  }, 30_000);
  const fk = await destination.query(`SELECT convalidated FROM pg_constraint WHERE conname = 'track_album_fk'`);
  assert.deepEqual(fk.rows, [{ convalidated: true }]);
  const st = await sluice(['status'], { config: work.config });
  assert.doesNotMatch(st.stdout, /session_replication_role/);
});
