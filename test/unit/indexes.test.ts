import assert from 'node:assert/strict';
import { test } from 'node:test';
import { targetIndexSql } from '../../src/destinations/postgres/indexes.js';
import type { SourceIndex } from '../../src/sources/postgres/indexes.js';

const base: SourceIndex = {
  name: 'ix',
  definition: '',
  body: 'USING btree (a)',
  unique: false,
  partial: false,
  expression: false,
  method: 'btree',
  constraint: null,
  valid: true,
};

test('a source index is placed on the destination table under its own name', () => {
  assert.equal(targetIndexSql(base, { schema: 'dst', name: 'T' }), 'CREATE INDEX IF NOT EXISTS "ix" ON "dst"."T" USING btree (a)');
});

test('a unique index is built without UNIQUE and without NULLS NOT DISTINCT', () => {
  const u = { ...base, unique: true, body: 'USING btree (a) NULLS NOT DISTINCT WHERE (a > 0)' };
  assert.equal(targetIndexSql(u, { schema: 's', name: 't' }), 'CREATE INDEX IF NOT EXISTS "ix" ON "s"."t" USING btree (a) WHERE (a > 0)');
});

test('a definition that could not be cut yields no statement', () => {
  assert.equal(targetIndexSql({ ...base, body: '' }, { schema: 's', name: 't' }), null);
});
