/** Webhook signing (a known vector), event patterns, the retry schedule, hook environments, the delivery log. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { eventMatches, type SluiceEvent } from '../../src/core/events.js';
import { retryDelayMs } from '../../src/notify/backoff.js';
import { DeliveryLog, readDeliveries } from '../../src/notify/delivery-log.js';
import { hookEnv } from '../../src/notify/hook-runner.js';
import { resolveWebhooks } from '../../src/notify/notifier.js';
import { signBody, verifySignature } from '../../src/notify/signature.js';
import { configSchema } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/load.js';
import { writeFileSync } from 'node:fs';

test('the signature: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>") in hex (vector computed with Python hmac)', () => {
  const body = '{"event":"backfill.completed"}';
  const header = signBody('test-secret-0123456789', body, 1_700_000_000.9);
  assert.equal(header, 't=1700000000,v1=72846d2353bfa5aa1dab9dc268ac648e63340c23ae9fab032f6961f077da33eb');
  assert.equal(verifySignature('test-secret-0123456789', body, header, 1_700_000_100), true);
  assert.equal(verifySignature('test-secret-0123456789', body + ' ', header, 1_700_000_100), false, 'another body');
  assert.equal(verifySignature('another-secret-012345', body, header, 1_700_000_100), false, 'another secret');
  assert.equal(verifySignature('test-secret-0123456789', body, header, 1_700_000_301), false, 'too old: a replay');
  assert.equal(verifySignature('test-secret-0123456789', body, 't=1700000000,v1=zz', 1_700_000_000), false);
  const moved = header.replace('t=1700000000', 't=1700000200');
  assert.equal(verifySignature('test-secret-0123456789', body, moved, 1_700_000_200), false, 'the timestamp is signed');
});

test('event patterns: exact, group.*, *', () => {
  assert.equal(eventMatches('*', 'swap.completed'), true);
  assert.equal(eventMatches('backfill.*', 'backfill.failed'), true);
  assert.equal(eventMatches('backfill.*', 'swap.completed'), false);
  assert.equal(eventMatches('swap.completed', 'swap.completed'), true);
  assert.equal(eventMatches('swap.*', 'slot.retained_exceeded'), false);
  assert.equal(eventMatches('lag.exceeded', 'lag.recovered'), false);
});

test('the retry schedule doubles from 1 s and is capped at 5 minutes', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 50].map(retryDelayMs), [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000]);
});

test('a hook gets SLUICE_EVENT, SLUICE_TABLE and one SLUICE_<KEY> per scalar detail', () => {
  const ev: SluiceEvent = { name: 'backfill.completed', at: '2026-01-01T00:00:00.000Z', pipeline: 'p', table: 'public.t', detail: { rowsCopied: 12, mode: 'online', nested: { a: 1 } } };
  const env = hookEnv(ev);
  assert.equal(env.SLUICE_EVENT, 'backfill.completed');
  assert.equal(env.SLUICE_TABLE, 'public.t');
  assert.equal(env.SLUICE_ROWS_COPIED, '12');
  assert.equal(env.SLUICE_MODE, 'online');
  assert.equal(env.SLUICE_NESTED, undefined);
  assert.deepEqual(JSON.parse(env.SLUICE_PAYLOAD), ev);
});

const base = { pipeline: { name: 'p' }, source: { type: 'postgres', url: 'postgres://a/b' }, destination: { type: 'postgres', url: 'postgres://a/c' }, tables: ['public.t'] };

test('config: webhooks need one of secret or secretEnv; a secretEnv that is not set names the fix', () => {
  assert.equal(configSchema.safeParse({ ...base, notify: { webhooks: [{ url: 'http://x/' }] } }).success, false);
  assert.equal(configSchema.safeParse({ ...base, notify: { webhooks: [{ url: 'ftp://x/', secret: 'x'.repeat(16) }] } }).success, false);
  assert.equal(configSchema.safeParse({ ...base, notify: { webhooks: [{ url: 'http://x/', secret: 'x'.repeat(16), events: ['backfill'] }] } }).success, false);
  const cfg = configSchema.parse({ ...base, notify: { webhooks: [{ url: 'http://x/', secretEnv: 'SLUICE_TEST_UNSET_SECRET' }] } });
  assert.deepEqual(cfg.notify.webhooks[0].events, ['*']);
  assert.throws(() => resolveWebhooks(cfg, {}), /notify\.webhooks\[0\]\.secretEnv: the environment variable SLUICE_TEST_UNSET_SECRET is not set/);
  assert.equal(resolveWebhooks(cfg, { SLUICE_TEST_UNSET_SECRET: 'k'.repeat(20) })[0].key, 'k'.repeat(20));
});

test('the delivery log keeps pending deliveries across a reopen and records each attempt', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-notify-unit-'));
  try {
    const file = join(dir, 'sub', 'notify.db');
    assert.deepEqual(readDeliveries(file), []);
    const log = new DeliveryLog(file);
    log.add({ id: 'd1', event: 'swap.completed', table: 'public.t', url: 'http://x/', body: '{}' }, 1000);
    log.recordAttempt({ deliveryId: 'd1', attempt: 1, at: 1000, statusCode: 500, error: 'HTTP 500', durationMs: 3 }, { status: 'pending', nextAttemptAt: 2000 });
    log.close();
    const again = new DeliveryLog(file);
    assert.deepEqual(again.due(1999), []);
    assert.deepEqual(again.due(2000).map((d) => [d.id, d.attempts, d.lastStatusCode]), [['d1', 1, 500]]);
    again.close();
    const listed = readDeliveries(file);
    assert.equal(listed[0].status, 'pending');
    assert.deepEqual(listed[0].attemptLog.map((a) => a.error), ['HTTP 500']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config: a misspelt notify key names the one meant', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-notify-cfg-'));
  try {
    const file = join(dir, 'sluice.yaml');
    writeFileSync(
      file,
      `pipeline: { name: p }\nsource: { type: postgres, url: "postgres://a/b" }\ndestination: { type: postgres, url: "postgres://a/c" }\n` +
        `notify:\n  hookDir: /tmp\n  webhooks:\n    - { url: "http://x/", secret: "0123456789abcdef", event: ["*"] }\ntables: [public.t]\n`,
    );
    assert.throws(() => loadConfig(file, { env: {} }), (err: Error) => {
      assert.match(err.message, /notify\.webhooks\[0\]\.event: unknown key; did you mean events\?/);
      assert.match(err.message, /notify\.hookDir: unknown key; did you mean hooksDir\?/);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
