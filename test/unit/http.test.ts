/**
 * The operator surface's rules without a server: who may do what (token, read-only token, cookie,
 * Host allowlist, Origin), what is refused at start (non-loopback without a token), request
 * validation shared with the CLI, and metric names that stay `sluice_*` with bounded labels.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { backfillParams, pauseScope, throttleParams } from '../../src/control/requests.js';
import { SluiceError } from '../../src/core/errors.js';
import { Metrics, throttleReason } from '../../src/http/metrics.js';
import { accessOf, httpSettings, loginCookie, parseListen, refusal, tokenOf } from '../../src/http/security.js';
import { frame } from '../../src/http/sse.js';

const config = (api = '') =>
  parseConfig(
    `pipeline: { name: p }
source: { type: postgres, url: "postgres://u:secret@src/db" }
destination: { type: postgres, url: "postgres://u:secret@dst/db" }
${api}
tables: [{ name: public.t }]
`,
    { env: {} },
  );

const req = (headers: Record<string, string>, method = 'GET') => ({ headers, method }) as unknown as IncomingMessage;

test('off unless asked; loopback by default; a non-loopback address needs api.token', () => {
  assert.equal(httpSettings(config(), undefined, {}), null);
  const s = httpSettings(config(), true, {})!;
  assert.deepEqual([s.host, s.port], ['127.0.0.1', 7433]);
  assert.equal(s.token.length, 43, '32 random bytes, base64url');
  assert.notEqual(httpSettings(config(), true, {})!.token, s.token, 'a new token per start');
  assert.match(s.tokenFile!, /api-token$/);
  assert.throws(() => httpSettings(config(), '0.0.0.0:7433', {}), (e: SluiceError) => e.isUsageError && /api\.token/.test(e.message));
  const withToken = httpSettings(config(), '0.0.0.0:7433', { SLUICE_API_TOKEN: 'a-token-of-twenty-chars' })!;
  assert.equal(withToken.tokenFile, null);
  assert.equal(httpSettings(config('api: { listen: "10.0.0.5:9000", token: "0123456789abcdef" }'), undefined, {})!.port, 9000);
  assert.deepEqual(parseListen('[::1]:80'), { host: '::1', port: 80 });
  assert.throws(() => parseListen('nowhere'), /api\.listen/);
});

test('the full token acts, the read-only token reads, anything else is nobody', () => {
  const s = httpSettings(config('api: { token: "full-token-0123456789", readOnlyToken: "read-token-0123456789" }'), undefined, {})!;
  assert.equal(accessOf(s, 'full-token-0123456789'), 'write');
  assert.equal(accessOf(s, 'read-token-0123456789'), 'read');
  assert.equal(accessOf(s, 'full-token-012345678'), null);
  assert.equal(accessOf(s, null), null);
  assert.equal(tokenOf(req({ authorization: 'Bearer abc' })), 'abc');
  assert.equal(tokenOf(req({ cookie: 'x=1; sluice_token=def' })), 'def');
  assert.match(loginCookie('t'), /HttpOnly; SameSite=Strict/);
});

test('Host allowlist and Origin check', () => {
  const s = httpSettings(config('api: { allowedHosts: [sluice.internal] }'), true, {})!;
  assert.equal(refusal(s, req({ host: '127.0.0.1:7433' })), null);
  assert.equal(refusal(s, req({ host: 'localhost:7433' })), null);
  assert.equal(refusal(s, req({ host: 'sluice.internal' })), null);
  assert.equal(refusal(s, req({ host: 'attacker.example:7433' }))?.code, 'HOST_NOT_ALLOWED');
  assert.equal(refusal(s, req({}))?.status, 403, 'no Host at all');
  assert.equal(refusal(s, req({ host: '127.0.0.1:7433', origin: 'http://127.0.0.1:7433' }, 'POST')), null);
  assert.equal(refusal(s, req({ host: '127.0.0.1:7433' }, 'POST')), null, 'no Origin: curl and scripts');
  assert.equal(refusal(s, req({ host: '127.0.0.1:7433', origin: 'http://evil.example' }, 'POST'))?.code, 'FOREIGN_ORIGIN');
  assert.equal(refusal(s, req({ host: '127.0.0.1:7433', origin: 'null' }, 'PATCH'))?.code, 'FOREIGN_ORIGIN');
  assert.equal(refusal(s, req({ host: '127.0.0.1:7433', 'sec-fetch-site': 'cross-site' }, 'POST'))?.code, 'FOREIGN_ORIGIN');
});

test('request validation is the CLI’s, naming options as the caller does', () => {
  const json = (k: string) => k;
  assert.deepEqual(backfillParams({ tables: undefined } as never, json).params, { mode: 'online', keepArchive: false });
  assert.deepEqual(backfillParams({ mode: 'upsert', where: 'id > 5', parallelism: 4, reason: 'why' }, json).params, {
    mode: 'upsert',
    keepArchive: false,
    where: 'id > 5',
    parallelism: 4,
    reason: 'why',
  });
  assert.throws(() => backfillParams({ mode: 'sideways' }, json), /mode sideways: expected one of online\|upsert\|truncate\|drop/);
  assert.throws(() => backfillParams({ parallelism: 0 }, json), /parallelism 0/);
  assert.throws(() => backfillParams({ mode: 'upsert', keepArchive: true }, (k) => `--${k}`), /--keepArchive applies to --mode online only/);
  assert.deepEqual(throttleParams({ maxRowsPerSecond: '500', reason: 'night' }, json), { maxRowsPerSecond: 500, reason: 'night' });
  assert.throws(() => throttleParams({ maxRowsPerSecond: -1 }, json), /expected a number ≥ 0/);
  assert.throws(() => throttleParams({}, json), /at least one/);
  assert.equal(pauseScope(undefined, json), 'backfills');
  assert.throws(() => pauseScope('everything', json), /scope everything/);
});

test('metrics are sluice_* with bounded labels; throttle reasons are a closed set', async () => {
  const m = new Metrics('p', 'sluice_p');
  m.update({
    route: 'a → b',
    live: { at: 0, captured: 10, applied: 7, changeLogBytes: 4096 },
    status: {
      pipeline: { name: 'p', running: true, pid: 1, lastSeen: null, host: 'h', slot: 'sluice_p', slotActive: true, slotLagBytes: 100, throttle: { state: 'paused: replica lag 12 s > 10 s', maxRowsPerSecond: 0 } },
      tables: [{ name: 'public.t', state: 'backfilling', mode: 'online', rowsCopied: 5, rowsEstimated: 10, rowsPerSecond: 1, percent: 50, etaSeconds: null, lagBytes: 0, lagSeconds: 1, error: null, detail: null, lockWaits: [], staging: null, archives: [], progress: null, catchUp: null }],
      archives: { count: 0, bytes: 0, nextDropAt: null, freeBytes: null, totalBytes: null },
    },
  });
  const text = await m.text();
  const families = [...text.matchAll(/^# TYPE (\S+) /gm)].map((x) => x[1]);
  assert.ok(families.filter((f) => !/^(process|nodejs)_/.test(f)).every((f) => f.startsWith('sluice_')), families.join(' '));
  const labels = new Set([...text.matchAll(/^sluice_\w+\{([^}]*)\}/gm)].flatMap((x) => x[1].split(',').map((kv) => kv.split('=')[0])));
  assert.deepEqual([...labels].sort(), ['action', 'knob', 'node_version', 'pipeline', 'reason', 'slot', 'state', 'table', 'version'].filter((l) => labels.has(l)).sort());
  assert.ok(![...labels].some((l) => /id|lsn|position/.test(l)));
  assert.match(text, /sluice_throttle_active\{reason="replica_lag"\} 1/);
  assert.doesNotMatch(text, /sluice_backfill_eta_seconds\{/, 'no ETA series while it is unknown');
  assert.match(text, /sluice_backfill_progress_ratio\{table="public.t"\} 0.5/);
  assert.match(text, /sluice_changelog_pending_changes 3/);
  assert.equal(throttleReason('open'), null);
  assert.equal(throttleReason('paused: backfills paused by an operator'), 'manual');
  assert.equal(throttleReason('paused: rows/s ceiling 10'), 'rate');
});

test('an SSE frame is one JSON line with its event and id', () => {
  assert.equal(frame('lifecycle', { a: 'x\ny' }, 7), 'id: 7\nevent: lifecycle\ndata: {"a":"x\\ny"}\n\n');
});
