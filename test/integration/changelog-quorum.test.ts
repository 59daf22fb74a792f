/**
 * The JetStream change log when servers go away. On a 3-node cluster with replicas 3, losing the
 * quorum (two of three servers stopped) stops flush from returning a durable head, so capture
 * acknowledges nothing more, while reads of what is stored go on; when the servers come back, flush
 * resumes and stores each change once. On one node, a SIGKILL of the server in the middle of a flush
 * loses nothing acknowledged and stores nothing twice once it is back (a process crash keeps the page
 * cache; a machine crash is another matter, docs/architecture.md).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { JetStreamChangeLog } from '../../src/changelog/jetstream/jetstream-change-log.js';
import { SluiceError } from '../../src/core/errors.js';
import { Lsn, Position } from '../../src/core/types.js';
import { startNats, startNatsCluster, type NatsCluster } from '../support/nats.js';

let cluster: NatsCluster;
before(async () => {
  cluster = await startNatsCluster(3);
});
after(async () => {
  await cluster?.remove();
});

const cols = { names: ['id', 'v'], typeOids: [20, 25], keyIndexes: [0] };

/** Retries `fn` while it fails with a retryable SluiceError (a cluster electing its leaders), for up to `ms`. */
async function whileRetryable<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof SluiceError && err.retryable) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

function transaction(log: JetStreamChangeLog, lsn: number, n: number): void {
  const v = log.relationVersion('public.t', cols);
  for (let i = 0; i < n; i++) log.append({ table: 'public.t', lsn: Lsn.of(lsn), idx: i, kind: 'insert', relationVersion: v, row: [String(i), `at ${lsn}`], commitTimeMs: lsn });
  log.commit(Lsn.of(lsn), Lsn.of(lsn + 1), lsn);
}

test('replicas 3: without a quorum flush returns no durable head and reads go on; with it back, flush resumes and stores each change once', async () => {
  const open = (url: string, role: 'writer' | 'reader') =>
    whileRetryable(20_000, () => JetStreamChangeLog.open({ url, pipeline: 'quorum', replicas: 3, role, ackTimeoutMs: 1000 }));
  const writer = await open(cluster.url, 'writer');
  const survivor = cluster.nodes[0];
  const reader = await open(survivor.url, 'reader');
  try {
    await quorumLostAndBack(writer, reader);
  } finally {
    await Promise.all([writer.close(), reader.close()]);
  }
});

async function quorumLostAndBack(writer: JetStreamChangeLog, reader: JetStreamChangeLog): Promise<void> {
  transaction(writer, 100, 50);
  const first = await whileRetryable(20_000, () => writer.flush());
  assert.equal(first.endLsn, Lsn.of(101));
  assert.equal((await reader.read('public.t', Position.start, 1000)).length, 50);

  await Promise.all([cluster.nodes[1].stop(), cluster.nodes[2].stop()]);
  transaction(writer, 200, 50);
  for (let attempt = 0; attempt < 2; attempt++) {
    await assert.rejects(writer.flush(), (err: SluiceError) => err.code === 'CHANGELOG_NO_QUORUM' && err.retryable && /start the stopped NATS servers/.test(err.message));
    assert.equal(writer.head().endLsn, Lsn.of(101), 'nothing past the last acknowledged flush is durable');
  }
  const stored = await whileRetryable(10_000, () => reader.read('public.t', Position.start, 1000));
  assert.deepEqual(
    stored.map((c) => c.row?.[1]),
    Array(50).fill('at 100'),
    'what is stored is still read from the server that is left',
  );

  await Promise.all([cluster.nodes[1].start(), cluster.nodes[2].start()]);
  const resumed = await whileRetryable(30_000, () => writer.flush());
  assert.equal(resumed.endLsn, Lsn.of(201));
  // The reader learns the new head once the stream answers again.
  let all = await whileRetryable(10_000, () => reader.read('public.t', Position.start, 1000));
  for (const deadline = Date.now() + 10_000; all.length < 100 && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 250));
    all = await whileRetryable(10_000, () => reader.read('public.t', Position.start, 1000));
  }
  assert.deepEqual(
    all.map((c) => `${c.position.lsn}#${c.position.idx}`),
    [...[...Array(50).keys()].map((i) => `100#${i}`), ...[...Array(50).keys()].map((i) => `200#${i}`)],
    'each change once, in order',
  );
  assert.equal(await reader.count('public.t', Position.start), 100);
}

test('one node: a SIGKILL of nats-server during a flush loses nothing acknowledged and stores nothing twice', async () => {
  const single = await startNats();
  const logs: JetStreamChangeLog[] = [];
  try {
    const writer = await JetStreamChangeLog.open({ url: single.url, pipeline: 'crash', replicas: 1, ackTimeoutMs: 1000 });
    const reader = await JetStreamChangeLog.open({ url: single.url, pipeline: 'crash', replicas: 1, role: 'reader' });
    logs.push(writer, reader);
    const acked: number[] = [];
    for (let t = 1; t <= 30; t++) {
      transaction(writer, t * 100, 40);
      if (t === 15) {
        const inFlight = writer.flush().then(
          () => 'stored',
          (err: SluiceError) => err.code,
        );
        await single.nodes[0].stop('SIGKILL');
        const outcome = await inFlight;
        assert.ok(outcome === 'stored' || outcome === 'CHANGELOG_NO_QUORUM', outcome);
        await single.nodes[0].start();
      }
      await whileRetryable(20_000, () => writer.flush());
      acked.push(t * 100);
      assert.equal(writer.head().lsn, Lsn.of(t * 100));
    }
    const all: string[] = [];
    let at = Position.start;
    for (;;) {
      const batch = await whileRetryable(10_000, () => reader.read('public.t', at, 500));
      if (batch.length === 0) break;
      all.push(...batch.map((c) => `${c.position.lsn}#${c.position.idx}`));
      at = batch[batch.length - 1].position;
    }
    assert.deepEqual(all, acked.flatMap((lsn) => [...Array(40).keys()].map((i) => `${lsn}#${i}`)), 'every acknowledged change once, in order');
  } finally {
    await Promise.all(logs.map((l) => l.close()));
    await single.remove();
  }
});
