/**
 * Fault matrix: the change log's disk fills up (ENOSPC).
 *
 * The change log (`log.path`) lives on a small tmpfs. Under write load a filler file leaves about
 * 2 MiB free and one large source transaction (about 4 MiB of captured changes) fills the rest.
 * sluice must stop with exit 2 and a message naming the path, the fix and the last acknowledged
 * position; the slot's confirmed_flush_lsn must never pass the log's durable head (contract 1:
 * sampled while it runs, and exactly after it stopped). After the filler is deleted, `sluice run`
 * starts again and loses nothing: the oracle agrees.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { createDemoTable, Workload } from '../../src/demo/workload.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { makeWorkdir, spawnSluice, type Running, type Workdir, eventuallyEqual, killIfRunning } from '../support/sluice.js';

const TABLE = 'public.orders';
const SLOT = 'sluice_test';
const ROWS = 5000;
const MIB = 1 << 20;

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir;
let run: Running | undefined;
let mnt: string | undefined;
let mounted = false;
const t0 = Date.now();
const note = (line: string) => console.log(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);

before(async () => {
  mnt = mkdtempSync(join(tmpdir(), 'sluice-logfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', mnt]);
  mounted = true;
  ({ source, destination, stopAll } = await startClusters());
  await createDemoTable(source.url(), { rows: ROWS });
  work = makeWorkdir({ sourceUrl: source.url(), destinationUrl: destination.url(), tables: [{ name: TABLE }] });
  const cfg = readFileSync(work.config, 'utf8').replace(/^log: \{ type: embedded, path: "[^"]*" \}/m, `log: { type: embedded, path: "${join(mnt, 'log')}" }`);
  writeFileSync(work.config, cfg);
});

after(async () => {
  await killIfRunning(run);
  await stopAll?.();
  work?.remove();
  if (mounted && mnt) {
    try {
      execFileSync('umount', [mnt]);
    } catch {
      execFileSync('umount', ['-l', mnt]);
    }
  }
  if (mnt) rmSync(mnt, { recursive: true, force: true });
});

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

/** pg_lsn text → bigint, by the source's own arithmetic. */
async function lsnNumber(lsn: string): Promise<bigint> {
  return BigInt((await source.query(`SELECT ($1::pg_lsn - '0/0'::pg_lsn)::text AS n`, [lsn])).rows[0].n);
}

async function confirmedFlush(): Promise<bigint> {
  const r = await source.query(`SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::text AS n FROM pg_replication_slots WHERE slot_name = $1`, [SLOT]);
  return BigInt(r.rows[0].n);
}

/** The log's durable head as the log itself records it (meta.head_end_lsn), read with plain SQLite. */
function logHead(db: Database.Database): bigint {
  const r = db.prepare(`SELECT value FROM meta WHERE key = 'head_end_lsn'`).get() as { value: string } | undefined;
  return BigInt(r?.value ?? '0');
}

test('change log disk full: stops with exit 2 naming the fix, never acknowledges past the log; after space returns nothing is lost', async () => {
  run = spawnSluice(['run'], { config: work.config });
  await run.waitForOutput(/table caught up; streaming/, 90_000);
  note('streaming; log on a 32 MiB tmpfs');

  const workload = new Workload(source.url(), { ratePerSecond: 300 });
  workload.start();
  const filler = join(mnt!, 'filler');
  const reader = new Database(join(mnt!, 'log', 'changes.db'), { readonly: true, fileMustExist: true });
  let samples = 0;
  let r;
  let failedAfterMs = 0;
  try {
    writeFileSync(filler, Buffer.alloc(Math.max(0, freeBytes(mnt!) - 2 * MIB)));
    note(`filler written; ${(freeBytes(mnt!) / MIB).toFixed(1)} MiB free`);
    const filledAt = Date.now();
    // One transaction of about 4 MiB of captured changes (a fresh 1.9 kB note on 2,000 rows).
    const big = source.query(`UPDATE ${TABLE} SET note = repeat(md5(id::text || random()::text), 60) WHERE id <= 2000`);
    // Contract 1 while it runs: what the slot confirmed is never past the log's durable head.
    while (run.child.exitCode === null && Date.now() - filledAt < 60_000) {
      const confirmed = await confirmedFlush();
      const head = logHead(reader);
      assert.ok(confirmed <= head, `slot confirmed ${confirmed} is past the log's durable head ${head}`);
      samples++;
      await new Promise((res) => setTimeout(res, 100));
    }
    await big;
    r = await run.exited(30_000);
    failedAfterMs = Date.now() - filledAt;
  } finally {
    reader.close();
    await workload.stop();
  }
  const message = r.stderr.trim().split('\n').pop() ?? '';
  note(`exit ${r.code} ${(failedAfterMs / 1000).toFixed(1)} s after the filler; ${samples} contract samples; ${message}`);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  const m = /change log disk full at (\S+): free space there or move log\.path to a bigger disk, then run again; nothing was acknowledged past position ([0-9A-F]+\/[0-9A-F]+)/.exec(r.stderr);
  assert.ok(m, `the message names the path, the fix and the position:\n${r.stderr}`);
  assert.equal(m[1], join(mnt!, 'log'));

  // Exactly, now that sluice has stopped: the slot's position is at or before the log's durable head,
  // and that head is the position the message named.
  rmSync(filler);
  const db = new Database(join(mnt!, 'log', 'changes.db'), { readonly: true, fileMustExist: true });
  const head = logHead(db);
  db.close();
  const confirmed = await confirmedFlush();
  note(`after the stop: slot confirmed_flush ${confirmed}, log durable head ${head}, message ${m[2]}`);
  assert.ok(confirmed <= head, `slot confirmed ${confirmed} is past the log's durable head ${head}`);
  assert.equal(await lsnNumber(m[2]), head, 'the message names the durable head');

  // Space is back: run again, under writes; nothing was lost.
  const again = new Workload(source.url(), { ratePerSecond: 300 });
  again.start();
  run = spawnSluice(['run'], { config: work.config });
  try {
    await run.waitForOutput(/pipeline running/, 60_000);
    await new Promise((res) => setTimeout(res, 2000));
  } finally {
    await again.stop();
  }
  await eventuallyEqual(source.url(), destination.url(), TABLE, { what: 'after space returned', timeoutMs: 60_000, run });
  run.kill('SIGTERM');
  assert.equal((await run.exited(60_000)).code, 0);
});
