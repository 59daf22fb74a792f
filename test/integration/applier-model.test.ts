/**
 * Model-based test of the Applier and the embedded change log (contracts 2 and 5, and the
 * replay after a backfill): random sequences of source transactions (inserts, updates that leave a
 * TOASTed value out, updates of it, primary-key changes, deletes, truncates), apply steps that stop
 * at batch boundaries (batches of 1-5 rows split transactions and key histories), crashes of the
 * Applier, and backfills whose chunks copy the source as it is at a later time than L0 (and may
 * miss rows written since L0, as a ctid load can), so the replay runs over a destination that is
 * ahead of it. At the end everything is applied and the destination, read with plain SQL, must
 * equal the reference model of the source.
 *
 * The harness is test/support/applier-world.ts. Runs are reproducible: the seed is fixed unless
 * SLUICE_FC_SEED is set; SLUICE_FC_RUNS changes the number of runs; a failure prints the seed, the
 * shrunk sequence and a trace (SLUICE_FC_PATH=<path> with the seed replays the shrunk case only;
 * SLUICE_FC_VERBOSE=1 prints the trace of every run).
 */
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import type pg from 'pg';
import { ensureStateSchema } from '../../src/destinations/postgres/state.js';
import { introspectTable } from '../../src/sources/postgres/introspect.js';
import { startClusters, type Cluster } from '../support/clusters.js';
import { ApplierWorld, openClients } from '../support/applier-world.js';
import { COMPOSITE_KEY, INT_KEY, MAX_ID, tableDdl, type RowOp, type Variant } from '../support/source-model.js';

const SEED = process.env.SLUICE_FC_SEED ? Number(process.env.SLUICE_FC_SEED) : 20261130;
const PATH = process.env.SLUICE_FC_PATH;
const RUNS = process.env.SLUICE_FC_RUNS ? Number(process.env.SLUICE_FC_RUNS) : undefined;
const VERBOSE = process.env.SLUICE_FC_VERBOSE === '1';

type Op =
  | { k: 'txn'; ops: RowOp[]; flush: boolean }
  | { k: 'apply'; batches: number }
  | { k: 'drain' }
  | { k: 'idle' }
  | { k: 'crash' }
  | { k: 'bfBegin'; mode: 'upsert' | 'truncate' }
  | { k: 'bfChunk'; miss: boolean }
  | { k: 'bfFinish' }
  | { k: 'check' };

const id = fc.integer({ min: 1, max: MAX_ID });
const pick = fc.nat({ max: 50 });
const n = fc.integer({ min: 0, max: 9 });
/** 'T…' values are TOASTed (left out of updates that do not change them), 's…' inline. */
const t = fc.constantFrom<string | null>('T1', 'T2', 'T3', 'T4', 's1', null);

/** Mostly flushed at once; an unflushed transaction is invisible to the Applier and lost by a crash (then sent again). */
const flush = fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) });

const rowOp: fc.Arbitrary<RowOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('ins' as const), id, n, t }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('setN' as const), pick, n }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('setT' as const), pick, t }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('rekey' as const), pick, to: id }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('rekey' as const), pick, to: id, t }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('del' as const), pick }) },
  { weight: 1, arbitrary: fc.constant({ op: 'trunc' as const }) },
);

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ k: fc.constant('txn' as const), ops: fc.array(rowOp, { minLength: 1, maxLength: 4 }), flush }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('apply' as const), batches: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'drain' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'idle' as const }) },
  { weight: 2, arbitrary: fc.constant({ k: 'crash' as const }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('bfBegin' as const), mode: fc.constantFrom('upsert' as const, 'truncate' as const) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('bfChunk' as const), miss: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ k: 'bfFinish' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'check' as const }) },
);

async function runOps(w: ApplierWorld, ops: readonly Op[]): Promise<void> {
  for (const o of ops) {
    switch (o.k) {
      case 'txn':
        await w.txn(o.ops, o.flush);
        break;
      case 'apply':
        await w.apply(o.batches);
        break;
      case 'drain':
        await w.apply(Infinity);
        break;
      case 'idle':
        await w.idle();
        break;
      case 'crash':
        await w.crash();
        break;
      case 'bfBegin':
        await w.backfillBegin(o.mode);
        break;
      case 'bfChunk':
        await w.backfillChunk(o.miss);
        break;
      case 'bfFinish':
        await w.backfillFinish();
        break;
      case 'check':
        await w.settleAndCompare('check');
        break;
    }
  }
  await w.settleAndCompare('end');
}

/**
 * Sequences always run first: primary-key changes that leave a TOASTed value out, replayed over a
 * destination that a backfill loaded after them (the old key's row there is newer, or missing).
 */
const insert1: Op = { k: 'txn', ops: [{ op: 'ins', id: 1, n: 1, t: 'T1' }], flush: true };
const rekey = (to: number): RowOp => ({ op: 'rekey', pick: 0, to });
const EXAMPLES: [number, Op[]][] = [
  // The key moves away and a new row takes the old key: the old key's row in the destination is newer.
  [1, [insert1, { k: 'drain' }, { k: 'bfBegin', mode: 'truncate' }, { k: 'txn', ops: [rekey(2)], flush: true }, { k: 'txn', ops: [{ op: 'ins', id: 1, n: 2, t: 'T3' }], flush: true }]],
  [1, [insert1, { k: 'drain' }, { k: 'bfBegin', mode: 'upsert' }, { k: 'txn', ops: [rekey(2)], flush: true }, { k: 'txn', ops: [{ op: 'ins', id: 1, n: 2, t: 'T3' }], flush: true }, { k: 'drain' }]],
  // The key moves twice: the middle key is in neither the destination nor the source.
  [1, [insert1, { k: 'bfBegin', mode: 'truncate' }, { k: 'txn', ops: [rekey(2), rekey(3)], flush: true }]],
  [1, [insert1, { k: 'drain' }, { k: 'bfBegin', mode: 'upsert' }, { k: 'txn', ops: [rekey(2)], flush: true }, { k: 'txn', ops: [rekey(3)], flush: true }, { k: 'drain' }, { k: 'bfFinish' }]],
];

let source: Cluster;
let destination: Cluster;
let stopAll: () => Promise<void>;
let clients: { src: pg.Client; dst: pg.Client };

before(async () => {
  ({ source, destination, stopAll } = await startClusters());
  for (const v of [INT_KEY, COMPOSITE_KEY]) {
    await source.query(tableDdl(v));
    await destination.query(tableDdl(v));
  }
  clients = await openClients({ source: source.url(), destination: destination.url() });
  await ensureStateSchema(clients.dst);
});

after(async () => {
  await clients?.src.end().catch(() => {});
  await clients?.dst.end().catch(() => {});
  await stopAll?.();
});

async function property(v: Variant, seed: number, numRuns: number): Promise<void> {
  const info = await introspectTable(clients.src, { schema: 'public', name: v.table });
  const urls = { source: source.url(), destination: destination.url() };
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 5 }), fc.array(op, { maxLength: 30, size: 'max' }), async (batchRows, ops) => {
      const w = await ApplierWorld.create(v, clients, info, urls, batchRows);
      try {
        await runOps(w, ops);
      } catch (err) {
        throw new Error(`${(err as Error).message}\nbatchRows ${batchRows}; trace:\n${w.trace.join('\n')}`);
      } finally {
        await w.dispose();
        if (VERBOSE) console.log(`batchRows ${batchRows}\n${w.trace.join('\n')}\n----`);
      }
    }),
    { seed, numRuns: RUNS ?? numRuns, examples: EXAMPLES, includeErrorInReport: true, ...(PATH ? { path: PATH, endOnFailure: true } : {}) },
  );
}

test('the Applier converges to the source over random changes, batch splits, crashes and replays (int key)', { timeout: 600_000 }, async () => {
  await property(INT_KEY, SEED, 50);
});

test('the same with a composite primary key', { timeout: 600_000 }, async () => {
  await property(COMPOSITE_KEY, SEED + 1, 20);
});
