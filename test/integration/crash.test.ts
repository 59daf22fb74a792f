/**
 * The randomized concurrency + crash test (docs/architecture.md, "Tests"; contracts 1-5): a real write load
 * (inserts, updates, TOAST-unchanged updates, deletes, primary-key changes, transactions) runs
 * against the source while `sluice run` backfills public.orders (~40 chunks) and streams it; the
 * process is SIGKILLed at random moments (during startup, the chunks, streaming), kills itself once
 * at a crash point in the replay since L0 (after one of its batches committed: the replay can last a
 * few milliseconds, too short to aim a timer at), and is restarted with the same config and change
 * log each time. At least one kill must have landed in
 * the middle of the chunks (state backfilling, fewer chunks committed than the run ends with) and one
 * during the replay since L0. In the end the destination must equal the source (independent
 * oracle), a SIGTERM must exit 0, and the slot must be acknowledged close to the source's WAL head.
 *
 * Reproduce a failure with the printed seed: SLUICE_TEST_SEED=<seed> node --test dist/test/integration/crash.test.js
 * (the seed fixes the kill plan and the workload's choices; thread interleavings still vary).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createDemoTable, prng, Workload } from '../../src/demo/workload.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { assertTablesEqual } from '../support/oracle.js';
import { makeWorkdir, sluice, spawnSluice, waitUntil, type Running, type Workdir } from '../support/sluice.js';

const TABLE = 'public.orders';
const SLOT = 'sluice_test';
const ROWS = 200_000;
const CHUNK_ROWS = 5000;


const seed = process.env.SLUICE_TEST_SEED ? Number(process.env.SLUICE_TEST_SEED) : Math.floor(Math.random() * 2 ** 31);
const rnd = prng(seed);
const between = (lo: number, hi: number) => Math.round(lo + rnd() * (hi - lo));

/**
 * Where a kill is aimed: a moment after the process starts, or after it reaches a phase of the
 * table's life. `chunks` and `replay` happen once per backfill; a target whose phase is behind us
 * is skipped.
 */
type Anchor = 'start' | 'boot' | 'chunks' | 'replay' | 'streaming';
interface KillSpec {
  anchor: Anchor;
  delayMs: number;
  /**
   * A named crash point (src/core/crash.ts) the process kills itself at instead of a timed kill: the
   * replay since L0 can last a few milliseconds on a fast machine, too short to aim a timer at.
   */
  crashAt?: string;
}

let source: Cluster;
let destination: Cluster;
let stopAll: (() => Promise<void>) | undefined;
let work: Workdir | undefined;
let run: Running | undefined;
let workload: Workload | undefined;
let passed = false;
const t0 = Date.now();
const note = (line: string) => console.log(`# [${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);

before(async () => {
  note(`crash test seed ${seed} (rerun with SLUICE_TEST_SEED=${seed})`);
  const c = await startClusters();
  source = c.source;
  destination = c.destination;
  stopAll = c.stopAll;
  const started = Date.now();
  await createDemoTable(source.url(), { rows: ROWS });
  note(`createDemoTable(${ROWS}) took ${Date.now() - started} ms`);
  // Held to about 3 s a load, so that the kills aimed at the chunks land among them (an unthrottled load of
  // 200,000 rows can now finish within a kill's delay).
  work = makeWorkdir({
    sourceUrl: source.url(),
    destinationUrl: destination.url(),
    tables: [{ name: TABLE, chunkRows: CHUNK_ROWS }],
    // Small apply batches: the replay since L0 takes several, so the crash point after one of them
    // leaves part of the replay to do.
    extra: 'throttle: { maxRowsPerSecond: 60000 }\napply: { batchRows: 500 }',
  });
});

after(async () => {
  await workload?.stop().catch(() => undefined);
  if (run && run.child.exitCode === null && run.child.signalCode === null) {
    run.kill('SIGKILL');
    await run.exited(10_000).catch(() => undefined);
  }
  await stopAll?.();
  if (passed) work?.remove();
  else if (work) note(`work directory kept: ${work.dir}`);
});

interface StatusTable {
  name: string;
  state: string;
  rowsCopied: number;
  lagSeconds: number | null;
  error: string | null;
}

async function tableStatus(): Promise<StatusTable | undefined> {
  const r = await sluice(['status', '--json'], { config: work!.config, timeoutMs: 30_000 });
  if (r.code !== 0) return undefined;
  try {
    return (JSON.parse(r.stdout) as { tables: StatusTable[] }).tables.find((t) => t.name === TABLE);
  } catch {
    return undefined;
  }
}

const ANCHOR_PATTERN: Record<'boot' | 'chunks' | 'replay', RegExp> = {
  boot: /\bstarting: pipeline=/,
  chunks: /backfill started|resuming backfill/,
  replay: /backfill copied; replaying/,
};
const CAUGHT_UP = /caught up; streaming/;
/** reachAnchor's answer when a chunks anchor found the replay under way instead: kill at once. */
const REPLAY_INSTEAD = -1;

/**
 * Resolves when the anchor is reached (ms since spawn), or null when it cannot be reached in this
 * process (the table is already past that phase) or was not reached within 60 s.
 */
async function reachAnchor(r: Running, anchor: Anchor, spawnedAt: number): Promise<number | null> {
  if (anchor === 'start') return 0;
  // Generous: on a busy machine a restart can take 20 s to resume its chunks.
  const deadline = spawnedAt + 60_000;
  let checkedState = false;
  while (Date.now() < deadline) {
    if (r.child.exitCode !== null) return null;
    const out = r.output();
    if (anchor === 'streaming') {
      if (/pipeline running/.test(out) && (await tableStatus())?.state === 'streaming') return Date.now() - spawnedAt;
    } else {
      if (ANCHOR_PATTERN[anchor].test(out)) return Date.now() - spawnedAt;
      // A resumed load can go straight to its replay (its chunks were all committed before the kill):
      // the replay is then the phase to hit, now, before it ends (it is short).
      if (anchor === 'chunks' && ANCHOR_PATTERN.replay.test(out)) return REPLAY_INSTEAD;
      if (anchor !== 'boot' && CAUGHT_UP.test(out)) return null;
      if (anchor !== 'boot' && !checkedState && /pipeline running/.test(out)) {
        checkedState = true;
        if ((await tableStatus())?.state === 'streaming') return null;
      }
    }
    await new Promise((res) => setTimeout(res, anchor === 'streaming' ? 100 : 5));
  }
  return null;
}

/**
 * Waits for a process started with SLUICE_CRASH_AT to kill itself there; when it gets past the phase
 * instead (the table caught up) or takes over 60 s, kills it. `self` says which happened.
 */
async function crashedAt(r: Running): Promise<{ self: boolean; output: string }> {
  const deadline = Date.now() + 60_000;
  while (r.child.exitCode === null && r.child.signalCode === null) {
    if (CAUGHT_UP.test(r.output()) || Date.now() > deadline) {
      const output = r.output();
      r.kill('SIGKILL');
      await r.exited(10_000);
      return { self: false, output };
    }
    await new Promise((res) => setTimeout(res, 5));
  }
  const x = await r.exited(10_000);
  assert.equal(x.signal, 'SIGKILL', `a crash point ends the process with SIGKILL: exit ${x.code}/${x.signal}; output:\n${x.stdout}${x.stderr}`);
  return { self: true, output: x.stdout + x.stderr };
}

/** The phase the process was in when it was killed, from what it had printed. */
function phaseOf(output: string): string {
  if (CAUGHT_UP.test(output)) return 'streaming';
  if (ANCHOR_PATTERN.replay.test(output)) return 'replay/catch-up';
  if (ANCHOR_PATTERN.chunks.test(output)) return 'chunks';
  if (/pipeline running/.test(output)) return 'running (streaming or catching up)';
  return 'startup';
}

/** The table's row in the destination's state (read after a kill: what the dead process committed). */
async function tableRow(): Promise<{ state: string; chunks_done: number; run_id: number | null } | undefined> {
  const r = await destination
    .query(`SELECT state, chunks_done::int AS chunks_done, run_id::int AS run_id FROM _sluice.tables WHERE pipeline = 'test' AND name = $1`, [TABLE])
    .catch(() => ({ rows: [] }));
  return r.rows[0];
}

function lastLine(output: string): string {
  const lines = output.trimEnd().split('\n');
  return (lines[lines.length - 1] ?? '').replace(/\s+config=.*$/, ' config=…').slice(0, 200);
}

test('random SIGKILLs during startup, backfill, replay and streaming under write load: destination equals source', { timeout: 300_000 }, async () => {
  const plan: KillSpec[] = [
    { anchor: 'start', delayMs: between(20, 150) }, // during process startup
    { anchor: 'boot', delayMs: between(0, 120) }, // during pipeline startup (preflight, slot, state)
    { anchor: 'chunks', delayMs: between(50, 500) }, // during the chunks
    // Right after a kill in the chunks: the resumed backfill's remaining chunks can take less time
    // than any delay, so the replay is aimed at next, by its crash point, before it can pass.
    { anchor: 'replay', delayMs: 0, crashAt: 'replay:batch' }, // during the replay since L0, a batch committed
    { anchor: 'chunks', delayMs: between(30, 300) }, // during the chunks of a resumed backfill (when some are left)
    { anchor: 'streaming', delayMs: between(300, 2500) }, // while streaming
    { anchor: 'start', delayMs: between(300, 2500) }, // anywhere
    { anchor: 'start', delayMs: between(300, 2500) },
    { anchor: 'start', delayMs: between(300, 2500) },
    { anchor: 'start', delayMs: between(300, 2500) },
  ];
  note(`kill plan: ${plan.map((k) => `${k.anchor}+${k.delayMs}ms`).join(', ')}`);

  workload = new Workload(source.url(), { ratePerSecond: 1000, seed: seed ^ 0x5eed });
  workload.start();

  const kills: string[] = [];
  /** Where each kill landed: the phase from the output, and the table's state as committed. */
  const landed: { phase: string; state: string | null; chunksDone: number; runId: number | null }[] = [];
  let everything = '';
  for (const [i, k] of plan.entries()) {
    // A phase that happens once per backfill and is behind us already: skip that target.
    if (k.anchor === 'chunks' && ANCHOR_PATTERN.replay.test(everything)) continue;
    if (k.anchor === 'replay' && CAUGHT_UP.test(everything)) continue;
    const spawnedAt = Date.now();
    if (k.crashAt) {
      run = spawnSluice(['run'], { config: work!.config, env: { SLUICE_CRASH_AT: k.crashAt } });
      const r = await crashedAt(run);
      everything += r.output;
      const row = await tableRow();
      const phase = phaseOf(r.output);
      landed.push({ phase, state: row?.state ?? null, chunksDone: row?.chunks_done ?? 0, runId: row?.run_id ?? null });
      const line =
        `kill ${kills.length + 1} (plan ${i + 1}): ${r.self ? `crash point ${k.crashAt} reached` : `crash point ${k.crashAt} not reached (the replay was behind us), killed`} ` +
        `at ${Date.now() - spawnedAt} ms after spawn, phase ${phase} (state ${row?.state}, ${row?.chunks_done ?? 0} chunks committed); last output: ${lastLine(r.output)}`;
      kills.push(line);
      note(line);
      continue;
    }
    run = spawnSluice(['run'], { config: work!.config });
    const seen = await reachAnchor(run, k.anchor, spawnedAt);
    if (seen !== REPLAY_INSTEAD) await new Promise((res) => setTimeout(res, k.delayMs));
    if (run.child.exitCode !== null) {
      const r = await run.exited(5000);
      assert.fail(`sluice run exited on its own (code ${r.code}) before kill ${i + 1}; seed ${seed}; output:\n${r.stdout}${r.stderr}`);
    }
    const at = Date.now() - spawnedAt;
    const out = run.output();
    run.kill('SIGKILL');
    const r = await run.exited(10_000);
    everything += out;
    assert.equal(r.signal, 'SIGKILL', `kill ${i + 1}: exit ${r.code}/${r.signal}`);
    const phase = phaseOf(out);
    const row = await tableRow();
    landed.push({ phase, state: row?.state ?? null, chunksDone: row?.chunks_done ?? 0, runId: row?.run_id ?? null });
    const line =
      `kill ${kills.length + 1} (plan ${i + 1}): anchor ${k.anchor} ${seen === null ? 'not reachable (fallback)' : seen === REPLAY_INSTEAD ? 'passed: the replay was under way, killed at once' : `at ${seen} ms`}, +${k.delayMs} ms ` +
      `→ SIGKILL at ${at} ms after spawn, phase ${phase} (state ${row?.state}, ${row?.chunks_done ?? 0} chunks committed); last output: ${lastLine(out)}`;
    kills.push(line);
    note(line);
  }
  assert.ok(kills.length >= 3, `at least 3 kills (${kills.length})`);
  // The kills that matter most landed where they were aimed: one in the middle of the chunks (the
  // backfill had committed some but not all of them; the run is checked below to have more), one
  // during the replay since L0.
  const midChunks = landed.filter((x) => x.phase === 'chunks' && x.state === 'backfilling');
  assert.ok(midChunks.length > 0, `a kill during the chunks; seed ${seed}; kills:\n${kills.join('\n')}`);
  assert.ok(landed.some((x) => x.phase === 'replay/catch-up'), `a kill during the replay; seed ${seed}; kills:\n${kills.join('\n')}`);

  // The survivor: runs until the table streams, with the load still on.
  run = spawnSluice(['run'], { config: work!.config });
  const final = run;
  await waitUntil(
    'public.orders to stream',
    async () => {
      if (final.child.exitCode !== null) throw new Error(`sluice run exited (${final.child.exitCode}):\n${final.output()}`);
      return /pipeline running/.test(final.output()) && (await tableStatus())?.state === 'streaming';
    },
    90_000,
    300,
  );
  note('streaming; the load runs 3 s more');
  await new Promise((res) => setTimeout(res, 3000));
  await workload.stop();
  note(`workload stopped: ${JSON.stringify(workload.stats)}${workload.lastError ? ` last error: ${workload.lastError}` : ''}`);
  assert.ok(workload.stats.keyChanges > 0 && workload.stats.toastUpdates > 0 && workload.stats.deletes > 0, 'the load did its mix');

  // Caught up: the oracle agrees (polled: the last changes may still be on their way).
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await assertTablesEqual(source.url(), destination.url(), TABLE);
      break;
    } catch (err) {
      if (final.child.exitCode !== null) throw new Error(`sluice run exited (${final.child.exitCode}):\n${final.output()}`);
      if (Date.now() > deadline) {
        (err as Error).message += `\nseed ${seed}; kills:\n${kills.join('\n')}\n--- sluice output (tail):\n${final.output().slice(-5000)}`;
        throw err;
      }
      await new Promise((res) => setTimeout(res, 500));
    }
  }
  note('destination equals source');
  const st = await tableStatus();
  note(`sluice status: ${JSON.stringify(st)}`);
  assert.equal(st?.state, 'streaming');
  assert.equal(st?.error ?? null, null);

  // A clean stop: exit 0, and the slot acknowledged up to (nearly) the idle source's WAL head.
  const lsnBeforeStop = (await source.query(`SELECT pg_current_wal_lsn()::text AS lsn`)).rows[0].lsn as string;
  await new Promise((res) => setTimeout(res, 1500)); // a heartbeat interval
  final.kill('SIGTERM');
  const r = await final.exited(30_000);
  assert.equal(r.code, 0, `exit code after SIGTERM ${r.code} (signal ${r.signal}); output tail:\n${(r.stdout + r.stderr).slice(-3000)}`);
  const slot = await source.query(
    `SELECT confirmed_flush_lsn::text AS confirmed, pg_current_wal_lsn()::text AS current,
            pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag,
            confirmed_flush_lsn >= $2::pg_lsn AS past_stop, active
       FROM pg_replication_slots WHERE slot_name = $1`,
    [SLOT, lsnBeforeStop],
  );
  assert.equal(slot.rowCount, 1, 'the slot exists');
  const s = slot.rows[0];
  note(`after exit: slot confirmed_flush_lsn ${s.confirmed}, pg_current_wal_lsn ${s.current}, lag ${s.lag} bytes (WAL before the stop: ${lsnBeforeStop})`);
  assert.equal(s.active, false);
  assert.ok(Number(s.lag) < 400_000, `slot lag after a clean stop on an idle source: ${s.lag} bytes`);
  assert.ok(s.past_stop, `confirmed_flush_lsn ${s.confirmed} is past the WAL position ${lsnBeforeStop} read before the stop`);
  await assertTablesEqual(source.url(), destination.url(), TABLE);

  // A kill during the chunks left some of its run's chunks to do: the run (resumed by the restarts)
  // ended with more than had been committed at the kill.
  const runs = new Map(
    (await destination.query(`SELECT id::int AS id, chunks::int AS chunks FROM _sluice.runs WHERE pipeline = 'test'`)).rows.map((x) => [x.id as number, x.chunks as number]),
  );
  assert.ok(
    midChunks.some((x) => x.runId !== null && x.chunksDone < (runs.get(x.runId) ?? 0)),
    `a kill with chunks left to do: ${JSON.stringify(midChunks)}; runs ${JSON.stringify([...runs])}`,
  );
  passed = true;
});
