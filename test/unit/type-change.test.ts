import assert from 'node:assert/strict';
import { test } from 'node:test';
import { columnAction, parseType, typeChange } from '../../src/destinations/postgres/type-change.js';

const kind = (from: string, to: string) => typeChange(from, to).kind;

test('format_type output parses into name, modifiers and array dimensions', () => {
  assert.deepEqual(parseType('character varying(120)'), { name: 'character varying', mods: [120], arrayDims: 0 });
  assert.deepEqual(parseType('numeric(12,2)'), { name: 'numeric', mods: [12, 2], arrayDims: 0 });
  assert.deepEqual(parseType('timestamp(3) without time zone'), { name: 'timestamp without time zone', mods: [3], arrayDims: 0 });
  assert.deepEqual(parseType('integer[]'), { name: 'integer', mods: [], arrayDims: 1 });
  assert.deepEqual(parseType('varchar(5)[]'), { name: 'character varying', mods: [5], arrayDims: 1 });
});

test('golden cases', () => {
  assert.equal(kind('character varying(120)', 'character varying(300)'), 'widen');
  assert.equal(kind('character varying(300)', 'character varying(120)'), 'narrow');
  assert.equal(kind('character varying(120)', 'text'), 'widen');
  assert.equal(kind('numeric(10,2)', 'numeric(12,2)'), 'widen');
  // Same precision, larger scale: two integer digits fewer (9999999999.99 no longer fits).
  assert.equal(kind('numeric(12,2)', 'numeric(12,4)'), 'narrow');
  assert.equal(kind('integer', 'bigint'), 'widen');
  assert.equal(kind('bigint', 'integer'), 'narrow');
  assert.equal(kind('text', 'integer'), 'incompatible');
  assert.equal(kind('smallint', 'integer'), 'widen');
  assert.equal(kind('timestamp without time zone', 'timestamp with time zone'), 'incompatible');
});

test('the same type is no change', () => {
  assert.equal(kind('character varying(120)', 'character varying(120)'), 'same');
  assert.equal(kind('numeric', 'numeric'), 'same');
  assert.equal(kind('integer[]', 'integer[]'), 'same');
});

test('strings', () => {
  assert.equal(kind('character varying(120)', 'character varying'), 'widen');
  assert.equal(kind('text', 'character varying'), 'widen');
  assert.equal(kind('character varying', 'text'), 'widen');
  assert.equal(kind('text', 'character varying(10)'), 'narrow');
  assert.equal(kind('character(5)', 'character(8)'), 'widen');
  assert.equal(kind('character(8)', 'character(5)'), 'narrow');
  assert.equal(kind('character(5)', 'text'), 'widen');
  assert.equal(kind('text', 'character(5)'), 'incompatible');
  assert.equal(kind('bit varying(4)', 'bit varying(8)'), 'widen');
  assert.equal(kind('bit(4)', 'bit(8)'), 'incompatible');
  assert.equal(kind('bit(4)', 'bit varying(4)'), 'widen');
});

test('numbers', () => {
  assert.equal(kind('numeric(10,2)', 'numeric(12,3)'), 'widen');
  assert.equal(kind('numeric(10,2)', 'numeric(10,1)'), 'narrow');
  assert.equal(kind('numeric(10,2)', 'numeric'), 'widen');
  assert.equal(kind('numeric', 'numeric(30,10)'), 'narrow');
  assert.equal(kind('integer', 'numeric(10,0)'), 'widen');
  assert.equal(kind('integer', 'numeric(9,0)'), 'narrow');
  assert.equal(kind('bigint', 'numeric'), 'widen');
  assert.equal(kind('integer', 'double precision'), 'widen');
  assert.equal(kind('bigint', 'double precision'), 'narrow');
  assert.equal(kind('real', 'double precision'), 'widen');
  assert.equal(kind('double precision', 'real'), 'narrow');
  assert.equal(kind('numeric(10,2)', 'integer'), 'narrow');
  assert.equal(kind('integer', 'text'), 'incompatible');
});

test('date and time', () => {
  assert.equal(kind('timestamp(3) without time zone', 'timestamp without time zone'), 'widen');
  assert.equal(kind('timestamp with time zone', 'timestamp(0) with time zone'), 'narrow');
  assert.equal(kind('timestamp with time zone', 'timestamp without time zone'), 'incompatible');
  assert.equal(kind('time(2) without time zone', 'time(4) without time zone'), 'widen');
  assert.equal(kind('date', 'timestamp without time zone'), 'widen');
  assert.equal(kind('date', 'timestamp with time zone'), 'incompatible');
});

test('arrays follow their elements; an array never becomes a scalar', () => {
  assert.equal(kind('integer[]', 'bigint[]'), 'widen');
  assert.equal(kind('character varying(5)[]', 'character varying(3)[]'), 'narrow');
  assert.equal(kind('integer', 'integer[]'), 'incompatible');
});

test('a verdict says what changes', () => {
  const v = typeChange('character varying(300)', 'character varying(120)');
  assert.equal(v.kind, 'narrow');
  assert.match((v as { why: string }).why, /character varying\(300\) → character varying\(120\): the length limit shrinks/);
});

test('what the destination column gets when the source changed its type', () => {
  const act = (from: string | null, to: string, dest: string) => columnAction(from, to, dest).action;
  // The source widened: the destination follows, unless it already holds every value.
  assert.equal(act('character varying(120)', 'character varying(300)', 'character varying(120)'), 'alter');
  assert.equal(act('character varying(120)', 'character varying(300)', 'character varying(300)'), 'keep');
  assert.equal(act('character varying(120)', 'character varying(300)', 'text'), 'keep');
  assert.equal(act('integer', 'bigint', 'integer'), 'alter');
  // The source narrowed or changed kind: stop, unless the destination was already changed to match.
  assert.equal(act('character varying(300)', 'character varying(120)', 'character varying(300)'), 'stop');
  assert.equal(act('character varying(300)', 'character varying(120)', 'character varying(120)'), 'keep');
  assert.equal(act('text', 'integer', 'text'), 'stop');
  assert.equal(act('timestamp without time zone', 'timestamp with time zone', 'timestamp without time zone'), 'stop');
  // Widened on the source, but the destination column is something sluice cannot widen to it.
  assert.equal(act('numeric(10,2)', 'numeric(12,2)', 'numeric(12,4)'), 'stop');
  // The earlier type unknown: widen what is narrower, leave the rest (a destination made so by its owner).
  assert.equal(act(null, 'character varying(300)', 'character varying(120)'), 'alter');
  assert.equal(act(null, 'character varying(120)', 'character varying(300)'), 'keep');
  assert.equal(act(null, 'jsonb', 'text'), 'keep');
  const stop = columnAction('bigint', 'integer', 'bigint');
  assert.equal(stop.action, 'stop');
  assert.match((stop as { why: string }).why, /^narrowed \(bigint → integer: a smaller integer type\)$/);
});
