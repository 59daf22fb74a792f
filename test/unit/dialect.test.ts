import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  chunkBoundarySql,
  copyOutSql,
  copyTextValue,
  createTableSql,
  createUserTypeSql,
  deleteByKeysSql,
  quoteLiteral,
  upsertFromSql,
  updateKeepingUnchangedSql,
  type KeysetTable,
} from '../../src/destinations/postgres/dialect.js';
import type { ColumnInfo } from '../../src/sources/postgres/introspect.js';

const single: KeysetTable = { source: { schema: 'public', name: 'orders' }, key: ['id'], keyTypes: ['bigint'], columns: ['id', 'note'] };
const composite: KeysetTable = {
  source: { schema: 'app', name: 'Line Items' },
  key: ['order_id', 'line'],
  keyTypes: ['uuid', 'integer'],
  columns: ['order_id', 'line', 'qty'],
};

test('chunk boundary walks the key: first chunk has no lower bound', () => {
  assert.equal(
    chunkBoundarySql(single, null, 10000),
    'SELECT "id"::text FROM "public"."orders" ORDER BY "public"."orders"."id" OFFSET 9999 LIMIT 1',
  );
});

test('composite keys use row-value comparison with typed literals', () => {
  assert.equal(
    chunkBoundarySql(composite, ["6a1f'x", '7'], 500),
    `SELECT "order_id"::text, "line"::text FROM "app"."Line Items" WHERE ("order_id", "line") > ('6a1f''x'::uuid, '7'::integer) ORDER BY "app"."Line Items"."order_id", "app"."Line Items"."line" OFFSET 499 LIMIT 1`,
  );
});

test('copy out of a closed range, binary and text', () => {
  assert.equal(
    copyOutSql(single, { after: ['10'], upTo: ['20'] }, true),
    `COPY (SELECT "id", "note" FROM "public"."orders" WHERE "id" > '10'::bigint AND "id" <= '20'::bigint) TO STDOUT (FORMAT binary)`,
  );
  assert.equal(copyOutSql(single, { after: ['20'], upTo: null }, false), `COPY (SELECT "id", "note" FROM "public"."orders" WHERE "id" > '20'::bigint) TO STDOUT`);
});

test('upsert from staged rows updates non-key columns, or does nothing for key-only tables', () => {
  assert.equal(
    upsertFromSql({ schema: 'public', name: 't' }, 's', ['id', 'a'], ['id']),
    'INSERT INTO "public"."t" AS t ("id", "a") SELECT "id", "a" FROM s ON CONFLICT ("id") DO UPDATE SET "a" = EXCLUDED."a"',
  );
  assert.match(upsertFromSql({ schema: 'public', name: 't' }, 's', ['id'], ['id']), /DO NOTHING$/);
});

test('updates keep the destination value of columns marked unchanged', () => {
  assert.equal(
    updateKeepingUnchangedSql({ schema: 'public', name: 't' }, 'u', ['id', 'big'], ['id']),
    `UPDATE "public"."t" AS t SET "big" = CASE WHEN substr(s._sluice_unchanged, 2, 1) = '1' THEN t."big" ELSE s."big" END FROM u AS s WHERE t."id" = s."id"`,
  );
});

test('delete by staged keys', () => {
  assert.equal(
    deleteByKeysSql({ schema: 'public', name: 't' }, 'd', ['a', 'b']),
    'DELETE FROM "public"."t" AS t USING d AS d WHERE (t."a", t."b") = (d."a", d."b")',
  );
});

test('create table carries types, NOT NULL, defaults (not sequences), generated columns and the key', () => {
  const col = (name: string, typeSql: string, extra: Partial<ColumnInfo> = {}): ColumnInfo => ({
    name,
    attnum: 1,
    typeOid: 0,
    typeSql,
    notNull: false,
    defaultSql: null,
    generatedSql: null,
    support: 'builtin',
    binarySafe: true,
    collation: null,
    ...extra,
  });
  assert.equal(
    createTableSql(
      { schema: 'public', name: 't' },
      [
        col('id', 'bigint', { notNull: true, defaultSql: "nextval('t_id_seq'::regclass)" }),
        col('n', 'integer', { defaultSql: '7' }),
        col('d', 'integer', { generatedSql: '(n * 2)' }),
      ],
      ['id'],
    ),
    'CREATE TABLE "public"."t" (\n  "id" bigint NOT NULL,\n  "n" integer DEFAULT 7,\n  "d" integer GENERATED ALWAYS AS ((n * 2)) STORED,\n  PRIMARY KEY ("id")\n)',
  );
});

test('user types: enum and domain', () => {
  assert.equal(createUserTypeSql({ kind: 'enum', schema: 'public', name: 'mood', labels: ['a', "b'c"] }), `CREATE TYPE "public"."mood" AS ENUM ('a', 'b''c')`);
  assert.equal(
    createUserTypeSql({ kind: 'domain', schema: 'public', name: 'pos', baseSql: 'integer', notNull: true, defaultSql: '1', checks: ['CHECK ((VALUE > 0))'] }),
    'CREATE DOMAIN "public"."pos" AS integer DEFAULT 1 NOT NULL CHECK ((VALUE > 0))',
  );
});

test('COPY text encoding escapes exactly backslash, tab, newline and carriage return', () => {
  assert.equal(copyTextValue(null), '\\N');
  assert.equal(copyTextValue('plain'), 'plain');
  assert.equal(copyTextValue('a\\b\tc\nd\re'), 'a\\\\b\\tc\\nd\\re');
  assert.equal(copyTextValue('\\N'), '\\\\N');
});

test('literals double quotes and refuse NUL', () => {
  assert.equal(quoteLiteral("it's"), "'it''s'");
  assert.throws(() => quoteLiteral('a\0b'));
});
