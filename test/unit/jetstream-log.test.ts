/**
 * The JetStream log's pure parts: its config keys (parsed, not yet wired), subject names and the
 * bytes of a segment; and the stream-settings comparison that refuses a stream made for something else.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jetstreamLogSchema } from '../../src/config/schema.js';
import { decodeSegment, encodeSegment, logNames, parsePosition, formatPosition, tableSubject } from '../../src/changelog/jetstream/segment.js';
import { servers, streamDifferences, wantedStream } from '../../src/changelog/jetstream/stream.js';
import { encodeTuple } from '../../src/core/tuple-data.js';
import { Lsn } from '../../src/core/types.js';

test('log type jetstream: url (one or more nats:// URLs), replicas (default 3, 1-5), stream', () => {
  const cfg = jetstreamLogSchema.parse({ type: 'jetstream', url: 'nats://a:4222, nats://b:4222,nats://c' });
  assert.equal(cfg.replicas, 3);
  assert.equal(cfg.stream, undefined);
  assert.deepEqual(servers(cfg.url), ['nats://a:4222', 'nats://b:4222', 'nats://c']);
  assert.equal(jetstreamLogSchema.parse({ type: 'jetstream', url: 'nats://a', replicas: 1, stream: 'orders-log' }).stream, 'orders-log');
  const bad = (v: object) => jetstreamLogSchema.safeParse({ type: 'jetstream', url: 'nats://a', ...v });
  assert.match(bad({ url: 'http://a' }).error!.issues[0].message, /nats:\/\//);
  assert.match(bad({ url: 'nats://a,http://b' }).error!.issues[0].message, /comma-separated/);
  assert.equal(bad({ replicas: 0 }).success, false);
  assert.equal(bad({ replicas: 7 }).success, false);
  assert.equal(bad({ replicas: 2.5 }).success, false);
  assert.match(bad({ stream: 'a.b' }).error!.issues[0].message, /letters, digits/);
  assert.equal(bad({ path: '/x' }).success, false, 'embedded keys are refused');
});

test('subjects: one per table, with characters a subject cannot hold escaped', () => {
  const names = logNames('orders');
  assert.deepEqual(names, { stream: 'SLUICE_orders', prefix: 'sluice.orders', head: 'sluice.orders.head', rel: 'sluice.orders.rel' });
  assert.equal(logNames('orders', 'mine').stream, 'mine');
  assert.equal(tableSubject(names, 'public.orders'), 'sluice.orders.chg.public.orders');
  assert.equal(tableSubject(names, 'Sales.order items.v2'), 'sluice.orders.chg.Sales.order%20items%2Ev2');
  assert.equal(tableSubject(names, 'a.*>%é'), 'sluice.orders.chg.a.%2A%3E%25%C3%A9');
  const p = { lsn: Lsn.of(0x1_0000_0000n + 5n), idx: 7 };
  assert.equal(formatPosition(p), '4294967301:7');
  assert.deepEqual(parsePosition(formatPosition(p)), p);
});

test('a segment decodes to the changes encoded, rows, old keys, kinds and times included', () => {
  const row = encodeTuple(['1', null, false, 'tab\there']);
  const bytes = encodeSegment([
    { lsn: Lsn.of(1n << 40n), idx: 0, kind: 'insert', relationVersion: 3, commitTimeMs: 1_700_000_000_123, row, oldKey: null },
    { lsn: Lsn.of(1n << 40n), idx: 4_000_000_000, kind: 'delete', relationVersion: 3, commitTimeMs: 1.5, row: null, oldKey: Buffer.from('["1",null]') },
    { lsn: Lsn.of(9), idx: 2, kind: 'truncate', relationVersion: 1, commitTimeMs: 0, row: null, oldKey: null },
  ]);
  assert.deepEqual(decodeSegment('public.t', bytes), [
    { position: { lsn: 1n << 40n, idx: 0 }, table: 'public.t', kind: 'insert', relationVersion: 3, row: ['1', null, false, 'tab\there'], oldKey: undefined, commitTimeMs: 1_700_000_000_123 },
    { position: { lsn: 1n << 40n, idx: 4_000_000_000 }, table: 'public.t', kind: 'delete', relationVersion: 3, row: undefined, oldKey: ['1', null], commitTimeMs: 1.5 },
    { position: { lsn: 9n, idx: 2 }, table: 'public.t', kind: 'truncate', relationVersion: 1, row: undefined, oldKey: undefined, commitTimeMs: 0 },
  ]);
  assert.deepEqual(decodeSegment('public.t', encodeSegment([])), []);
});

test("an existing stream's settings are compared with sluice's, in words", () => {
  const want = wantedStream(logNames('p'), { url: 'nats://a', replicas: 3 });
  assert.deepEqual(streamDifferences(want, want), []);
  assert.deepEqual(streamDifferences({ ...want, num_replicas: 1, subjects: ['x.>'], allow_direct: false }, want), [
    'subjects ["x.>"], sluice uses ["sluice.p.>"]',
    'num_replicas 1, sluice uses 3',
    'allow_direct off, sluice reads with direct gets',
  ]);
});
