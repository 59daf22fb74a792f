/**
 * Primary-key changes of rows whose TOASTed column is left unchanged, while a table is loaded and
 * re-loaded (initial load, then `backfill --mode upsert | truncate | online`), with a SIGKILL in the
 * middle of every load. The change stream carries such a row's new key without the TOASTed value
 * ("unchanged TOAST"); during a replay from L0 the destination can be ahead of the replayed change
 * (rows copied later, or applied by the live cursor during an upsert load). These sequences broke
 * that once:
 *   - X → Y, then a new row inserted at X with another value (the old-key row in the destination is
 *     no longer the row Y came from);
 *   - X → Y → Z in separate transactions (Y is gone from the source when X → Y replays);
 *   - a row deleted at W, then X → W (W's old row must not lend its value);
 *   - pgbench's mix in one transaction: delete a row, re-insert it, change a key, update a balance.
 * `apply.batchRows: 2` splits the sequences across batches, so compaction cannot hide a sequence.
 * The independent oracle must find both tables equal after each load.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startClusters, type Cluster } from '../support/clusters.js';
import { makeWorkdir, sluice, spawnSluice, waitUntil, eventuallyEqual, type Running, type Workdir, killIfRunning } from '../support/sluice.js';

const TABLE = 'public.acct';
const ROWS = 3000;

let source: Cluster;
let destination: Cluster;
let stopAll: () => Promise<void>;
let work: Workdir;
let run: Running | undefined;
let writer: pg.Client;

const seed = process.env.SLUICE_TEST_SEED ? Number(process.env.SLUICE_TEST_SEED) : Math.floor(Math.random() * 2 ** 31);
let rndState = seed >>> 0 || 1;
function rnd(): number {
  rndState ^= rndState << 13;
  rndState ^= rndState >>> 17;
  rndState ^= rndState << 5;
  return (rndState >>> 0) / 2 ** 32;
}

/** Ids of rows that hold a TOASTed filler, and of rows that do not. */
const toasted = new Set<number>();
const plain = new Set<number>();
let nextId = 1_000_000;
let rounds = 0;

function take(set: Set<number>): number {
  const all = [...set];
  const id = all[Math.floor(rnd() * all.length)];
  set.delete(id);
  return id;
}

async function tx(sqls: [string, unknown[]][]): Promise<void> {
  await writer.query('BEGIN');
  try {
    for (const [sql, values] of sqls) await writer.query(sql, values);
    await writer.query('COMMIT');
  } catch (err) {
    await writer.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

const BIG = (k: number) => `repeat(md5('${k}'), 200)`; // 6,400 characters, stored out of line

/** One round of the sequences named at the top, each step its own transaction unless stated. */
async function mutate(): Promise<void> {
  rounds++;
  // X → Y, then a new row at X with another TOASTed value.
  const x1 = take(toasted);
  const y1 = nextId++;
  await tx([[`UPDATE ${TABLE} SET id = $1 WHERE id = $2`, [y1, x1]]]);
  await tx([[`INSERT INTO ${TABLE} VALUES ($1, 0, ${BIG(nextId++)})`, [x1]]]);
  toasted.add(y1).add(x1);
  // X → Y → Z, then a plain update of Z that leaves the filler alone.
  const x2 = take(toasted);
  const y2 = nextId++;
  const z2 = nextId++;
  await tx([[`UPDATE ${TABLE} SET id = $1 WHERE id = $2`, [y2, x2]]]);
  await tx([[`UPDATE ${TABLE} SET id = $1 WHERE id = $2`, [z2, y2]]]);
  await tx([[`UPDATE ${TABLE} SET bal = bal + 1 WHERE id = $1`, [z2]]]);
  toasted.add(z2);
  // W deleted, then X → W.
  const w = take(plain);
  const x3 = take(toasted);
  await tx([[`DELETE FROM ${TABLE} WHERE id = $1`, [w]]]);
  await tx([[`UPDATE ${TABLE} SET id = $1 WHERE id = $2`, [w, x3]]]);
  toasted.add(w);
  // pgbench's mix in one transaction: delete a row, re-insert it, change a key, update a balance.
  const d = take(toasted);
  const x4 = take(toasted);
  const y4 = nextId++;
  await tx([
    [`DELETE FROM ${TABLE} WHERE id = $1`, [d]],
    [`INSERT INTO ${TABLE} VALUES ($1, 7, ${BIG(d)})`, [d]],
    [`UPDATE ${TABLE} SET id = $1 WHERE id = $2`, [y4, x4]],
    [`UPDATE ${TABLE} SET bal = bal - 1 WHERE id = $1`, [y4]],
  ]);
  toasted.add(d).add(y4);
}

/** Runs `mutate` every ~200 ms until `stop` resolves true, or `max` rounds have run. */
async function mutateUntil(stop: () => Promise<boolean>, max = Infinity): Promise<void> {
  for (let i = 0; i < max; i++) {
    await mutate();
    if (await stop()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The table's state as sluice records it (read directly: `sluice status` takes seconds on a busy machine). */
async function stateOf(): Promise<string | undefined> {
  const r = await destination
    .query(`SELECT state FROM _sluice.tables WHERE name = $1`, [TABLE])
    .catch(() => ({ rows: [] as { state: string }[] }));
  return r.rows[0]?.state;
}

async function deadlocks(): Promise<number> {
  const r = await destination.query(`SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()`);
  return r.rows[0].n as number;
}

/** Kills `sluice run` once its table is backfilling (plus a random delay), and starts it again. */
async function killDuringLoad(): Promise<string> {
  await waitUntil('the table to backfill', async () => (await stateOf()) === 'backfilling', 60_000, 20).catch((err) => {
    throw new Error(`${(err as Error).message}; sluice output:\n${run!.output().slice(-3000)}`);
  });
  const delay = Math.floor(rnd() * 1200);
  await new Promise((r) => setTimeout(r, delay));
  const phase = (await stateOf()) ?? 'unknown';
  run!.kill('SIGKILL');
  await run!.exited(10_000);
  await mutate(); // while sluice is down: the slot keeps it
  run = spawnSluice(['run'], { config: work.config });
  return `killed ${delay} ms into the load (state ${phase})`;
}

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  writer = new pg.Client({ connectionString: source.url() });
  await writer.connect();
  await writer.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, bal int NOT NULL, filler text)`);
  await writer.query(`ALTER TABLE ${TABLE} ALTER filler SET STORAGE EXTERNAL`);
  await writer.query(
    `INSERT INTO ${TABLE} SELECT i, i % 100, CASE WHEN i % 5 = 0 THEN repeat(md5(i::text), 200) ELSE 'f' || i END FROM generate_series(1, ${ROWS}) i`,
  );
  for (let i = 1; i <= ROWS; i++) (i % 5 === 0 ? toasted : plain).add(i);
  const stored = await writer.query(`SELECT pg_relation_size(reltoastrelid) AS n FROM pg_class WHERE oid = $1::regclass`, [TABLE]);
  assert.ok(Number(stored.rows[0].n) > 1_000_000, 'the fillers are stored out of line');
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    tables: [{ name: TABLE, chunkRows: 200, chunkSeconds: 0 }],
    // A load takes a few seconds, so the sequences land between L0 and the chunks that read them.
    extra: 'throttle: { maxRowsPerSecond: 600 }\napply: { batchRows: 2 }',
  });
  console.log(`# toast-keychange seed ${seed} (rerun with SLUICE_TEST_SEED=${seed})`);
});

after(async () => {
  await killIfRunning(run);
  await writer?.end().catch(() => undefined);
  await stopAll?.();
  work?.remove();
});

async function streamsAndEquals(what: string): Promise<void> {
  const streaming = async () => (await stateOf()) === 'streaming';
  // A few more rounds land during the replay; then the replay is left to finish.
  await mutateUntil(streaming, 5);
  await waitUntil('the table to stream', streaming, 120_000, 250);
  await eventuallyEqual(source.url(), destination.url(), TABLE, { what, run, timeoutMs: 60_000 });
  const nulls = await destination.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE filler IS NULL`);
  assert.equal(nulls.rows[0].n, 0, `${what}: no filler lost`);
}

test('initial load with key changes of TOASTed rows and a SIGKILL mid-load', { timeout: 180_000 }, async () => {
  const before = await deadlocks();
  run = spawnSluice(['run'], { config: work.config });
  let killed = '';
  await Promise.all([
    (async () => (killed = await killDuringLoad()))(),
    mutateUntil(async () => killed !== ''),
  ]);
  console.log(`# initial load: ${killed}`);
  await streamsAndEquals('initial load');
  assert.equal(await deadlocks(), before, 'no deadlock between sluice sessions');
});

for (const mode of ['upsert', 'truncate', 'online'] as const) {
  test(`backfill --mode ${mode} with key changes of TOASTed rows and a SIGKILL mid-load`, { timeout: 180_000 }, async () => {
    const before = await deadlocks();
    const r = await sluice(['backfill', TABLE, '--mode', mode], { config: work.config });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    let killed = '';
    await Promise.all([
      (async () => (killed = await killDuringLoad()))(),
      mutateUntil(async () => killed !== ''),
    ]);
    console.log(`# ${mode}: ${killed}; ${rounds} rounds of sequences so far`);
    await streamsAndEquals(`backfill --mode ${mode}`);
    assert.equal(await deadlocks(), before, 'no deadlock between sluice sessions');
  });
}
