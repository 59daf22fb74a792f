import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compact, compactKey } from '../../src/pipeline/applier.js';
import { Lsn, type CapturedValue, type Change, type RelationColumns } from '../../src/core/types.js';

const rel: RelationColumns = { names: ['id', 'v', 'big'], typeOids: [20, 25, 25], keyIndexes: [0] };
let n = 0;
function ch(kind: Change['kind'], row?: CapturedValue[], oldKey?: (string | null)[]): Change {
  return { position: { lsn: Lsn.of(100), idx: n++ }, table: 'public.t', kind, relationVersion: 1, row, oldKey, commitTimeMs: 0 };
}

test('the last image of a key wins; inserts then deletes cancel out into a delete', () => {
  const { upserts, deletes } = compact([ch('insert', ['1', 'a', 'x']), ch('update', ['1', 'b', 'x']), ch('insert', ['2', 'c', 'y']), ch('delete', undefined, ['2'])], rel, [0]);
  assert.deepEqual([...upserts.values()].map((i) => i.row), [['1', 'b', 'x']]);
  assert.deepEqual([...deletes.values()], [['2']]);
});

test('an unchanged TOASTed value is filled from an earlier image in the batch', () => {
  const { upserts } = compact([ch('insert', ['1', 'a', 'BIG']), ch('update', ['1', 'b', false])], rel, [0]);
  assert.deepEqual(upserts.get(compactKey(['1']))!.row, ['1', 'b', 'BIG']);
});

test('an unchanged value with no earlier image stays unchanged (the destination keeps its value)', () => {
  const { upserts } = compact([ch('update', ['1', 'b', false])], rel, [0]);
  assert.deepEqual(upserts.get(compactKey(['1'])), { row: ['1', 'b', false] });
});

test('a key change is a delete of the old key plus an upsert of the new one, filled from the old row', () => {
  const { upserts, deletes } = compact([ch('update', ['2', 'b', false], ['1'])], rel, [0]);
  assert.deepEqual([...deletes.values()], [['1']]);
  assert.deepEqual(upserts.get(compactKey(['2'])), { row: ['2', 'b', false], fromKey: ['1'] });
});

test('a key change after an in-batch image takes the unchanged value from that image', () => {
  const { upserts, deletes } = compact([ch('insert', ['1', 'a', 'BIG']), ch('update', ['2', 'a', false], ['1'])], rel, [0]);
  assert.deepEqual(upserts.get(compactKey(['2'])), { row: ['2', 'a', 'BIG'] });
  assert.ok(deletes.has(compactKey(['1'])));
  assert.ok(!upserts.has(compactKey(['1'])));
});

test('a key changed away and back ends as one upsert, not a delete', () => {
  const { upserts, deletes } = compact([ch('update', ['2', 'a', 'x'], ['1']), ch('update', ['1', 'a', 'x'], ['2'])], rel, [0]);
  assert.deepEqual([...upserts.keys()], [compactKey(['1'])]);
  assert.deepEqual([...deletes.keys()], [compactKey(['2'])]);
});

test('REPLICA IDENTITY FULL: the old "key" is the whole old row; an unchanged key is a plain update', () => {
  const { upserts, deletes } = compact([ch('update', ['1', 'b', 'x'], ['1', 'a', 'x'])], rel, [0]);
  assert.equal(deletes.size, 0);
  assert.deepEqual(upserts.get(compactKey(['1'])), { row: ['1', 'b', 'x'] });
});

test('two key changes of a row whose TOASTed value was left unchanged keep filling from the first old key', () => {
  const { upserts, deletes } = compact([ch('update', ['35', 'b', false]), ch('update', ['1035', 'b', false], ['35']), ch('update', ['2035', 'b', false], ['1035'])], rel, [0]);
  assert.deepEqual(upserts.get(compactKey(['2035'])), { row: ['2035', 'b', false], fromKey: ['35'] });
  assert.deepEqual([...deletes.keys()].sort(), [compactKey(['1035']), compactKey(['35'])]);
});
