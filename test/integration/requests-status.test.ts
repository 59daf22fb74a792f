/**
 * Requests are answered and `sluice status` does not contradict itself (docs/operations.md,
 * "Requests and their answers", "Reading status"). One pipeline (concurrency 1) over three tables,
 * driven through the real CLI:
 *
 * 1. `sluice throttle` is answered by the running pipeline; `backfill` answers "started", then
 *    "queued #1", "queued #2 (1 ahead: …)" while one runs; a second backfill of a queued table is
 *    refused (exit 2, on stderr); status shows an averaged rows/s near the ceiling (not a chunk's
 *    copy speed), "~N%" and no ETA yet (under 30 s of evidence; the reason is shown), and one throttle
 *    line naming `sluice throttle` as the source.
 * 2. Cancelling the running upsert reload (started here if 1 did not) and the queued ones, then an
 *    online reload: COPIED is the rows of the copy the table holds (its last finished run), not the
 *    cancelled run's partial count.
 * 3. A table added to the config file after `sluice run` started: "not in the running config", exit 2.
 * 4. After a clean stop: status says "not running (last seen …)"; a backfill is answered at once,
 *    "recorded; no pipeline is running", exit 0.
 * 5. Restarted: the limits of `sluice throttle` are in effect again (log line, status names their
 *    source); `sluice throttle --reset` goes back to the config's.
 * 6. The start-up log has one compact config line (passwords replaced); progress lines are short.
 * 7. SIGKILLed: status says "not running" at once (the pipeline's lock is gone), not 15 s later.
 */
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { killIfRunning, makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;
const BIG = 60_000;
const LIMIT = 2000;

interface TableJson {
  name: string;
  state: string;
  rowsCopied: number;
  rowsPerSecond: number;
  percent: number | null;
  etaSeconds: number | null;
  progress: { unit: string; etaNote: string | null; activeSeconds: number } | null;
}

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  await destination.createDatabase('rq');
  for (const [t, n] of [['t1', BIG], ['t2', 3000], ['t3', 3000], ['t4', 100]] as const) {
    await source.query(`CREATE TABLE public.${t} (id int PRIMARY KEY, v text)`);
    await source.query(`INSERT INTO public.${t} SELECT g, md5(g::text) FROM generate_series(1, ${n}) g`);
    await source.query(`ANALYZE public.${t}`);
  }
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url('rq'),
    pipeline: 'rq',
    pipelineExtra: 'concurrency: 1',
    tables: [{ name: 'public.t1', chunkRows: 1000 }, { name: 'public.t2' }, { name: 'public.t3' }],
  });
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  work?.remove();
});

async function status(): Promise<{ pipeline: Record<string, any>; tables: TableJson[] }> {
  const r = await sluice(['status', '--json'], { config: work.config });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout);
}

async function table(name: string): Promise<TableJson> {
  return (await status()).tables.find((t) => t.name === name)!;
}

async function startRun(): Promise<Running> {
  const r = spawnSluice(['run'], { config: work.config });
  await r.waitForOutput(/pipeline running/, 60_000);
  return r;
}

async function allStreaming(): Promise<void> {
  await waitUntil(
    'every table to stream',
    async () => (await status()).tables.every((t) => t.state === 'streaming'),
    90_000,
    300,
  );
}

test('requests are answered: throttle, started, queued #n, refused (exit 2); status averages rows/s, shows % and why no ETA yet', async () => {
  run = await startRun();
  await allStreaming();
  assert.equal((await table('public.t1')).rowsCopied, BIG);

  const th = await sluice(['throttle', '--max-rows-per-second', String(LIMIT)], { config: work.config });
  assert.equal(th.code, 0, th.stdout + th.stderr);
  assert.match(th.stdout, /throttle now .*"maxRowsPerSecond":2000.*from `sluice throttle` at/);

  const b1 = await sluice(['backfill', 'public.t1', '--mode', 'upsert'], { config: work.config });
  assert.equal(b1.code, 0, b1.stdout + b1.stderr);
  assert.match(b1.stdout, /public\.t1: started \(mode upsert\)/);
  const b2 = await sluice(['backfill', 'public.t2', '--mode', 'upsert'], { config: work.config });
  assert.equal(b2.code, 0, b2.stdout + b2.stderr);
  assert.match(b2.stdout, /public\.t2: queued #1 \(mode upsert; 0 ahead; backfilling now: public\.t1\)/);
  const b3 = await sluice(['backfill', 'public.t3', '--mode', 'upsert'], { config: work.config });
  assert.equal(b3.code, 0, b3.stdout + b3.stderr);
  assert.match(b3.stdout, /public\.t3: queued #2 \(mode upsert; 1 ahead: public\.t2; backfilling now: public\.t1\)/);

  const dup = await sluice(['backfill', 'public.t2', '--mode', 'upsert'], { config: work.config });
  assert.equal(dup.code, 2, `a refused request exits 2: ${dup.stdout}${dup.stderr}`);
  assert.match(dup.stderr, /public\.t2: refused: public\.t2 is already queued/);

  // The rate over time is bounded by the ceiling; one chunk's copy speed is far above it.
  let t1: TableJson | undefined;
  await waitUntil(
    'an averaged rate for t1',
    async () => {
      t1 = await table('public.t1');
      return t1.state === 'backfilling' && t1.rowsPerSecond > 0 && t1.rowsCopied > 2 * LIMIT;
    },
    30_000,
    300,
  );
  assert.ok(t1!.rowsPerSecond <= 1.5 * LIMIT, `rows/s ${t1!.rowsPerSecond} is an average near the ceiling ${LIMIT}`);
  assert.ok(t1!.percent !== null && t1!.percent >= 0 && t1!.percent < 100, `percent ${t1!.percent}`);
  // An ETA only after 30 s of active copying (pipeline/eta.ts): until then, the reason why not.
  assert.equal(t1!.etaSeconds, null, `eta ${t1!.etaSeconds} after ${t1!.progress?.activeSeconds} s`);
  assert.equal(t1!.progress?.unit, 'rows');
  assert.match(t1!.progress?.etaNote ?? '', /measuring the rate/);
  const text = await sluice(['status'], { config: work.config });
  assert.equal(text.code, 0, text.stderr);
  console.log(text.stdout.replace(/^/gm, '# '));
  assert.match(text.stdout, /^public\.t1\s+backfilling \(upsert\)\s+[\d,]+\s+[\d,]+\s+~\d+%\s+-\s/m);
  assert.match(text.stdout, /^public\.t1: copied [\d.k]+ of [\d.k]+ rows; \d+ s copying.*; no ETA: measuring the rate/m);
  const throttleLines = text.stdout.split('\n').filter((l) => l.startsWith('throttle:'));
  assert.equal(throttleLines.length, 1, text.stdout);
  assert.match(throttleLines[0], /maxRowsPerSecond=2000; from `sluice throttle` at/);
});

test('cancelled reloads: COPIED counts the copy the table holds, not the cancelled run', async () => {
  // The reload of t1 from the test before (or a new one): cancelled while it copies.
  if ((await table('public.t1')).state !== 'backfilling') {
    assert.equal((await sluice(['throttle', '--max-rows-per-second', String(LIMIT)], { config: work.config })).code, 0);
    assert.equal((await sluice(['backfill', 'public.t1', '--mode', 'upsert'], { config: work.config })).code, 0);
  }
  await waitUntil(
    't1 to reload',
    async () => {
      const t = await table('public.t1');
      return t.state === 'backfilling' && t.rowsCopied > 0;
    },
    30_000,
    200,
  );
  for (const t of ['public.t3', 'public.t2', 'public.t1']) {
    const c = await sluice(['cancel', t], { config: work.config });
    assert.equal(c.code, 0, c.stdout + c.stderr);
    if (t === 'public.t1') assert.match(c.stdout, /public\.t1: cancelled; the table keeps streaming/);
  }
  const s = await status();
  for (const [name, rows] of [['public.t1', BIG], ['public.t2', 3000], ['public.t3', 3000]] as const) {
    const t = s.tables.find((x) => x.name === name)!;
    assert.equal(t.state, 'streaming');
    assert.equal(t.rowsCopied, rows, `${name}: COPIED after the cancel`);
  }
  // Still so after the next status writes.
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal((await table('public.t1')).rowsCopied, BIG);

  // An online reload cancelled: the staging table goes, the live table and its COPIED stay.
  const b = await sluice(['backfill', 'public.t1', '--mode', 'online'], { config: work.config });
  assert.equal(b.code, 0, b.stdout + b.stderr);
  assert.match(b.stdout, /public\.t1: started \(mode online\)/);
  await waitUntil(
    't1 to load its staging table',
    async () => {
      const t = await table('public.t1');
      return t.state === 'backfilling' && t.rowsCopied > 0 && t.rowsCopied < BIG;
    },
    30_000,
    200,
  );
  const c = await sluice(['cancel', 'public.t1'], { config: work.config });
  assert.equal(c.code, 0, c.stdout + c.stderr);
  assert.match(c.stdout, /public\.t1: cancelled; staging table \S+ dropped, the live table is untouched and streaming/);
  assert.equal((await table('public.t1')).rowsCopied, BIG, 'COPIED after the online cancel');
});

test('a table added to the config file after start: "not in the running config", exit 2', async () => {
  appendFileSync(work.config, '  - { name: public.t4 }\n');
  const r = await sluice(['backfill', 'public.t4'], { config: work.config });
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /public\.t4: not in the running config: .*restart `sluice run`/);
});

test('no pipeline running: status says so; a request is answered at once, "recorded"', async () => {
  run!.kill('SIGTERM');
  const exit = await run!.exited(60_000);
  assert.equal(exit.code, 0, exit.stdout + exit.stderr);
  const text = await sluice(['status'], { config: work.config });
  assert.match(text.stdout, /pipeline rq: not running \(last seen \d{4}-/);
  const started = Date.now();
  const r = await sluice(['backfill', 'public.t2', '--mode', 'upsert'], { config: work.config });
  const took = Date.now() - started;
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /recorded; no pipeline is running, it is acted on at the next start/);
  assert.ok(took < 8000, `answered at once (${took} ms), not after a timeout`);
  // Status of a stopped pipeline names the limits the next start applies again.
  const s = await status();
  assert.equal(s.pipeline.throttle?.maxRowsPerSecond, LIMIT);
  assert.equal(s.pipeline.throttle?.state, 'not running');
});

test('the limits of `sluice throttle` survive a restart; --reset goes back to the config', async () => {
  run = await startRun();
  await run.waitForOutput(/throttle from `sluice throttle` at \S+ kept: \{"maxRowsPerSecond":2000\}/, 10_000);
  await waitUntil('status to show the running throttle', async () => (await status()).pipeline.throttle?.state !== 'not running', 10_000, 200);
  const s = await status();
  assert.equal(s.pipeline.running, true);
  assert.equal(s.pipeline.throttle?.maxRowsPerSecond, LIMIT);
  assert.match(String(s.pipeline.throttle?.source), /^`sluice throttle` at /);
  const reset = await sluice(['throttle', '--reset'], { config: work.config });
  assert.equal(reset.code, 0, reset.stdout + reset.stderr);
  assert.match(reset.stdout, /"maxRowsPerSecond":0.*from config/);
  await waitUntil('status to show the config limits', async () => (await status()).pipeline.throttle?.source === 'config', 10_000, 200);
  assert.equal((await status()).pipeline.throttle?.maxRowsPerSecond, 0);
});

test('start-up logs one compact config line (passwords replaced); progress lines are short', async () => {
  await allStreaming();
  await run!.waitForOutput(/progress: /, 20_000);
  const lines = run!.output().split('\n');
  const start = lines.filter((l) => /\bstarting\b/.test(l));
  assert.equal(start.length, 1, start.join('\n'));
  console.log(lines.filter((l) => /\b(starting|progress):/.test(l)).map((l) => `# ${l}`).join('\n'));
  assert.match(start[0], /starting: pipeline=rq source=postgres:\/\/[^:]+:\*\*\*@\S+ .*tables=public\.t1,public\.t2,public\.t3,public\.t4/);
  assert.ok(start[0].length < 400, `start line of ${start[0].length} characters`);
  for (const l of lines.filter((x) => / progress: /.test(x))) {
    assert.match(l, /progress: \d+\/4 tables streaming(; [^;]+)*; [\d.]+k? changes\/s$/);
    assert.ok(l.length < 200, l);
  }
  assert.doesNotMatch(run!.output(), /=undefined/);
});

test('a SIGKILLed pipeline shows as not running at once', async () => {
  await allStreaming();
  assert.equal((await status()).pipeline.running, true);
  run!.kill('SIGKILL');
  await run!.exited(10_000);
  const s = await status();
  assert.equal(s.pipeline.running, false, 'the pipeline lock went with the process');
  const text = await sluice(['status'], { config: work.config });
  assert.match(text.stdout, /pipeline rq: not running \(last seen /);
});
