/**
 * The change log's contract, one suite run against both implementations of the async port:
 * the embedded SQLite log (through AsyncEmbeddedChangeLog) and the JetStream log (a private
 * single-node nats-server started here). Ordering, durability only after flush, reads bounded by the
 * head, purge, relation versions, restart; for JetStream also fencing and the refusals of bad input.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AsyncChangeLog } from '../../src/changelog/changelog.js';
import { AsyncEmbeddedChangeLog } from '../../src/changelog/embedded/async-embedded-change-log.js';
import { EmbeddedChangeLog } from '../../src/changelog/embedded/embedded-change-log.js';
import { JetStreamChangeLog } from '../../src/changelog/jetstream/jetstream-change-log.js';
import { SluiceError } from '../../src/core/errors.js';
import { Lsn, Position, type ChangeKind } from '../../src/core/types.js';
import { freePort, startNats, type NatsCluster } from '../support/nats.js';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { HEADER_COUNT, HEADER_LAST, HEADER_TOTAL, encodeSegment, logNames, tableSubject } from '../../src/changelog/jetstream/segment.js';
import { connectNats } from '../../src/changelog/jetstream/stream.js';
import { encodeTuple } from '../../src/core/tuple-data.js';

const cols = { names: ['id', 'v'], typeOids: [20, 25], keyIndexes: [0] };
const cols2 = { names: ['id', 'v', 'w'], typeOids: [20, 25, 23], keyIndexes: [0] };

interface Impl {
  readonly name: string;
  /** Opens the log called `name` (the same one again after a close). */
  open(name: string): Promise<AsyncChangeLog>;
}

let nats: NatsCluster;
const dir = mkdtempSync(join(tmpdir(), 'sluice-contract-'));
before(async () => {
  nats = await startNats();
});
/** Every log a test opened, closed at the end even when a test failed half-way (a NATS client left open would keep reconnecting). */
const opened: AsyncChangeLog[] = [];
const track = async <T extends AsyncChangeLog>(log: Promise<T>): Promise<T> => {
  const l = await log;
  opened.push(l);
  return l;
};
after(async () => {
  await Promise.all(opened.map((l) => l.close().catch(() => {})));
  await nats?.remove();
  rmSync(dir, { recursive: true, force: true });
});

const impls: Impl[] = [
  { name: 'embedded', open: (name) => track(Promise.resolve(new AsyncEmbeddedChangeLog(new EmbeddedChangeLog(join(dir, `${name}.db`))))) },
  { name: 'jetstream', open: (name) => track(JetStreamChangeLog.open({ url: nats.url, pipeline: name, replicas: 1 })) },
];

function put(log: AsyncChangeLog, table: string, lsn: number, idx: number, v: number, kind: ChangeKind = 'insert', row: (string | null | false)[] = [String(idx), `r${lsn}`]) {
  log.append({ table, lsn: Lsn.of(lsn), idx, kind, relationVersion: v, row: kind === 'delete' || kind === 'truncate' ? undefined : row, oldKey: kind === 'delete' ? [String(idx)] : undefined, commitTimeMs: lsn });
}

async function readAll(log: AsyncChangeLog, table: string, from = Position.start, page = 1000): Promise<string[]> {
  const out: string[] = [];
  let at = from;
  for (;;) {
    const batch = await log.read(table, at, page);
    if (batch.length === 0) return out;
    assert.ok(batch.length <= page);
    out.push(...batch.map((c) => `${c.position.lsn}#${c.position.idx}`));
    at = batch[batch.length - 1].position;
  }
}

for (const impl of impls) {
  describe(`change log contract: ${impl.name}`, () => {
    test('only flushed, committed transactions are readable; they survive a reopen with their relation versions and head', async () => {
      const log = await impl.open('durable');
      const v = log.relationVersion('public.t', cols);
      put(log, 'public.t', 100, 0, v, 'insert', ['1', 'a\tb']);
      put(log, 'public.t', 100, 1, v, 'delete');
      log.commit(Lsn.of(100), Lsn.of(108), 100);
      assert.equal((await log.read('public.t', Position.start, 10)).length, 0, 'not readable before flush');
      assert.equal(log.head().endLsn, Lsn.zero, 'not durable before flush');
      const head = await log.flush();
      assert.equal(head.lsn, Lsn.of(100));
      assert.equal(head.endLsn, Lsn.of(108));
      // A transaction in progress: appended and flushed, never committed.
      put(log, 'public.t', 200, 0, v, 'update', ['1', false]);
      await log.flush();
      const got = await log.read('public.t', Position.start, 10);
      assert.deepEqual(
        got.map((c) => [c.kind, c.row, c.oldKey, c.relationVersion, c.commitTimeMs]),
        [
          ['insert', ['1', 'a\tb'], undefined, v, 100],
          ['delete', undefined, ['1'], v, 100],
        ],
      );
      assert.equal(log.head().lsn, Lsn.of(100), 'the uncommitted transaction does not move the head');
      await log.close();

      const again = await impl.open('durable');
      assert.equal(again.head().endLsn, Lsn.of(108));
      assert.equal((await again.read('public.t', Position.start, 10)).length, 2, 'the uncommitted transaction is gone');
      assert.deepEqual(await again.relation(v), cols);
      assert.equal(again.relationVersion('public.t', cols), v, 'same column set, same version');
      // Restart resumes: the transaction the source sends again after the head, then more.
      put(again, 'public.t', 200, 0, v, 'update', ['1', false]);
      again.commit(Lsn.of(200), Lsn.of(208), 200);
      put(again, 'public.t', 300, 0, v);
      again.commit(Lsn.of(300), Lsn.of(308), 300);
      assert.equal((await again.flush()).endLsn, Lsn.of(308));
      assert.deepEqual(await readAll(again, 'public.t'), ['100#0', '100#1', '200#0', '300#0']);
      assert.deepEqual((await again.read('public.t', { lsn: Lsn.of(100), idx: 1 }, 1))[0].row, ['1', false], 'an unchanged TOAST value stays unchanged');
      await again.close();
    });

    test('advance moves the confirmable position without a transaction, durably', async () => {
      const log = await impl.open('advance');
      log.advance(Lsn.of(5000));
      assert.equal((await log.flush()).endLsn, Lsn.of(5000));
      await log.close();
      const again = await impl.open('advance');
      assert.equal(again.head().endLsn, Lsn.of(5000));
      assert.equal(again.head().lsn, Lsn.zero);
      await again.close();
    });

    test('reads follow position order per table, from any cursor, in batches, up to a bound; interleaved tables stay apart', async () => {
      const log = await impl.open('order');
      const v = log.relationVersion('public.t', cols);
      const expected: string[] = [];
      const expectedU: string[] = [];
      // 5 transactions of 600 changes, one in six to public.u.
      for (let t = 1; t <= 5; t++) {
        for (let i = 0; i < 600; i++) {
          const table = i % 6 === 5 ? 'public.u' : 'public.t';
          put(log, table, t * 1000, i, v);
          (table === 'public.t' ? expected : expectedU).push(`${t * 1000}#${i}`);
        }
        log.commit(Lsn.of(t * 1000), Lsn.of(t * 1000 + 1), t);
        if (t % 2 === 0) await log.flush();
      }
      await log.flush();
      assert.deepEqual(await readAll(log, 'public.t', Position.start, 700), expected);
      assert.deepEqual(await readAll(log, 'public.u', Position.start, 33), expectedU);
      assert.deepEqual(await readAll(log, 'public.t', { lsn: Lsn.of(3000), idx: 100 }, 250), expected.slice(expected.indexOf('3000#102')));
      assert.deepEqual(await readAll(log, 'public.t', Position.before(Lsn.of(4000))), expected.slice(expected.indexOf('4000#0')));
      const bounded = await log.read('public.t', { lsn: Lsn.of(1000), idx: 5 }, 10_000, { lsn: Lsn.of(4000), idx: 3 });
      assert.deepEqual(
        bounded.map((c) => `${c.position.lsn}#${c.position.idx}`),
        expected.slice(expected.indexOf('1000#6'), expected.indexOf('4000#3') + 1),
      );
      assert.equal((await log.read('public.t', { lsn: Lsn.of(5000), idx: 599 }, 10)).length, 0, 'nothing after the last change');
      assert.equal((await log.read('public.none', Position.start, 10)).length, 0, 'a table with no changes');
      assert.equal(await log.count('public.t', Position.start), expected.length);
      assert.equal(await log.count('public.t', { lsn: Lsn.of(2000), idx: 298 }), expected.length - expected.indexOf('2000#300'));
      await log.close();
    });

    test('a transaction sent again with other flush boundaries (a reconnect before its commit) is stored once', async () => {
      const log = await impl.open('resent');
      const v = log.relationVersion('public.t', cols);
      const send = (from: number, to: number) => {
        for (let i = from; i < to; i++) put(log, 'public.t', 5000, i, v, 'update', [String(i), 'x']);
      };
      send(0, 600);
      await log.flush();
      send(600, 1700);
      await log.flush();
      assert.equal((await log.read('public.t', Position.start, 10_000)).length, 0, 'nothing readable before the commit');
      send(0, 1000);
      await log.flush();
      send(1000, 1700);
      log.commit(Lsn.of(5000), Lsn.of(5001), 3);
      await log.flush();
      assert.deepEqual(await readAll(log, 'public.t'), [...Array(1700).keys()].map((i) => `5000#${i}`), 'each change once, in order');
      assert.equal(await log.count('public.t', Position.start), 1700);
      await log.close();
    });

    test('purge removes what a cursor passed and never a change after it', async () => {
      const log = await impl.open('purge');
      const v = log.relationVersion('public.t', cols);
      for (let t = 1; t <= 4; t++) {
        for (let i = 0; i < 10; i++) put(log, 'public.t', t * 10, i, v);
        put(log, 'public.u', t * 10, 10, v, 'truncate');
        log.commit(Lsn.of(t * 10), Lsn.of(t * 10 + 1), t);
        await log.flush();
      }
      // Up to the end of a flushed transaction: exactly its changes and those before.
      assert.equal(await log.purge('public.t', { lsn: Lsn.of(20), idx: 10 }), 20);
      assert.equal(await log.count('public.t', Position.start), 20);
      assert.deepEqual((await readAll(log, 'public.t')).slice(0, 2), ['30#0', '30#1']);
      assert.equal(await log.count('public.u', Position.start), 4, 'another table keeps its changes');
      // Inside a transaction: never more than asked, never a change after the bound.
      const removed = await log.purge('public.t', { lsn: Lsn.of(30), idx: 4 });
      assert.ok(removed >= 0 && removed <= 5, `removed ${removed}`);
      assert.deepEqual(await readAll(log, 'public.t', { lsn: Lsn.of(30), idx: 4 }), [...[5, 6, 7, 8, 9].map((i) => `30#${i}`), ...[...Array(10).keys()].map((i) => `40#${i}`)]);
      assert.equal(await log.purge('public.t', { lsn: Lsn.of(10), idx: 0 }), 0, 'purging what is gone removes nothing');
      assert.equal(await log.purge('public.t', { lsn: Lsn.of(99), idx: 0 }), 20 - removed, 'past the head: everything left');
      assert.equal(await log.count('public.t', Position.start), 0);
      await log.close();
    });

    test('relation versions: a new column set is a new version; the previous one stays known, across a reopen', async () => {
      const log = await impl.open('relations');
      const v1 = log.relationVersion('public.t', cols);
      const vu = log.relationVersion('public.u', cols);
      assert.notEqual(v1, vu, 'a version per table');
      const v2 = log.relationVersion('public.t', cols2);
      assert.ok(v2 > v1);
      assert.equal(log.relationVersion('public.t', { ...cols2, typeMods: undefined }), v2);
      const v3 = log.relationVersion('public.t', { ...cols2, typeMods: [-1, 124, -1] });
      assert.notEqual(v3, v2, 'a type modifier change is a new version');
      put(log, 'public.t', 10, 0, v3, 'insert', ['1', 'x', '2']);
      log.commit(Lsn.of(10), Lsn.of(11), 1);
      await log.flush();
      await log.close();
      const again = await impl.open('relations');
      assert.deepEqual(await again.relation(v2), cols2);
      assert.deepEqual(await again.previousRelation('public.t', v2), cols);
      assert.deepEqual((await again.previousRelation('public.t', v3))?.names, cols2.names);
      assert.equal(await again.previousRelation('public.t', v1), null);
      assert.equal(again.relationVersion('public.t', { ...cols2, typeMods: [-1, 124, -1] }), v3, 'the latest version is kept');
      const v4 = again.relationVersion('public.t', cols);
      assert.ok(v4 > v3, 'a version is never reused');
      await again.close();
    });
  });
}

describe('change log contract: jetstream only', () => {
  const open = (pipeline: string, extra: Partial<Parameters<typeof JetStreamChangeLog.open>[0]> = {}) =>
    track(JetStreamChangeLog.open({ url: nats.url, pipeline, replicas: 1, ...extra }));

  test('two capturers never interleave: the newer fences the stream, the stale one is refused and acknowledges nothing', async () => {
    const a = await open('fence');
    const v = a.relationVersion('public.t', cols);
    put(a, 'public.t', 10, 0, v);
    a.commit(Lsn.of(10), Lsn.of(11), 1);
    await a.flush();
    const b = await open('fence');
    assert.equal(b.head().endLsn, Lsn.of(11), 'the new capturer resumes after the stored head');
    put(a, 'public.t', 20, 0, v);
    a.commit(Lsn.of(20), Lsn.of(21), 2);
    await assert.rejects(a.flush(), (err: SluiceError) => err.code === 'CHANGELOG_FENCED' && /another capturer/.test(err.message));
    assert.equal(a.head().endLsn, Lsn.of(11), 'the stale capturer acknowledges nothing past what it had');
    await assert.rejects(a.flush(), (err: SluiceError) => err.code === 'CHANGELOG_FENCED', 'and stays stopped');
    put(b, 'public.t', 20, 0, b.relationVersion('public.t', cols), 'insert', ['from b', null]);
    b.commit(Lsn.of(20), Lsn.of(21), 2);
    await b.flush();
    const reader = await open('fence', { role: 'reader' });
    const got = await reader.read('public.t', Position.start, 10);
    assert.deepEqual(got.map((c) => c.row?.[0]), ['0', 'from b']);
    // A reader learns newer heads from the stream.
    put(b, 'public.t', 30, 0, 1);
    b.commit(Lsn.of(30), Lsn.of(31), 3);
    await b.flush();
    assert.equal((await reader.read('public.t', got[1].position, 10)).length, 1);
    assert.equal(reader.head().endLsn, Lsn.of(31));
    await Promise.all([a.close(), b.close(), reader.close()]);
  });

  test('a flush that never finished (messages after the last head) is invisible, and gone once a writer reopens', async () => {
    const log = await open('orphans');
    const v = log.relationVersion('public.t', cols);
    put(log, 'public.t', 10, 0, v);
    log.commit(Lsn.of(10), Lsn.of(11), 1);
    await log.flush();
    await log.close();
    // What a capturer killed in the middle of a flush leaves: a segment stored, no head after it.
    const { nc } = await connectNats({ url: nats.url, replicas: 1 });
    const names = logNames('orphans');
    const h = natsHeaders();
    h.set(HEADER_LAST, '20:0');
    h.set(HEADER_COUNT, '1');
    h.set(HEADER_TOTAL, '2');
    const row = encodeTuple(['orphan', null]);
    await jetstream(nc).publish(tableSubject(names, 'public.t'), encodeSegment([{ lsn: Lsn.of(20), idx: 0, kind: 'insert', relationVersion: v, commitTimeMs: 2, row, oldKey: null }]), { headers: h });
    await nc.close();
    const reader = await open('orphans', { role: 'reader' });
    assert.deepEqual((await reader.read('public.t', Position.start, 10)).map((c) => c.row?.[0]), ['0'], 'a reader does not see it');
    assert.equal(await reader.count('public.t', Position.start), 1);
    const writer = await open('orphans');
    assert.equal(writer.head().endLsn, Lsn.of(11));
    // The source sends the transaction again; it is stored once.
    put(writer, 'public.t', 20, 0, v, 'insert', ['sent again', null]);
    writer.commit(Lsn.of(20), Lsn.of(21), 2);
    await writer.flush();
    assert.deepEqual((await reader.read('public.t', Position.start, 10)).map((c) => c.row?.[0]), ['0', 'sent again']);
    assert.equal(await reader.count('public.t', Position.start), 2);
    await Promise.all([reader.close(), writer.close()]);
  });

  test('head messages do not pile up: the stream keeps the changes, the relations and a few heads', async () => {
    const log = await open('heads');
    const v = log.relationVersion('public.t', cols);
    for (let t = 1; t <= 130; t++) {
      put(log, 'public.t', t * 10, 0, v);
      log.commit(Lsn.of(t * 10), Lsn.of(t * 10 + 1), t);
      await log.flush();
    }
    const { nc, jsm } = await connectNats({ url: nats.url, replicas: 1 });
    const info = await jsm.streams.info('SLUICE_heads', { subjects_filter: '>' });
    await nc.close();
    const subjects = info.state.subjects as Record<string, number>;
    assert.equal(subjects['sluice.heads.chg.public.t'], 130);
    assert.equal(subjects['sluice.heads.rel'], 1);
    assert.ok(subjects['sluice.heads.head'] <= 64, `head messages: ${subjects['sluice.heads.head']}`);
    assert.equal((await log.read('public.t', Position.start, 1000)).length, 130);
    const again = await open('heads');
    assert.equal(again.head().endLsn, Lsn.of(1301), 'the last head is kept');
  });

  test('NATS unreachable: CHANGELOG_UNREACHABLE, a usage error naming log.url', async () => {
    const port = await freePort();
    await assert.rejects(
      JetStreamChangeLog.open({ url: `nats://127.0.0.1:${port}`, pipeline: 'x', replicas: 1, connectTimeoutMs: 1000 }),
      (err: SluiceError) => err.code === 'CHANGELOG_UNREACHABLE' && err.isUsageError && /log\.url/.test(err.message),
    );
  });

  test('JetStream disabled: CHANGELOG_UNREACHABLE naming -js', async () => {
    const plain = await startNats({ jetstream: false });
    try {
      await assert.rejects(
        JetStreamChangeLog.open({ url: plain.url, pipeline: 'x', replicas: 1 }),
        (err: SluiceError) => err.code === 'CHANGELOG_UNREACHABLE' && err.isUsageError && /without JetStream.*-js/.test(err.message),
      );
    } finally {
      await plain.remove();
    }
  });

  test('a stream that exists with other settings, and more replicas than the cluster has, are refused naming the fix', async () => {
    (await open('settings')).close();
    await assert.rejects(open('settings', { maxBytes: 1 << 20 }), (err: SluiceError) => err.code === 'CONFIG_INVALID' && /exists with other settings.*max_bytes.*log\.stream/.test(err.message));
    await assert.rejects(open('replicas', { replicas: 3 }), (err: SluiceError) => err.code === 'CONFIG_INVALID' && /log\.replicas: 3/.test(err.message));
  });
});
