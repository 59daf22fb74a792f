/**
 * Notifications from a real pipeline (docs/operations.md, "Events, webhooks and hooks"): a local HTTP
 * receiver in the test, real clusters, the real CLI.
 *
 * 1. The first load of a table: backfill.started and backfill.completed arrive at a
 *    webhook for `*`, each signed (X-Sluice-Signature verifies with the secret, the timestamp is
 *    recent); a receiver that answers 500 twice gets the delivery a third time, and the delivery log
 *    records the three attempts; the executable hook `sluice-on-backfill.completed` receives the event
 *    on stdin and SLUICE_* variables.
 * 2. A throttle query (sluice throttle --query) engages the throttle and --reset releases it: one
 *    throttle.engaged with the reason and one throttle.released.
 * 3. A ctid reload: status --json shows its progress in pages (no ETA yet, and why); a cancel sends
 *    backfill.cancelled.
 * 4. An online reload: backfill.requested, swap.completed. A receiver that is down when it completes: the delivery stays pending through a
 *    stop of sluice, and the next start delivers it, with the same delivery id.
 * 5. `sluice verify` sends verify.completed with its verdict.
 * 6. While the source writes, the slot retains more WAL than notify.slotRetainedBytes (1 byte here):
 *    slot.retained_exceeded, read every 10 s.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readDeliveries } from '../../src/notify/delivery-log.js';
import { verifySignature } from '../../src/notify/signature.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { killIfRunning, makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

const SECRET = 'notify-test-secret-0123456789';
const TABLE = 'public.items';

interface Received {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: { id: string; event: string; table: string | null; detail: Record<string, unknown> };
  status: number;
}

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;
let server: Server;
const received: Received[] = [];
/** Answers per path: a queue of status codes to give first (then 200), or 'down' for 503 until changed. */
const answers = new Map<string, number[]>();
let down = false;

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const path = req.url ?? '/';
      const queue = answers.get(path) ?? [];
      const status = path === '/down' && down ? 503 : (queue.shift() ?? 200);
      received.push({ path, headers: req.headers, body, json: JSON.parse(body), status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  ({ source, destination, stopAll } = await startClusters());
  await destination.createDatabase('nt');
  await source.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, v text)`);
  await source.query(`INSERT INTO ${TABLE} SELECT g, md5(g::text) FROM generate_series(1, 3000) g`);
  await source.query(`ANALYZE ${TABLE}`);
  answers.set('/flaky', [500, 500]);
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url('nt'),
    pipeline: 'nt',
    tables: [{ name: TABLE }],
    extra: `notify:
  hooksDir: "HOOKS"
  webhooks:
    - { url: "${base}/all", events: ["*"], secret: "${SECRET}" }
    - { url: "${base}/flaky", events: ["backfill.completed"], secretEnv: NOTIFY_TEST_SECRET }
    - { url: "${base}/down", events: ["backfill.*"], secret: "${SECRET}" }
  slotRetainedBytes: 1`,
  });
  writeFileSync(work.config, readFileSync(work.config, 'utf8').replace('"HOOKS"', JSON.stringify(work.dir)));
  const hook = join(work.dir, 'sluice-on-backfill.completed');
  writeFileSync(hook, `#!/bin/sh\ncat > "${join(work.dir, 'hook-stdin.json')}"\necho "$SLUICE_EVENT $SLUICE_TABLE $SLUICE_MODE" > "${join(work.dir, 'hook-env.txt')}"\n`);
  chmodSync(hook, 0o755);
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  await new Promise<void>((r) => server.close(() => r()));
  work?.remove();
});

const env = { NOTIFY_TEST_SECRET: SECRET };
const at = (path: string, event: string, from = 0) => received.slice(from).filter((r) => r.path === path && r.json.event === event);

async function startRun(): Promise<Running> {
  const r = spawnSluice(['run'], { config: work.config, env });
  await r.waitForOutput(/pipeline running/, 60_000);
  return r;
}

function assertSigned(r: Received): void {
  const header = String(r.headers['x-sluice-signature']);
  assert.match(header, /^t=\d+,v1=[0-9a-f]{64}$/);
  const t = Number(/t=(\d+)/.exec(header)![1]);
  assert.ok(Math.abs(Date.now() / 1000 - t) < 120, 'a recent timestamp');
  assert.equal(verifySignature(SECRET, r.body, header, Date.now() / 1000), true, `signature of ${r.body}`);
  assert.equal(verifySignature('not-the-secret-000000', r.body, header, Date.now() / 1000), false);
  assert.equal(r.headers['x-sluice-event'], r.json.event);
  assert.equal(r.headers['x-sluice-delivery'], r.json.id);
}

test('the first load: signed lifecycle events, retries of a failing receiver recorded, the executable hook', async () => {
  run = await startRun();
  await waitUntil('backfill.completed at /all', async () => at('/all', 'backfill.completed').length > 0, 60_000);
  for (const name of ['backfill.started', 'backfill.completed']) {
    const got = at('/all', name);
    assert.equal(got.length, 1, `${name}: ${JSON.stringify(received.filter((r) => r.path === '/all').map((r) => r.json.event))}`);
    assert.equal(got[0].json.table, TABLE);
    assertSigned(got[0]);
  }
  const done = at('/all', 'backfill.completed')[0].json;
  assert.equal(done.detail.mode, 'online');
  assert.equal(done.detail.rowsCopied, 3000);
  assert.equal(at('/flaky', 'backfill.started').length, 0, 'only the events its patterns match');

  // 500, 500, then 200: the same delivery three times, 1 s and 2 s apart.
  await waitUntil('the flaky receiver got its delivery', async () => at('/flaky', 'backfill.completed').some((r) => r.status === 200), 30_000);
  const flaky = at('/flaky', 'backfill.completed');
  assert.deepEqual(flaky.map((r) => r.status), [500, 500, 200]);
  assert.equal(new Set(flaky.map((r) => r.json.id)).size, 1, 'one delivery id across retries');
  flaky.forEach(assertSigned);
  const logged = readDeliveries(join(work.dir, 'log', 'notify.db')).find((d) => d.id === flaky[0].json.id)!;
  assert.equal(logged.status, 'delivered');
  assert.deepEqual(logged.attemptLog.map((a) => a.statusCode), [500, 500, 200]);
  assert.deepEqual(logged.attemptLog.map((a) => a.error), ['HTTP 500', 'HTTP 500', null]);

  await waitUntil('the hook ran', async () => existsSync(join(work.dir, 'hook-env.txt')), 10_000);
  assert.equal(readFileSync(join(work.dir, 'hook-env.txt'), 'utf8').trim(), `backfill.completed ${TABLE} online`);
  const stdin = JSON.parse(readFileSync(join(work.dir, 'hook-stdin.json'), 'utf8'));
  assert.equal(stdin.name, 'backfill.completed');
  assert.equal(stdin.detail.rowsCopied, 3000);
});

test('the throttle: engaged with its reason, released once', async () => {
  const q = await sluice(['throttle', '--query', 'SELECT 1'], { config: work.config });
  assert.equal(q.code, 0, q.stdout + q.stderr);
  await waitUntil('throttle.engaged', async () => at('/all', 'throttle.engaged').length > 0, 30_000);
  assert.match(String(at('/all', 'throttle.engaged')[0].json.detail.reason), /paused: throttle query returned 1/);
  const r = await sluice(['throttle', '--reset'], { config: work.config });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  await waitUntil('throttle.released', async () => at('/all', 'throttle.released').length > 0, 30_000);
  assert.equal(at('/all', 'throttle.engaged').length, 1, 'on a change of state only');
  assertSigned(at('/all', 'throttle.released')[0]);
});

test('a ctid reload shows progress in pages in status --json; a cancel sends backfill.cancelled', async () => {
  const from = received.length;
  const th = await sluice(['throttle', '--max-rows-per-second', '300'], { config: work.config });
  assert.equal(th.code, 0, th.stdout + th.stderr);
  const b = await sluice(['backfill', TABLE, '--mode', 'upsert', '--strategy', 'ctid', '--json'], { config: work.config });
  assert.equal(b.code, 0, b.stdout + b.stderr);
  assert.deepEqual(JSON.parse(b.stdout), { answered: true, running: true, answers: [{ table: TABLE, outcome: 'started (mode upsert)', refused: false }] });
  let progress: Record<string, unknown> | null = null;
  await waitUntil(
    'progress in pages',
    async () => {
      const r = await sluice(['status', '--json'], { config: work.config });
      const t = JSON.parse(r.stdout).tables.find((x: { name: string }) => x.name === TABLE);
      progress = t.progress;
      return t.state === 'backfilling' && progress !== null && Number(progress.unitsDone) > 0;
    },
    30_000,
    300,
  );
  const p = progress as unknown as { unit: string; unitsDone: number; unitsTotal: number; ratio: number; etaSeconds: number | null; etaNote: string };
  assert.equal(p.unit, 'pages');
  assert.ok(p.unitsTotal > 0 && p.unitsDone < p.unitsTotal && p.ratio < 1, JSON.stringify(p));
  assert.equal(p.etaSeconds, null);
  assert.match(p.etaNote, /measuring the rate/);
  const c = await sluice(['cancel', TABLE, '--json'], { config: work.config });
  assert.equal(c.code, 0, c.stdout + c.stderr);
  assert.match(JSON.parse(c.stdout).answers[0].outcome, /^cancelled/);
  await waitUntil('backfill.cancelled', async () => at('/all', 'backfill.cancelled', from).length > 0, 30_000);
  const cancelled = at('/all', 'backfill.cancelled', from)[0].json;
  assert.equal(cancelled.detail.mode, 'upsert');
  assert.match(String(cancelled.detail.outcome), /^cancelled/);
  assert.equal((await sluice(['throttle', '--reset'], { config: work.config })).code, 0);
});

test('an online reload swaps; a delivery pending when sluice stops is delivered after the next start, with the same id', async () => {
  down = true;
  const from = received.length;
  const b = await sluice(['backfill', TABLE, '--mode', 'online'], { config: work.config });
  assert.equal(b.code, 0, b.stdout + b.stderr);
  await waitUntil('the down receiver refused backfill.completed', async () => at('/down', 'backfill.completed', from).length > 0, 60_000);
  const requested = at('/all', 'backfill.requested', from)[0].json;
  assert.equal(requested.detail.mode, 'online');
  assert.equal(requested.detail.accepted, true);
  assert.match(String(requested.detail.outcome), /started/);
  const swap = at('/all', 'swap.completed', from);
  assert.equal(swap.length, 1);
  assert.equal(at('/all', 'backfill.completed', from).length, 1, 'one completion, at the swap');
  assert.equal(at('/all', 'backfill.completed', from)[0].json.detail.mode, 'online');
  assert.match(String(swap[0].json.detail.archive), /^sluice_archive\./);
  assertSigned(swap[0]);
  const id = at('/down', 'backfill.completed', from)[0].json.id;
  run!.kill('SIGTERM');
  assert.equal((await run!.exited(30_000)).code, 0);
  const pending = readDeliveries(join(work.dir, 'log', 'notify.db')).find((d) => d.id === id)!;
  assert.equal(pending.status, 'pending');
  assert.equal(pending.lastStatusCode, 503);
  down = false;
  run = await startRun();
  await waitUntil('delivered after the restart', async () => at('/down', 'backfill.completed', from).some((r) => r.status === 200), 30_000);
  const ok = at('/down', 'backfill.completed', from).find((r) => r.status === 200)!;
  assert.equal(ok.json.id, id);
  assertSigned(ok);
  run.kill('SIGTERM');
  assert.equal((await run.exited(30_000)).code, 0);
});

test('sluice verify sends verify.completed with its verdict', async () => {
  const v = await sluice(['verify', TABLE], { config: work.config, env });
  assert.equal(v.code, 0, v.stdout + v.stderr);
  const got = at('/all', 'verify.completed');
  assert.equal(got.length, 1);
  assert.equal(got[0].json.table, TABLE);
  assert.equal(got[0].json.detail.equal, true);
  assert.equal(got[0].json.detail.sourceRows, 3000);
  assertSigned(got[0]);
});

test('slot.retained_exceeded: the slot retains more WAL than notify.slotRetainedBytes while the source writes', async () => {
  const from = received.length;
  run = await startRun();
  let i = 100_000;
  await waitUntil(
    'slot.retained_exceeded',
    async () => {
      await source.query(`INSERT INTO ${TABLE} SELECT g, 'w' FROM generate_series(${i}, ${i + 99}) g`);
      i += 100;
      return at('/all', 'slot.retained_exceeded', from).length > 0;
    },
    30_000,
    100,
  );
  const e = at('/all', 'slot.retained_exceeded', from)[0].json;
  assert.equal(e.detail.slot, 'sluice_nt');
  assert.equal(e.detail.thresholdBytes, 1);
  assert.ok(Number(e.detail.retainedBytes) > 1);
  assert.equal(e.table, null);
  run.kill('SIGTERM');
  assert.equal((await run.exited(30_000)).code, 0);
});
