/**
 * planCollations: which COLLATE each destination column gets so that it sorts as the source's does.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planCollations, sameOrdering } from '../../src/destinations/postgres/collations.js';
import { createTableSql } from '../../src/destinations/postgres/dialect.js';
import type { CollationInfo, ColumnInfo } from '../../src/sources/postgres/introspect.js';

const coll = (schema: string, name: string, provider: string, locale: string, extra: Partial<CollationInfo> = {}): CollationInfo => ({
  schema,
  name,
  provider,
  locale,
  deterministic: true,
  isDefault: false,
  ...extra,
});
const dbDefault = (provider: string, locale: string) => coll('pg_catalog', 'default', provider, locale, { isDefault: true });
const col = (name: string, collation: CollationInfo | null): ColumnInfo => ({
  name,
  attnum: 1,
  typeOid: 25,
  typeSql: 'text',
  notNull: false,
  defaultSql: null,
  generatedSql: null,
  support: 'builtin',
  binarySafe: true,
  collation,
});
const available = [
  coll('pg_catalog', 'C', 'c', 'C'),
  coll('pg_catalog', 'POSIX', 'c', 'POSIX'),
  coll('pg_catalog', 'en_US.utf8', 'c', 'en_US.utf8'),
  coll('pg_catalog', 'und-x-icu', 'i', 'und'),
  coll('pg_catalog', 'en-US-x-icu', 'i', 'en-US'),
  coll('app', 'ci', 'i', 'und-u-ks-level2', { deterministic: false }),
];

test('ordering equivalence: byte order across providers, locale spelling, determinism', () => {
  assert.ok(sameOrdering(dbDefault('c', 'POSIX'), coll('pg_catalog', 'C', 'c', 'C')));
  assert.ok(sameOrdering(dbDefault('b', 'C'), coll('pg_catalog', 'C', 'c', 'C')));
  assert.ok(sameOrdering(dbDefault('b', 'C.UTF-8'), coll('pg_catalog', 'C', 'c', 'C')), 'code point order is UTF-8 byte order');
  assert.ok(sameOrdering(dbDefault('c', 'en_US.UTF-8'), coll('pg_catalog', 'en_US.utf8', 'c', 'en_US.utf8')));
  assert.ok(!sameOrdering(dbDefault('c', 'en_US.UTF-8'), coll('pg_catalog', 'en-US-x-icu', 'i', 'en-US')), 'libc and ICU differ');
  assert.ok(!sameOrdering(dbDefault('c', 'C'), coll('pg_catalog', 'en_US.utf8', 'c', 'en_US.utf8')));
  assert.ok(!sameOrdering(coll('x', 'a', 'i', 'und'), coll('x', 'b', 'i', 'und', { deterministic: false })));
});

test('no clause where the destination default sorts the same; "C" for byte order; the same or an equivalent collation otherwise', () => {
  const icuDest = dbDefault('i', 'en-US');
  const plan = planCollations(
    [
      col('n', null),
      col('key', dbDefault('c', 'C')),
      col('same', coll('pg_catalog', 'en-US-x-icu', 'i', 'en-US')),
      col('icu', coll('pg_catalog', 'und-x-icu', 'i', 'und')),
      col('libc', dbDefault('c', 'en_US.UTF-8')),
      col('ci', coll('app', 'ci', 'i', 'und-u-ks-level2', { deterministic: false })),
      col('moved', coll('public', 'root', 'i', 'und')),
      col('orphan', coll('public', 'phonebook', 'i', 'de-u-co-phonebk')),
    ],
    icuDest,
    available,
  );
  assert.deepEqual(Object.fromEntries(plan.clauses), {
    key: '"C"',
    icu: '"pg_catalog"."und-x-icu"',
    libc: '"pg_catalog"."en_US.utf8"',
    ci: '"app"."ci"',
    moved: '"pg_catalog"."und-x-icu"',
  });
  assert.equal(plan.warnings.length, 1);
  assert.match(plan.warnings[0], /^column orphan: the source sorts it by public\.phonebook \(ICU de-u-co-phonebk\) .* it gets the database default \(ICU en-US\)/);
  // The same columns into a "C" destination: only the non-byte ones need a clause.
  const c = planCollations([col('key', dbDefault('c', 'POSIX')), col('icu', coll('pg_catalog', 'und-x-icu', 'i', 'und'))], dbDefault('c', 'C'), available);
  assert.deepEqual(Object.fromEntries(c.clauses), { icu: '"pg_catalog"."und-x-icu"' });
});

test('create table writes the clause after the type', () => {
  assert.equal(
    createTableSql({ schema: 'public', name: 't' }, [col('k', null), col('v', null)], ['k'], new Map([['k', '"C"']])),
    'CREATE TABLE "public"."t" (\n  "k" text COLLATE "C",\n  "v" text,\n  PRIMARY KEY ("k")\n)',
  );
});
