/**
 * The operator's HTTP surface against a real pipeline on real clusters (docs/api.md), through
 * `sluice run --http 127.0.0.1:0`:
 *
 * 1. Security: a non-loopback address without a token exits 2 naming api.token; /healthz and /readyz
 *    (ready or not, no detail) need no token, everything else does (401); /login sets an HttpOnly SameSite=Strict cookie and 303s to /;
 *    the generated token's file is 0600; a foreign Host or Origin gets 403 and records nothing; an
 *    action without a JSON body gets 415; the read-only token reads but may not act; CSP is set.
 * 2. GET /api/v1/status has the shape of `sluice status --json` (one function computes both).
 * 3. Actions, each recorded in _sluice.requests with actor and reason: throttle (live retune, seen in
 *    status and /metrics), backfill refusals (422: no typed name for truncate, bad strategy, a WHERE
 *    the source rejects, an unknown table), truncate with the typed name, online then 409 for the same
 *    table, cancel, pause/resume backfills (rows copied stay flat), pause/resume apply (rows written
 *    at the source wait, then arrive), verify (its verdict), rollback (422: nothing archived to roll back to).
 * 4. /metrics passes `promtool check metrics`; the SSE stream's first message is the status.
 * 5. GET /api/v1/deliveries lists the webhook deliveries the local receiver got (and the one it keeps
 *    refusing, pending with its next attempt), showing only the receiver's origin; GET /api/v1/inplace
 *    is empty until an in-place job runs against the source, then lists that run (both readable with
 *    the read-only token).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { startClusters, type Cluster } from '../support/clusters.js';
import { eventuallyEqual, killIfRunning, makeWorkdir, sluice, waitUntil, type Workdir } from '../support/sluice.js';
import { startHttpRun, type HttpRun } from '../support/http.js';

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let h: HttpRun;
const READ_TOKEN = 'read-only-token-for-the-test';
const DB = 'httpapi';
/** What the local webhook receiver got: its path and the delivery id header. */
const received: { path: string; delivery: string; event: string }[] = [];
let receiver: Server;
let hookBase: string;

before(async () => {
  // A webhook receiver: /hook answers 200, /down always 503 (its delivery stays pending, retried).
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      received.push({ path, delivery: String(req.headers['x-sluice-delivery']), event: JSON.parse(body).event });
      res.writeHead(path === '/down' ? 503 : 200).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  hookBase = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  ({ source, destination, stopAll } = await startClusters());
  await destination.createDatabase(DB);
  for (const [t, n] of [['big', 40_000], ['small', 2000], ['tiny', 300]] as const) {
    await source.query(`CREATE TABLE public.${t} (id int PRIMARY KEY, v text)`);
    await source.query(`INSERT INTO public.${t} SELECT g, md5(g::text) FROM generate_series(1, ${n}) g`);
    await source.query(`ANALYZE public.${t}`);
  }
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(DB),
    pipeline: 'httpapi',
    pipelineExtra: 'concurrency: 1',
    tables: [{ name: 'public.big', chunkRows: 500 }, { name: 'public.small' }, { name: 'public.tiny' }],
    extra: `notify:
  webhooks:
    - { url: "${hookBase}/hook?key=secret-in-the-query", events: ["backfill.completed"], secret: "webhook-test-secret-0123456789" }
    - { url: "${hookBase}/down", events: ["backfill.completed"], secret: "webhook-test-secret-0123456789" }`,
  });
  h = await startHttpRun(work.config, { SLUICE_API_READ_ONLY_TOKEN: READ_TOKEN });
});

after(async () => {
  await killIfRunning(h?.run);
  await stopAll?.();
  await new Promise<void>((r) => receiver?.close(() => r()) ?? r());
  work?.remove();
});

const dst = (sql: string, params?: unknown[]) => destination.query(sql, params, DB);
const tableState = async (name: string) => (await dst(`SELECT state FROM _sluice.tables WHERE pipeline = 'httpapi' AND name = $1`, [name])).rows[0]?.state;
const requestCount = async () => Number((await dst(`SELECT count(*) AS n FROM _sluice.requests`)).rows[0].n);

test('security: loopback by default, token everywhere but /healthz, cookie login, Host and Origin checks, read-only token', async () => {
  const open = await sluice(['run', '--http', '0.0.0.0:0'], { config: work.config, timeoutMs: 30_000 });
  assert.equal(open.code, 2, open.stdout + open.stderr);
  assert.match(open.stderr, /api\.token/);

  assert.equal((await fetch(`${h.base}/healthz`)).status, 200);
  const probe = await fetch(`${h.base}/readyz`);
  assert.deepEqual([probe.status === 200 || probe.status === 503, Object.keys((await probe.json()) as object)], [true, ['ready']], 'a probe learns only ready or not');
  for (const path of ['/', '/api/v1/status', '/metrics', '/api/v1/events']) assert.equal((await fetch(h.base + path)).status, 401, path);
  assert.equal((await fetch(`${h.base}/api/v1/status`, { headers: { Authorization: 'Bearer not-the-token' } })).status, 401);

  const tokenFile = join(work.dir, 'log', 'api-token');
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600);

  assert.equal((await fetch(`${h.base}/login?token=wrong`, { redirect: 'manual' })).status, 401);
  const login = await fetch(h.loginUrl, { redirect: 'manual' });
  assert.equal(login.status, 303);
  assert.equal(login.headers.get('location'), '/');
  const cookie = login.headers.get('set-cookie')!;
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  const page = await fetch(`${h.base}/`, { headers: { Cookie: cookie.split(';')[0] } });
  assert.equal(page.status, 200);
  assert.match(await page.text(), /Backfill tables/);
  assert.match(page.headers.get('content-security-policy')!, /default-src 'self'/);

  const before = await requestCount();
  // fetch() will not send a Host of its own choosing: node:http does (as a DNS-rebinding page would).
  const rebind = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const u = new URL(`${h.base}/api/v1/status`);
    request({ host: u.hostname, port: u.port, path: u.pathname, headers: { Host: 'evil.example:7433', Authorization: `Bearer ${h.token}` } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    }).on('error', reject).end();
  });
  assert.equal(rebind.status, 403);
  assert.equal(JSON.parse(rebind.body).code, 'HOST_NOT_ALLOWED');
  const foreign = await h.call('POST', '/api/v1/pause', { scope: 'backfills' }, { Origin: 'http://evil.example' });
  assert.equal(foreign.status, 403);
  assert.equal(foreign.json.code, 'FOREIGN_ORIGIN');
  assert.ok(foreign.json.fix);
  const form = await h.call('POST', '/api/v1/pause', 'scope=backfills', { 'Content-Type': 'application/x-www-form-urlencoded' });
  assert.equal(form.status, 415);
  const readOnly = await fetch(`${h.base}/api/v1/pause`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${READ_TOKEN}`, 'Content-Type': 'application/json' },
    body: '{"scope":"backfills"}',
  });
  assert.equal(readOnly.status, 403);
  assert.equal((await fetch(`${h.base}/api/v1/status`, { headers: { Authorization: `Bearer ${READ_TOKEN}` } })).status, 200);
  assert.equal(await requestCount(), before, 'refused requests record nothing');
});

test('GET /api/v1/status is what `sluice status --json` prints', async () => {
  await waitUntil('every table streams', async () => (await tableState('public.tiny')) === 'streaming' && (await tableState('public.big')) === 'streaming', 60_000);
  const api = await h.call('GET', '/api/v1/status');
  assert.equal(api.status, 200);
  const cli = await sluice(['status', '--json'], { config: work.config });
  const fromCli = JSON.parse(cli.stdout);
  // The same object (its figures move between the two reads; the optional notes come and go with load).
  const optional = new Set(['sourceError', 'reconnecting', 'heartbeatAgeSeconds', 'replicaRole', 'stateNote', 'lowSpace']);
  const keys = (o: object) => Object.keys(o).filter((k) => !optional.has(k)).sort();
  assert.deepEqual(keys(api.json), keys(fromCli));
  assert.deepEqual(keys(api.json.pipeline), keys(fromCli.pipeline));
  assert.deepEqual(keys(api.json.archives), keys(fromCli.archives));
  assert.deepEqual(api.json.tables.map((t: any) => [t.name, keys(t)]), fromCli.tables.map((t: any) => [t.name, keys(t)]));
  assert.equal(api.json.pipeline.running, true);
  assert.equal((await h.call('GET', '/readyz')).status, 200);
});

test('actions go through _sluice.requests with actor and reason; refusals are 409/422 with code, message, fix', async () => {
  // Throttle: a live retune, answered by the pipeline.
  const th = await h.call('PATCH', '/api/v1/throttle', { maxRowsPerSecond: 4000, reason: 'slow down for the test' });
  assert.equal(th.status, 202, th.text);
  assert.match(th.json.answers[0].outcome, /throttle now/);
  await waitUntil('the throttle shows the limit', async () => (await h.call('GET', '/api/v1/throttle')).json?.maxRowsPerSecond === 4000, 10_000);
  const req = await dst(`SELECT requested_by, params->>'reason' AS reason, outcome FROM _sluice.requests WHERE id = $1`, [th.json.requestIds[0]]);
  assert.match(req.rows[0].requested_by, /^api@/);
  assert.equal(req.rows[0].reason, 'slow down for the test');

  // Refusals before anything is recorded.
  const n = await requestCount();
  const noName = await h.call('POST', '/api/v1/backfills', { tables: ['public.small'], mode: 'truncate' });
  assert.equal(noName.status, 422);
  assert.equal(noName.json.code, 'CONFIRMATION_REQUIRED');
  assert.match(noName.json.fix, /"confirm": "public.small"/);
  const badStrategy = await h.call('POST', '/api/v1/backfills', { tables: ['public.small'], strategy: 'sideways' });
  assert.equal(badStrategy.status, 422);
  assert.match(badStrategy.json.message, /strategy sideways/);
  const badWhere = await h.call('POST', '/api/v1/backfills', { tables: ['public.small'], where: 'no_such_column > 1' });
  assert.equal(badWhere.status, 422, badWhere.text);
  assert.ok(badWhere.json.message && badWhere.json.fix);
  const unknown = await h.call('POST', '/api/v1/backfills', { tables: ['public.nope'] });
  assert.equal(unknown.status, 422);
  assert.match(unknown.json.message, /not in the config/);
  // A drop that would take a view with it: the dialog's list names it, and the destination refuses.
  await dst(`CREATE VIEW public.tiny_names AS SELECT v FROM public.tiny`);
  const deps = await h.call('GET', '/api/v1/tables/public.tiny/dependents');
  assert.deepEqual(deps.json.dependents, ['view tiny_names']);
  const drop = await h.call('POST', '/api/v1/backfills', { tables: ['public.tiny'], mode: 'drop', confirm: 'public.tiny' });
  assert.equal(drop.status, 422, drop.text);
  assert.match(drop.json.message, /would also drop view tiny_names/);
  assert.equal(await requestCount(), n, 'nothing recorded for refused input');

  // Truncate with the typed name: the table is reloaded.
  await dst(`INSERT INTO public.small VALUES (-1, 'only at the destination')`);
  const tr = await h.call('POST', '/api/v1/backfills', { tables: ['public.small'], mode: 'truncate', confirm: 'public.small', reason: 'reload' });
  assert.equal(tr.status, 202, tr.text);
  await waitUntil('the extra row is gone', async () => (await dst(`SELECT count(*)::int AS n FROM public.small WHERE id = -1`)).rows[0].n === 0, 20_000);
  await eventuallyEqual(source.url(), destination.url(DB), 'public.small', { run: h.run });

  // Online reload of the big table under the throttle; the same again is a conflict (409).
  const on = await h.call('POST', '/api/v1/backfills', { tables: ['public.big'], mode: 'online' });
  assert.equal(on.status, 202, on.text);
  const again = await h.call('POST', '/api/v1/backfills', { tables: ['public.big'] });
  assert.equal(again.status, 409, again.text);
  assert.equal(again.json.code, 'CONFLICT');
  // Behind it (concurrency 1) a table waits with its place in the queue; cancelled there, it streams on.
  const q = await h.call('POST', '/api/v1/backfills', { tables: ['public.tiny'], mode: 'upsert' });
  assert.match(q.json.answers[0].outcome, /^queued #1/);
  const tinyDetail = async () => (await h.call('GET', '/api/v1/status')).json.tables.find((t: any) => t.name === 'public.tiny').detail;
  await waitUntil('status shows its place in the queue', async () => (await tinyDetail()) === 'queued #1', 5000);
  assert.equal((await h.call('POST', '/api/v1/backfills/cancel', { tables: ['public.tiny'] })).status, 202);
  await waitUntil('tiny streams again', async () => (await tableState('public.tiny')) === 'streaming', 5000);

  // Pause backfills: rows copied stay flat; resume: they move again.
  await waitUntil('big backfills', async () => (await tableState('public.big')) === 'backfilling', 10_000);
  const p = await h.call('POST', '/api/v1/pause', { scope: 'backfills', reason: 'peak hour' });
  assert.equal(p.status, 202, p.text);
  const copied = async () => (await h.call('GET', '/api/v1/status')).json.tables.find((t: any) => t.name === 'public.big').rowsCopied as number;
  await new Promise((r) => setTimeout(r, 1500));
  const held = await copied();
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(await copied(), held, 'no rows copied while paused');
  assert.match((await h.call('GET', '/api/v1/throttle')).json.state, /by an operator/);
  assert.equal((await h.call('POST', '/api/v1/resume', { scope: 'backfills' })).status, 202);
  await waitUntil('copying goes on', async () => (await copied()) > held, 10_000);

  // Cancel it: an online reload leaves the live table as it was, streaming on.
  const cx = await h.call('POST', '/api/v1/backfills/cancel', { tables: ['public.big'], reason: 'changed my mind' });
  assert.equal(cx.status, 202, cx.text);
  assert.match(cx.json.answers[0].outcome, /cancel/);
  await waitUntil('big is no longer backfilling', async () => !['backfilling', 'queued'].includes(await tableState('public.big')), 10_000);
  assert.equal(await tableState('public.big'), 'streaming');
  const run = await dst(`SELECT status FROM _sluice.runs WHERE pipeline = 'httpapi' AND table_name = 'public.big' ORDER BY id DESC LIMIT 1`);
  assert.equal(run.rows[0].status, 'cancelled');
  await eventuallyEqual(source.url(), destination.url(DB), 'public.big', { run: h.run });

  // Pause apply: changes wait in the change log, then arrive.
  assert.equal((await h.call('POST', '/api/v1/pause', { scope: 'apply' })).status, 202);
  await source.query(`INSERT INTO public.tiny VALUES (100001, 'while apply is paused')`);
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal((await dst(`SELECT count(*)::int AS n FROM public.tiny WHERE id = 100001`)).rows[0].n, 0, 'not applied while paused');
  assert.ok((await h.call('GET', '/api/v1/throttle')).json.applyPaused);
  assert.equal((await h.call('POST', '/api/v1/resume', { scope: 'apply' })).status, 202);
  await eventuallyEqual(source.url(), destination.url(DB), 'public.tiny', { run: h.run });

  // Verify: a job with its verdict.
  const v = await h.call('POST', '/api/v1/verify', { tables: ['public.tiny', 'public.small'] });
  assert.equal(v.status, 202, v.text);
  let job: any;
  await waitUntil('verify is done', async () => (job = (await h.call('GET', `/api/v1/verify/${v.json.verifyId}`)).json).state !== 'running', 30_000);
  assert.equal(job.state, 'done', JSON.stringify(job));
  assert.equal(job.equal, true);

  // The CLI's pause and resume are the same requests.
  const cliPause = await sluice(['pause', '--reason', 'from the shell'], { config: work.config });
  assert.equal(cliPause.code, 0, cliPause.stdout + cliPause.stderr);
  assert.match(cliPause.stdout, /backfills paused until resumed/);
  const throttleState = async () => String((await h.call('GET', '/api/v1/throttle')).json.state);
  await waitUntil('the page sees the pause', async () => /by an operator \(from the shell\)/.test(await throttleState()), 5000);
  assert.equal((await sluice(['resume'], { config: work.config })).code, 0);
  await waitUntil('the page sees the resume', async () => (await throttleState()) === 'open', 5000);

  const rb = await h.call('POST', '/api/v1/rollback', { tables: ['public.big'] });
  // Its online reload was cancelled: nothing was archived, so there is nothing to roll back to.
  assert.equal(rb.status, 422);
  assert.equal(rb.json.code, 'BAD_USAGE');
  assert.match(String(rb.json.message), /public\.big has no archive to roll back to/);

  // Every accepted action is in the requests list with its actor.
  const listed = (await h.call('GET', '/api/v1/requests')).json as any[];
  assert.ok(['throttle', 'backfill', 'pause', 'resume', 'cancel'].every((k) => listed.some((r) => r.kind === k && /^api@/.test(r.requestedBy))));
  const runs = (await h.call('GET', '/api/v1/runs?table=public.small')).json as any[];
  assert.ok(runs.some((r) => r.mode === 'truncate'));
});

test('/metrics passes promtool and the event stream starts with the status', async () => {
  const m = await h.call('GET', '/metrics');
  assert.equal(m.status, 200);
  assert.match(m.text, /sluice_table_state\{table="public.big",state="streaming"\} 1/);
  assert.match(m.text, /sluice_throttle_limit\{knob="max_rows_per_second"\} 4000/);
  assert.doesNotMatch(m.text, /run_id|request_id|lsn=/);
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: m.text, encoding: 'utf8' });
  assert.equal(promtool.status, 0, `promtool: ${promtool.stdout}${promtool.stderr}`);
  // The example alert rules in docs/ are valid and name only metrics that exist.
  const rules = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../docs/monitoring/sluice-alerts.yml');
  assert.match(execFileSync('promtool', ['check', 'rules', rules], { encoding: 'utf8' }), /SUCCESS: \d+ rules found/);
  for (const name of new Set(readFileSync(rules, 'utf8').match(/sluice_[a-z_]+/g))) assert.match(m.text, new RegExp(`^${name}`, 'm'), name);

  const ac = new AbortController();
  const r = await fetch(`${h.base}/api/v1/events`, { headers: { Authorization: `Bearer ${h.token}` }, signal: ac.signal });
  assert.equal(r.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const reader = r.body!.getReader();
  let text = '';
  while (!/event: status\ndata: .*\n\n/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
  const data = JSON.parse(/event: status\ndata: (.*)\n\n/.exec(text)![1]);
  assert.ok(data.status.tables.length === 3 && typeof data.live.captured === 'number' && /\*\*\*|→/.test(data.route));
  ac.abort();

  // A reconnecting client's Last-Event-ID replays the lifecycle events it missed (here: verify.completed).
  const again = new AbortController();
  const replay = await fetch(`${h.base}/api/v1/events`, { headers: { Authorization: `Bearer ${h.token}`, 'Last-Event-ID': '0' }, signal: again.signal });
  const r2 = replay.body!.getReader();
  let t2 = '';
  const verifyEvent = () => [...t2.matchAll(/id: \d+\nevent: lifecycle\ndata: (.*)\n\n/g)].map((m) => JSON.parse(m[1])).find((e) => e.name === 'verify.completed');
  while (!verifyEvent()) t2 += new TextDecoder().decode((await r2.read()).value);
  assert.equal(verifyEvent().detail.equal, true);
  again.abort();
});

test('webhook deliveries and in-place runs: GET /api/v1/deliveries and /api/v1/inplace', async () => {
  const asReader = { Authorization: `Bearer ${READ_TOKEN}` };
  // Every delivery the receiver accepted is listed as delivered; the refused one is pending.
  await waitUntil('the receiver got the completions', async () => received.filter((r) => r.path === '/hook').length >= 3 && received.some((r) => r.path === '/down'), 30_000);
  const d = await h.call('GET', '/api/v1/deliveries', undefined, asReader);
  assert.equal(d.status, 200);
  assert.doesNotMatch(d.text, /secret-in-the-query|\/hook|\/down/, 'only the receiver origin is shown');
  const byId = new Map((d.json as any[]).map((x) => [x.id, x]));
  for (const r of received.filter((x) => x.path === '/hook')) {
    const x = byId.get(r.delivery);
    assert.ok(x, `delivery ${r.delivery} is listed`);
    assert.deepEqual([x.event, x.urlOrigin, x.status, x.lastStatusCode, x.nextAttemptAt], [r.event, hookBase, 'delivered', 200, null]);
  }
  const down = (d.json as any[]).find((x) => x.id === received.find((r) => r.path === '/down')!.delivery);
  assert.equal(down.status, 'pending');
  assert.equal(down.lastStatusCode, 503);
  assert.ok(down.attempts >= 1 && typeof down.nextAttemptAt === 'string', JSON.stringify(down));

  // No in-place job ran against the source yet: an empty list, not an error.
  assert.deepEqual((await h.call('GET', '/api/v1/inplace', undefined, asReader)).json, []);
  const job = join(work.dir, 'shout.yaml');
  writeFileSync(job, `job: shout\nreason: "upper-case tiny"\ntable: public.tiny\nkind: update\nset: "v = upper(v)"\nchunk: { rows: 100 }\n`);
  const j = await sluice(['-c', work.config, 'inplace', 'run', job]);
  assert.equal(j.code, 0, j.stdout + j.stderr);
  const runs = (await h.call('GET', '/api/v1/inplace', undefined, asReader)).json as any[];
  const ledger = (await source.query(`SELECT id::int AS id, actor FROM _sluice.inplace_runs`)).rows;
  // Earlier steps wrote to tiny too: the job updated every row it has now.
  const tiny = (await source.query(`SELECT count(*)::int AS n FROM public.tiny`)).rows[0].n;
  assert.equal(runs.length, 1);
  assert.deepEqual(
    [runs[0].job, runs[0].runId, runs[0].table, runs[0].state, runs[0].rowsAffected, runs[0].reason, runs[0].who.startsWith(`${ledger[0].actor}@`)],
    ['shout', ledger[0].id, 'public.tiny', 'done', tiny, 'upper-case tiny', true],
  );
  assert.ok(runs[0].endedAt >= runs[0].startedAt);
});
