/** MariaDB → PostgreSQL type mapping and value text (type-mapping.ts), and the DDL capture reads (binlog-capture.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ddlTables, truncatedTable } from '../../src/sources/mysql/binlog-capture.js';
import { postgresText, postgresType } from '../../src/sources/mysql/type-mapping.js';

test('every MariaDB type has a PostgreSQL type that holds all its values', () => {
  const cases: [string, string][] = [
    ['tinyint(4)', 'smallint'],
    ['tinyint(3) unsigned', 'smallint'],
    ['smallint(5) unsigned', 'integer'],
    ['mediumint(8) unsigned', 'integer'],
    ['int(11)', 'integer'],
    ['int(10) unsigned', 'bigint'],
    ['bigint(20)', 'bigint'],
    ['bigint(20) unsigned', 'numeric(20,0)'],
    ['decimal(65,30)', 'numeric(65,30)'],
    ['float', 'real'],
    ['double', 'double precision'],
    ['char(10)', 'varchar(10)'],
    ['varchar(100)', 'varchar(100)'],
    ['longtext', 'text'],
    ["enum('a','b')", 'text'],
    ["set('x','y')", 'text'],
    ['json', 'json'],
    ['binary(4)', 'bytea'],
    ['longblob', 'bytea'],
    ['date', 'date'],
    ['datetime(6)', 'timestamp(6)'],
    ['datetime', 'timestamp(0)'],
    ['timestamp(3)', 'timestamptz(3)'],
    ['time(6)', 'interval'],
    ['year(4)', 'smallint'],
    ['bit(10)', 'bit(10)'],
    ['uuid', 'uuid'],
    ['inet6', 'inet'],
    ['inet4', 'inet'],
    ['point', 'bytea'],
  ];
  for (const [maria, pg] of cases) assert.equal(postgresType(maria), pg, maria);
  assert.throws(() => postgresType('vector(3)'), /no PostgreSQL type for the MariaDB type vector\(3\)/);
});

test('decoded values become PostgreSQL text; zero dates become NULL', () => {
  assert.equal(postgresText(18446744073709551615n, 'bigint(20) unsigned'), '18446744073709551615');
  assert.equal(postgresText(-12, 'int(11)'), '-12');
  assert.equal(postgresText('-12.340', 'decimal(10,3)'), '-12.340');
  assert.equal(postgresText(Number.NaN, 'double'), 'NaN');
  assert.equal(postgresText(Buffer.from('00ff', 'hex'), 'varbinary(4)'), '\\x00ff');
  assert.equal(postgresText(Buffer.from('123e4567e89b12d3a456426614174000', 'hex'), 'uuid'), '123e4567-e89b-12d3-a456-426614174000');
  assert.equal(postgresText(Buffer.from('20010db8000000000000000000000001', 'hex'), 'inet6'), '2001:db8:0:0:0:0:0:1');
  assert.equal(postgresText(Buffer.from([192, 168, 0, 1]), 'inet4'), '192.168.0.1');
  assert.equal(postgresText('2024-01-02 03:04:05.5', 'timestamp(1)'), '2024-01-02 03:04:05.5+00');
  assert.equal(postgresText('2024-01-02 03:04:05', 'datetime'), '2024-01-02 03:04:05');
  assert.equal(postgresText('0000-00-00', 'date'), null);
  assert.equal(postgresText('2024-00-10', 'date'), null);
  assert.equal(postgresText('0000-00-00 00:00:00', 'datetime'), null);
  assert.equal(postgresText('-838:59:59', 'time'), '-838:59:59');
  assert.equal(postgresText('1000000001', 'bit(10)'), '1000000001');
  assert.equal(postgresText(null, 'int'), null);
});

test('TRUNCATE and the tables a DDL names, qualified with the event database', () => {
  assert.equal(truncatedTable('TRUNCATE TABLE app.small', ''), 'app.small');
  assert.equal(truncatedTable('truncate `my db`.`t``x`', ''), 'my db.t`x');
  assert.equal(truncatedTable('TRUNCATE t', 'app'), 'app.t');
  assert.equal(truncatedTable('ALTER TABLE t ADD COLUMN x INT', 'app'), null);
  assert.deepEqual(ddlTables('ALTER TABLE app.t ADD COLUMN x INT DEFAULT 5', ''), ['app.t']);
  assert.deepEqual(ddlTables('RENAME TABLE app.t TO app._t_old, app._t_gho TO app.t', ''), ['app.t', 'app._t_old']);
  assert.deepEqual(ddlTables('DROP TABLE IF EXISTS `t`', 'app'), ['app.t']);
});
