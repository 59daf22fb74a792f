/**
 * Capture on a busy source that writes nothing sluice replicates. With synchronous_commit on, every
 * commit wakes the walsender, which sends a keepalive; capture used to persist the new position
 * (a SQLite transaction and an fsync) and acknowledge it for every one of them. Now a position-only
 * move is persisted at most about once a second, changes are still flushed at once, and the slot is
 * never acknowledged past what the log has stored (contract 1).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EmbeddedChangeLog } from '../../src/changelog/embedded/embedded-change-log.js';
import { silentLogger } from '../../src/core/logger.js';
import { Lsn, Position } from '../../src/core/types.js';
import { Streamer } from '../../src/pipeline/streamer.js';
import { startCluster, type Cluster } from '../support/clusters.js';

let source: Cluster;
let dir: string;

before(async () => {
  source = await startCluster({ name: 'capture-idle', settings: { synchronous_commit: 'on' } });
  await source.query(`
    CREATE TABLE public.one (id int PRIMARY KEY, v text);
    CREATE TABLE public.other (id int PRIMARY KEY, v int);
    CREATE PUBLICATION idle_pub FOR TABLE public.one;
  `);
  await source.query(`SELECT pg_create_logical_replication_slot('idle_slot', 'pgoutput')`);
  dir = mkdtempSync(join(tmpdir(), 'sluice-capture-idle-'));
});

after(async () => {
  await source?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function confirmedFlush(): Promise<Lsn> {
  const r = await source.query(`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = 'idle_slot'`);
  return Lsn.parse(r.rows[0].l as string);
}

test('writes to unreplicated tables: the log persists the position about once a second, and the slot still moves', async () => {
  const log = new EmbeddedChangeLog(join(dir, 'log.db'));
  let positionWrites = 0;
  let maxAckPastDurable = 0n;
  const flush = log.flush.bind(log);
  log.flush = () => {
    const before = log.head();
    const head = flush();
    if (head.endLsn !== before.endLsn) positionWrites++;
    return head;
  };
  const streamer = new Streamer({
    url: source.url(),
    slot: 'idle_slot',
    publication: 'idle_pub',
    log,
    logger: silentLogger,
    heartbeatIntervalMs: 60_000,
    // Longer than the default (1 s), so that "a change is not held for it" is clear on a loaded machine.
    idleFlushIntervalMs: 3000,
    onFatal: (err) => assert.fail(err),
  });
  await streamer.start();
  const watch = setInterval(() => {
    const past = streamer.confirmedLsn - log.head().endLsn;
    if (past > maxAckPastDurable) maxAckPastDurable = past;
  }, 5);
  try {
    const startedAt = Date.now();
    const c = await source.query(`SELECT 1`); // warm the superuser client
    assert.equal(c.rowCount, 1);
    for (let i = 0; i < 400; i++) await source.query(`INSERT INTO public.other VALUES ($1, $1)`, [i]);
    const elapsedS = (Date.now() - startedAt) / 1000;
    const writes = positionWrites;
    // One per keepalive (hundreds) before; one per idleFlushIntervalMs (plus the first one) now.
    assert.ok(writes <= Math.ceil(elapsedS / 3) + 4, `${writes} position-only log writes for 400 commits in ${elapsedS.toFixed(1)} s`);

    // The position still reaches the slot, soon, and only through the log.
    const end = Lsn.parse((await source.query(`SELECT pg_current_wal_lsn()::text AS l`)).rows[0].l as string);
    const deadline = Date.now() + 15_000;
    while ((await confirmedFlush()) < end) {
      assert.ok(Date.now() < deadline, `slot confirmed ${Lsn.format(await confirmedFlush())}, source at ${Lsn.format(end)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(log.head().endLsn >= (await confirmedFlush()), 'the slot is not acknowledged past the log');

    // A change is still flushed at once, not held for the idle interval.
    const before = streamer.captured;
    const t0 = Date.now();
    await source.query(`INSERT INTO public.one VALUES (1, 'x')`);
    while (streamer.captured === before || log.head().lsn === 0n) {
      assert.ok(Date.now() - t0 < 10_000, 'the change was captured');
      await new Promise((r) => setTimeout(r, 5));
    }
    const durableIn = Date.now() - t0;
    assert.ok(durableIn < 1500, `a change became durable after ${durableIn} ms`);
    assert.equal(log.read('public.one', Position.start, 10).length, 1);
  } finally {
    clearInterval(watch);
    await streamer.stop();
    log.close();
  }
  assert.equal(maxAckPastDurable, 0n, 'acknowledged past the durable head');
});
