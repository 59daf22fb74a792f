import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DuckDBDateValue, DuckDBTimestampValue } from '@duckdb/node-api';
import { classifyDuckDb, duckErrorType, lockConflictError } from '../../src/destinations/duckdb/errors.js';
import { daysFromCivil, duckColumns, duckTypeOf, duckTypeOfBuiltin, intervalParts, toDuckValue, type DuckType } from '../../src/destinations/duckdb/types.js';
import type { ColumnInfo, UserTypeDef } from '../../src/sources/postgres/introspect.js';

const sqlOf = (typeSql: string) => duckTypeOfBuiltin(typeSql).sql;

test('every type of the round-trip test has a DuckDB type', () => {
  const expected: [string, string][] = [
    ['smallint', 'SMALLINT'], ['integer', 'INTEGER'], ['bigint', 'BIGINT'],
    ['numeric', 'VARCHAR'], ['numeric(12,3)', 'DECIMAL(12,3)'], ['numeric(38,0)', 'DECIMAL(38,0)'], ['numeric(39,2)', 'VARCHAR'], ['numeric(3,-2)', 'VARCHAR'],
    ['real', 'FLOAT'], ['double precision', 'DOUBLE'], ['text', 'VARCHAR'], ['character varying(20)', 'VARCHAR'], ['character(5)', 'VARCHAR'],
    ['bytea', 'BLOB'], ['boolean', 'BOOLEAN'], ['date', 'DATE'], ['time without time zone', 'TIME'], ['time with time zone', 'TIMETZ'],
    ['timestamp without time zone', 'TIMESTAMP'], ['timestamp(3) with time zone', 'TIMESTAMPTZ'], ['timestamp with time zone', 'TIMESTAMPTZ'],
    ['interval', 'INTERVAL'], ['interval day to second', 'INTERVAL'], ['uuid', 'UUID'], ['json', 'JSON'], ['jsonb', 'JSON'],
    ['integer[]', 'VARCHAR'], ['text[]', 'VARCHAR'], ['inet', 'VARCHAR'], ['cidr', 'VARCHAR'], ['macaddr', 'VARCHAR'], ['int4range', 'VARCHAR'],
    ['tstzrange', 'VARCHAR'], ['bit(8)', 'BIT'], ['bit varying', 'VARCHAR'], ['money', 'DECIMAL(19,2)'], ['xml', 'VARCHAR'], ['tsvector', 'VARCHAR'],
    ['point', 'VARCHAR'],
  ];
  for (const [pg, duck] of expected) assert.equal(sqlOf(pg), duck, pg);
});

const mood: UserTypeDef = { kind: 'enum', schema: 'public', name: 'mood', labels: ['sad', "it's ok"] };
const posint: UserTypeDef = { kind: 'domain', schema: 'extra', name: 'posint', baseSql: 'integer', notNull: false, defaultSql: null, checks: [] };
const moodDomain: UserTypeDef = { kind: 'domain', schema: 'extra', name: 'm', baseSql: '"public"."mood"', notNull: false, defaultSql: null, checks: [] };

test('enums become an ENUM of the same labels, domains their base type, arrays of them text', () => {
  const types = [mood, posint, moodDomain];
  assert.equal(duckTypeOf({ typeSql: '"public"."mood"', support: 'user' }, types).sql, `ENUM('sad', 'it''s ok')`);
  assert.equal(duckTypeOf({ typeSql: '"extra"."posint"', support: 'user' }, types).sql, 'INTEGER');
  assert.equal(duckTypeOf({ typeSql: '"extra"."m"', support: 'user' }, types).sql, `ENUM('sad', 'it''s ok')`);
  assert.equal(duckTypeOf({ typeSql: '"public"."mood"[]', support: 'user' }, types).sql, 'VARCHAR');
  assert.equal(duckTypeOf({ typeSql: '"ext"."hstore"', support: 'external' }, types).sql, 'VARCHAR');
});

function col(name: string, typeSql = 'integer'): ColumnInfo {
  return { name, attnum: 1, typeOid: 23, typeSql, notNull: false, defaultSql: null, generatedSql: null, support: 'builtin', binarySafe: true, collation: null };
}

test('refusals before any data moves name the fix', () => {
  const table = { schema: 'public', name: 't' };
  assert.throws(() => duckColumns({ table, copyColumns: [col('id')], primaryKey: [], userTypes: [] }), (e: Error & { code?: string }) =>
    e.code === 'NO_PRIMARY_KEY' && /add a primary key/.test(e.message));
  assert.throws(() => duckColumns({ table, copyColumns: [col('id'), col('Amount'), col('amount')], primaryKey: ['id'], userTypes: [] }), (e: Error & { code?: string }) =>
    e.code === 'UNSUPPORTED_TYPE' && /"Amount" and "amount" differ only in case/.test(e.message) && /rename one of them/.test(e.message));
  assert.throws(() => duckColumns({ table, copyColumns: [col('id'), col('_sluice_op')], primaryKey: ['id'], userTypes: [] }), /starts with _sluice_/);
  assert.deepEqual(duckColumns({ table, copyColumns: [col('id'), col('n', 'numeric')], primaryKey: ['id'], userTypes: [] }).map((c) => c.type.sql), ['INTEGER', 'VARCHAR']);
});

const t = (typeSql: string): DuckType => duckTypeOfBuiltin(typeSql);

test('dates: BC and infinity are exact (DuckDB would read "0044-03-15 BC" as 44 AD)', () => {
  assert.equal(daysFromCivil(1970, 1, 1), 0);
  assert.equal(daysFromCivil(2000, 3, 1), 11017);
  assert.equal((toDuckValue('d', t('date'), '2000-02-29') as DuckDBDateValue).days, 11016);
  // 1 BC is astronomical year 0; 0044-03-15 BC is year -43.
  assert.equal((toDuckValue('d', t('date'), '0044-03-15 BC') as DuckDBDateValue).days, daysFromCivil(-43, 3, 15));
  assert.equal((toDuckValue('d', t('date'), 'infinity') as DuckDBDateValue).days, DuckDBDateValue.PosInf.days);
  assert.equal((toDuckValue('d', t('date'), '-infinity') as DuckDBDateValue).days, DuckDBDateValue.NegInf.days);
});

test('timestamps: microseconds, offsets, BC, and a loud refusal past DuckDB range', () => {
  const ts = (v: string, type = 'timestamp without time zone') => (toDuckValue('c', t(type), v) as DuckDBTimestampValue).micros;
  assert.equal(ts('1970-01-01 00:00:00.000001'), 1n);
  assert.equal(ts('2000-01-01 00:00:00'), 946684800000000n);
  assert.equal(ts('1999-12-31 23:59:59.5+00', 'timestamp with time zone'), 946684799500000n);
  assert.equal(ts('2000-01-01 05:30:00+05:30', 'timestamp with time zone'), 946684800000000n);
  assert.equal(ts('1999-12-31 18:00:00-06', 'timestamp with time zone'), 946684800000000n);
  assert.equal(ts('0044-03-15 12:00:00 BC'), (BigInt(daysFromCivil(-43, 3, 15)) * 86400n + 43200n) * 1000000n);
  assert.equal(ts('infinity'), DuckDBTimestampValue.PosInf.micros);
  assert.throws(() => ts('294276-12-31 23:59:59.999999'), /c: value "294276-12-31 23:59:59.999999" cannot be stored in DuckDB TIMESTAMP \(outside DuckDB TIMESTAMP range/);
  assert.throws(() => ts('2000-01-01 00:00:00'.concat('+00')), /not an ISO timestamp/);
});

test('intervals keep months, days and microseconds apart, as PostgreSQL does', () => {
  const iv = (v: string) => intervalParts('i', t('interval'), v);
  assert.deepEqual(iv('1 year 2 mons 3 days 04:05:06.789012'), { months: 14, days: 3, micros: 14706789012n });
  assert.deepEqual(iv('-1 mons -2 days +03:00:00.000001'), { months: -1, days: -2, micros: 10800000001n });
  assert.deepEqual(iv('-178000000 years'), { months: -2136000000, days: 0, micros: 0n });
  assert.deepEqual(iv('-00:00:00.000001'), { months: 0, days: 0, micros: -1n });
  assert.deepEqual(iv('00:00:00'), { months: 0, days: 0, micros: 0n });
  assert.deepEqual(iv('1 day'), { months: 0, days: 1, micros: 0n });
  assert.deepEqual(iv('2562047788:00:54.775807'), { months: 0, days: 0, micros: 9223372036854775807n });
  assert.throws(() => iv('P1Y'), /IntervalStyle = postgres/);
});

test('decimals are checked, never rounded; money becomes DECIMAL(19,2)', () => {
  const d = t('numeric(12,3)');
  assert.equal(toDuckValue('n', d, '-999999999.999'), '-999999999.999');
  assert.equal(toDuckValue('n', d, '0.000'), '0.000');
  assert.throws(() => toDuckValue('n', d, '1.2345'), /more digits than DECIMAL\(12,3\)/);
  assert.throws(() => toDuckValue('n', d, '1234567890.1'), /more digits/);
  assert.throws(() => toDuckValue('n', d, 'NaN'), /no NaN or infinity/);
  const m = t('money');
  assert.equal(toDuckValue('m', m, '$92,233,720,368,547,758.07'), '92233720368547758.07');
  assert.equal(toDuckValue('m', m, '-$92,233,720,368,547,758.08'), '-92233720368547758.08');
  assert.equal(toDuckValue('m', m, '($1.50)'), '-1.50');
  assert.throws(() => toDuckValue('m', m, '1,50 €'), /lc_monetary = 'C'/);
});

test('bytea hex becomes bytes; text forms pass through untouched', () => {
  const b = toDuckValue('b', t('bytea'), '\\x00ff5c') as unknown as { bytes: Uint8Array };
  assert.deepEqual([...b.bytes], [0, 255, 0x5c]);
  assert.throws(() => toDuckValue('b', t('bytea'), 'abc'), /bytea_output = hex/);
  for (const v of ['{1,2,NULL,-3}', '[1,10)', '192.168.1.1/24', '(1.5,-2.25)', "'a' 'b':1", ' { "a" : [ ] } ']) {
    assert.equal(toDuckValue('x', t('text'), v), v);
  }
  assert.equal(toDuckValue('x', t('integer'), null), null);
});

test('a second writer gets an error naming the file, the process and the fix', () => {
  const err = lockConflictError(
    '/data/analytics.duckdb',
    new Error('IO Error: Could not set lock on file "/data/analytics.duckdb": Conflicting lock is held in /usr/bin/node (PID 4242). See also https://duckdb.org/docs/stable/connect/concurrency'),
  );
  assert.ok(err);
  assert.equal(err.code, 'DESTINATION_UNREACHABLE');
  assert.ok(err.isUsageError);
  assert.match(err.message, /^destination DuckDB file \/data\/analytics\.duckdb is in use by process 4242 \(\/usr\/bin\/node\)/);
  assert.match(err.message, /stop that process first/);
  assert.equal(lockConflictError('/x', new Error('IO Error: disk full')), null);
});

test('DuckDB errors are classified by their type word', () => {
  assert.equal(duckErrorType(new Error('Constraint Error: NOT NULL constraint failed: docs.title')), 'Constraint');
  assert.equal(duckErrorType(new Error('Out of Memory Error: could not allocate')), 'Out of Memory');
  assert.equal(duckErrorType(new Error('no type')), null);
  const full = classifyDuckDb('/d.duckdb', 'appending a chunk', new Error('IO Error: Could not write file "/d.duckdb.wal": No space left on device'));
  assert.match(full.message, /the disk is full while appending a chunk; free space/);
  assert.equal(full.retryable, false);
  assert.equal(classifyDuckDb('/d', 'x', new Error('TransactionContext Error: Catalog write-write conflict on alter')).retryable, true);
  const c = classifyDuckDb('/d', 'merging a batch', new Error('Constraint Error: NOT NULL constraint failed: docs.title'));
  assert.equal(c.code, 'DESTINATION_ERROR');
  assert.match(c.message, /^destination DuckDB file \/d: merging a batch: Constraint Error: NOT NULL/);
});
