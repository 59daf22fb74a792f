import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  applyFillSql,
  createBatchTableSql,
  createLoadTableSql,
  createTableSql,
  dedupedSelectSql,
  dropUnresolvedSql,
  insertDedupedSql,
  mergeBatchSql,
  quoteLiteral,
  swapSql,
  truncateSql,
  unknownValuesSql,
  upsertDedupedSql,
} from '../../src/destinations/duckdb/dialect.js';
import { duckTypeOfBuiltin, type DuckColumn } from '../../src/destinations/duckdb/types.js';

const c = (name: string, typeSql: string, notNull = false): DuckColumn => ({ name, type: duckTypeOfBuiltin(typeSql), notNull });
const columns = [c('id', 'bigint', true), c('Note', 'text'), c('amount', 'numeric(12,2)', true)];
const key = ['id'];
const live = { schema: 'main', name: 'orders' };
const load = { schema: 'main', name: 'orders__sluice_load' };

test('a table has its columns and no key; a load table adds the load sequence', () => {
  assert.equal(createTableSql(live, columns), 'CREATE TABLE "main"."orders" (\n  "id" BIGINT NOT NULL,\n  "Note" VARCHAR,\n  "amount" DECIMAL(12,2) NOT NULL\n)');
  assert.equal(
    createLoadTableSql(load, columns),
    'CREATE TABLE "main"."orders__sluice_load" (\n  "id" BIGINT NOT NULL,\n  "Note" VARCHAR,\n  "amount" DECIMAL(12,2) NOT NULL,\n  _sluice_seq BIGINT NOT NULL\n)',
  );
});

test('the one dedupe keeps the copy with the highest load sequence per key', () => {
  assert.equal(
    dedupedSelectSql(load, columns, ['id', 'Note']),
    'SELECT "id", "Note", "amount" FROM "main"."orders__sluice_load" QUALIFY row_number() OVER (PARTITION BY "id", "Note" ORDER BY _sluice_seq DESC, rowid DESC) = 1',
  );
  assert.equal(
    insertDedupedSql(live, load, columns, key),
    'INSERT INTO "main"."orders" ("id", "Note", "amount") SELECT "id", "Note", "amount" FROM "main"."orders__sluice_load" QUALIFY row_number() OVER (PARTITION BY "id" ORDER BY _sluice_seq DESC, rowid DESC) = 1',
  );
  assert.equal(
    upsertDedupedSql(live, load, columns, key),
    'MERGE INTO "main"."orders" AS t USING (SELECT "id", "Note", "amount" FROM "main"."orders__sluice_load" QUALIFY row_number() OVER (PARTITION BY "id" ORDER BY _sluice_seq DESC, rowid DESC) = 1) AS s ON (t."id" = s."id")' +
      ' WHEN MATCHED THEN UPDATE SET "Note" = s."Note", "amount" = s."amount" WHEN NOT MATCHED THEN INSERT ("id", "Note", "amount") VALUES (s."id", s."Note", s."amount")',
  );
});

test('a batch: a nullable temp table with op, mask and old key; one MERGE with a delete marker and unchanged columns kept', () => {
  assert.equal(
    createBatchTableSql('_sluice_batch', columns),
    'CREATE OR REPLACE TEMP TABLE "_sluice_batch" ("id" BIGINT, "Note" VARCHAR, "amount" DECIMAL(12,2), _sluice_op VARCHAR NOT NULL, _sluice_unchanged VARCHAR, _sluice_from VARCHAR)',
  );
  assert.equal(
    mergeBatchSql(live, '_sluice_batch', columns, key),
    'MERGE INTO "main"."orders" AS t USING temp.main."_sluice_batch" AS s ON (t."id" = s."id")' +
      ` WHEN MATCHED AND s._sluice_op = 'd' THEN DELETE` +
      ` WHEN MATCHED THEN UPDATE SET "Note" = CASE WHEN substr(coalesce(s._sluice_unchanged, ''), 2, 1) = '1' THEN t."Note" ELSE s."Note" END,` +
      ` "amount" = CASE WHEN substr(coalesce(s._sluice_unchanged, ''), 3, 1) = '1' THEN t."amount" ELSE s."amount" END` +
      ` WHEN NOT MATCHED AND s._sluice_op = 'u' THEN INSERT ("id", "Note", "amount") VALUES (s."id", s."Note", s."amount")`,
  );
  // A table of key columns only: no UPDATE clause.
  assert.equal(
    mergeBatchSql(live, 'b', [c('a', 'integer'), c('b', 'text')], ['a', 'b']),
    `MERGE INTO "main"."orders" AS t USING temp.main."b" AS s ON (t."a" = s."a" AND t."b" = s."b") WHEN MATCHED AND s._sluice_op = 'd' THEN DELETE WHEN NOT MATCHED AND s._sluice_op = 'u' THEN INSERT ("a", "b") VALUES (s."a", s."b")`,
  );
});

test('left-out values the destination cannot supply are found, filled, or dropped', () => {
  assert.equal(
    unknownValuesSql(live, '_sluice_batch', key),
    `SELECT CAST(s."id" AS VARCHAR) AS "id", s._sluice_unchanged AS mask FROM temp.main."_sluice_batch" AS s WHERE s._sluice_op = 'u' AND s._sluice_unchanged IS NOT NULL` +
      ` AND (s._sluice_from IS NOT NULL OR NOT EXISTS (SELECT 1 FROM "main"."orders" AS t WHERE t."id" = s."id"))`,
  );
  assert.equal(
    applyFillSql('_sluice_batch', '_sluice_fill', columns, key),
    `UPDATE temp.main."_sluice_batch" AS s SET "Note" = f."Note", "amount" = f."amount", _sluice_unchanged = NULL FROM temp.main."_sluice_fill" AS f WHERE s."id" = f."id"`,
  );
  assert.deepEqual(dropUnresolvedSql(live, '_sluice_batch', key), [
    `DELETE FROM "main"."orders" AS t USING temp.main."_sluice_batch" AS s WHERE t."id" = s."id" AND s._sluice_op = 'u' AND s._sluice_unchanged IS NOT NULL AND s._sluice_from IS NOT NULL`,
    `DELETE FROM temp.main."_sluice_batch" AS s WHERE s._sluice_op = 'u' AND s._sluice_unchanged IS NOT NULL` +
      ` AND (s._sluice_from IS NOT NULL OR NOT EXISTS (SELECT 1 FROM "main"."orders" AS t WHERE t."id" = s."id"))`,
  ]);
});

test('the swap renames in the schema, keeping or dropping the old table; truncate', () => {
  assert.deepEqual(swapSql(live, { schema: 'main', name: 'orders__sluice_staging' }, 'orders__sluice_archive_7'), [
    'ALTER TABLE "main"."orders" RENAME TO "orders__sluice_archive_7"',
    'ALTER TABLE "main"."orders__sluice_staging" RENAME TO "orders"',
  ]);
  assert.deepEqual(swapSql(live, { schema: 'main', name: 's' }, null), ['DROP TABLE IF EXISTS "main"."orders"', 'ALTER TABLE "main"."s" RENAME TO "orders"']);
  assert.equal(truncateSql({ schema: 'a"b', name: 't' }), 'TRUNCATE "a""b"."t"');
  assert.equal(quoteLiteral("it's"), "'it''s'");
  assert.throws(() => quoteLiteral('a\0b'), /NUL/);
});
