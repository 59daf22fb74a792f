/**
 * Keyset chunks in flight together commit in key order (src/pipeline/ordered-commits.ts): a chunk
 * waits for the one planned before it, a retried chunk keeps its turn, and when the load fails for
 * good a waiting chunk gives up instead of waiting forever.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Chunk, Planner } from '../../src/pipeline/chunking.js';
import { OrderedCommits } from '../../src/pipeline/ordered-commits.js';

function planner(n: number): Planner {
  let i = 0;
  return {
    strategy: 'keyset',
    parallelism: 2,
    async next() {
      if (i >= n) return null;
      i++;
      return { range: { kind: 'key', after: i === 1 ? null : [String(i - 1)], upTo: i === n ? null : [String(i)] }, expectedRows: 1 };
    },
    done() {},
  };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

test('a chunk commits only after the chunk planned before it; a retry keeps its turn', async () => {
  const oc = new OrderedCommits();
  const p = oc.plan(planner(3));
  assert.equal(p.parallelism, 2);
  const a = (await p.next(null as never))!;
  const b = (await p.next(null as never))!;
  const c = (await p.next(null as never))!;
  assert.equal(await p.next(null as never), null);
  const order: string[] = [];
  const commit = async (name: string, ch: Chunk) => {
    await oc.waitTurn(ch);
    order.push(name);
    oc.committed(ch);
  };
  const pc = commit('c', c);
  const pb = commit('b', b);
  await tick();
  assert.deepEqual(order, [], 'b and c wait for a');
  // a's first attempt fails before its commit (no committed()): b and c keep waiting; the retry commits.
  await oc.waitTurn(a);
  await tick();
  assert.deepEqual(order, []);
  await commit('a', a);
  await Promise.all([pb, pc]);
  assert.deepEqual(order, ['a', 'b', 'c']);
});

test('when the load fails for good, chunks waiting for their turn give up with its error', async () => {
  const oc = new OrderedCommits();
  const p = oc.plan(planner(2));
  const a = (await p.next(null as never))!;
  const b = (await p.next(null as never))!;
  const waiting = oc.waitTurn(b);
  await tick();
  oc.fail(new Error('chunk a failed: permission denied'));
  await assert.rejects(waiting, /chunk a failed/);
  await assert.rejects(oc.waitTurn(a), /chunk a failed/);
});
