/**
 * The DuckDB destination's pure pieces: COPY text parsing (what a chunk arrives in), the DuckDB
 * column type read back from the file's catalog, a column's constant DEFAULT for existing rows, and
 * the key bounds of verify's ranges (also run by an in-memory DuckDB).
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { duckTypeOfColumn } from '../../src/destinations/duckdb/catalog.js';
import { copyTextField, readCopyText } from '../../src/destinations/duckdb/copy-text.js';
import { literalDefault } from '../../src/destinations/duckdb/defaults.js';
import { columnCommentsSql, MONEY_COMMENT } from '../../src/destinations/duckdb/dialect.js';
import { keyBoundSql } from '../../src/destinations/duckdb/range-hashes.js';
import { duckTypeOfBuiltin } from '../../src/destinations/duckdb/types.js';

test('COPY text fields: NULL, backslash escapes, octal and hex bytes, multi-byte UTF-8', () => {
  assert.equal(copyTextField('\\N'), null);
  assert.equal(copyTextField('plain'), 'plain');
  assert.equal(copyTextField('a\\tb\\nc\\\\d\\re'), 'a\tb\nc\\d\re');
  assert.equal(copyTextField('\\b\\f\\v'), '\b\f\v');
  assert.equal(copyTextField('\\101\\x42C'), 'ABC');
  // é as two escaped bytes, then as itself.
  assert.equal(copyTextField('\\xc3\\xa9 é'), 'é é');
  assert.equal(copyTextField('\\\\N'), '\\N');
  assert.equal(copyTextField(''), '');
});

test('COPY text rows split at newlines across stream chunks, including inside a multi-byte character', async () => {
  const text = Buffer.from('1\tzoë\t\\N\n2\ta\\tb\t\n');
  const cut = text.indexOf(Buffer.from('ë')) + 1; // between the two bytes of ë
  const rows = await readCopyText(Readable.from([text.subarray(0, cut), text.subarray(cut, 9), text.subarray(9)]));
  assert.deepEqual(rows, [
    ['1', 'zoë', null],
    ['2', 'a\tb', ''],
  ]);
  assert.deepEqual(await readCopyText(Readable.from([])), []);
});

test('a DuckDB column type read back from the catalog converts values as the type it was made from', () => {
  for (const pgType of ['integer', 'text', 'jsonb', 'bytea', 'date', 'numeric(12,3)', 'timestamp without time zone', 'timestamp with time zone', 'interval', 'uuid', 'bit(3)']) {
    const made = duckTypeOfBuiltin(pgType);
    const dataType = made.sql === 'TIMESTAMPTZ' ? 'TIMESTAMP WITH TIME ZONE' : made.sql;
    assert.deepEqual(duckTypeOfColumn(dataType, null), made, pgType);
  }
  // money's DECIMAL(19,2) says so by its comment.
  assert.deepEqual(duckTypeOfColumn('DECIMAL(19,2)', MONEY_COMMENT), duckTypeOfBuiltin('money'));
  assert.equal(duckTypeOfColumn('DECIMAL(19,2)', null).kind, 'decimal');
  assert.deepEqual(columnCommentsSql({ schema: 'main', name: 't' }, [{ name: 'price', type: duckTypeOfBuiltin('money'), notNull: false }, { name: 'n', type: duckTypeOfBuiltin('integer'), notNull: false }]), [
    `COMMENT ON COLUMN "main"."t"."price" IS 'sluice:money'`,
  ]);
});

test("an added column's constant DEFAULT is the value existing rows get; an expression gives none", () => {
  assert.equal(literalDefault(null), null);
  assert.equal(literalDefault("'seven'::text"), 'seven');
  assert.equal(literalDefault("'it''s'::character varying"), "it's");
  assert.equal(literalDefault("''::text"), '');
  assert.equal(literalDefault('42'), '42');
  assert.equal(literalDefault("'-1.5'::numeric"), '-1.5');
  assert.equal(literalDefault('(-3)'), '-3');
  assert.equal(literalDefault('true'), 'true');
  assert.equal(literalDefault('now()'), null);
  assert.equal(literalDefault("nextval('s'::regclass)"), null);
});

test('key bounds of a verify range: one column, and a composite key compared lexicographically (DuckDB runs them)', async () => {
  const id = { name: 'id', type: duckTypeOfBuiltin('integer'), notNull: true };
  const code = { name: 'code', type: duckTypeOfBuiltin('text'), notNull: true };
  assert.equal(keyBoundSql([id], ['5'], '>'), `"id" > CAST('5' AS INTEGER)`);
  assert.equal(
    keyBoundSql([id, code], ['1', "o'k"], '<='),
    `(("id" < CAST('1' AS INTEGER)) OR ("id" = CAST('1' AS INTEGER) AND "code" < CAST('o''k' AS VARCHAR)) OR ("id" = CAST('1' AS INTEGER) AND "code" = CAST('o''k' AS VARCHAR)))`,
  );
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  try {
    await c.run(`CREATE TABLE t (id INTEGER, code VARCHAR)`);
    await c.run(`INSERT INTO t VALUES (1, 'a'), (1, 'b'), (1, 'c'), (2, 'a'), (2, 'b'), (3, 'a')`);
    const where = `${keyBoundSql([id, code], ['1', 'b'], '>')} AND ${keyBoundSql([id, code], ['2', 'b'], '<=')}`;
    const rows = (await c.runAndReadAll(`SELECT id, code FROM t WHERE ${where} ORDER BY id, code`)).getRowsJS();
    assert.deepEqual(rows, [
      [1, 'c'],
      [2, 'a'],
      [2, 'b'],
    ]);
  } finally {
    c.closeSync();
    db.closeSync();
  }
});
