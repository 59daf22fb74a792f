/**
 * The JetStream change log on a 3-node cluster with replicas 3: losing the quorum (two of three
 * servers stopped) stops flush from returning a durable head, so capture acknowledges nothing more,
 * while reads of what is stored go on; when the servers come back, flush resumes and stores each
 * change once.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { JetStreamChangeLog } from '../../src/changelog/jetstream/jetstream-change-log.js';
import { SluiceError } from '../../src/core/errors.js';
import { Lsn, Position } from '../../src/core/types.js';
import { startNatsCluster, type NatsCluster } from '../support/nats.js';

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
  const stored = await reader.read('public.t', Position.start, 1000);
  assert.deepEqual(
    stored.map((c) => c.row?.[1]),
    Array(50).fill('at 100'),
    'what is stored is still read from the server that is left',
  );

  await Promise.all([cluster.nodes[1].start(), cluster.nodes[2].start()]);
  const resumed = await whileRetryable(30_000, () => writer.flush());
  assert.equal(resumed.endLsn, Lsn.of(201));
  const all = await whileRetryable(10_000, () => reader.read('public.t', Position.start, 1000));
  assert.deepEqual(
    all.map((c) => `${c.position.lsn}#${c.position.idx}`),
    [...[...Array(50).keys()].map((i) => `100#${i}`), ...[...Array(50).keys()].map((i) => `200#${i}`)],
    'each change once, in order',
  );
  assert.equal(await reader.count('public.t', Position.start), 100);
  await Promise.all([writer.close(), reader.close()]);
});
