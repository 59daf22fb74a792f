/**
 * The statements whose binlog is captured into test/fixtures/binlog/ (by capture-binlog-fixtures.ts)
 * and decoded by test/unit/binlog-decoder.test.ts. Changing them means re-capturing the fixtures.
 */

/** One table with every MariaDB 10.11 column type sluice maps. */
export const TYPES_TABLE = `CREATE TABLE app.types (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  d DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE,
  c CHAR(10), vc VARCHAR(100), t TEXT, vl VARCHAR(50) CHARACTER SET latin1, tl TEXT CHARACTER SET latin1,
  bn BINARY(4), vb VARBINARY(20), bl BLOB, lb LONGBLOB,
  dt DATE, tm TIME, tm6 TIME(6), dtt DATETIME, dtt6 DATETIME(6), ts TIMESTAMP(6) NULL, y YEAR,
  bt BIT(10), e ENUM('a','b','c'), st SET('x','y','z'), j JSON,
  u UUID, ip INET6, ip4 INET4
) DEFAULT CHARSET=utf8mb4`;

export const TYPES_COLUMNS = [
  'id', 'ti', 'tiu', 'si', 'siu', 'mi', 'miu', 'i', 'iu', 'bi', 'bu', 'd', 'd2', 'f', 'db',
  'c', 'vc', 't', 'vl', 'tl', 'bn', 'vb', 'bl', 'lb', 'dt', 'tm', 'tm6', 'dtt', 'dtt6', 'ts', 'y',
  'bt', 'e', 'st', 'j', 'u', 'ip', 'ip4',
] as const;

/** Every statement of the scenario, in order (sql_mode '' so that zero dates are accepted). */
export const SCENARIO: readonly string[] = [
  `SET SESSION sql_mode = ''`,
  `SET SESSION time_zone = '+00:00'`,
  `CREATE DATABASE app`,
  TYPES_TABLE,
  `INSERT INTO app.types VALUES (
    1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
    -9223372036854775808, 18446744073709551615,
    '-12345678901234567890123456789012345.123456789012345678901234567890', '-12.34', 1.5, -2.25e-300,
    'chär', 'héllo wörld 😀', 'a long text', 'café', 'naïve',
    X'00FF0102', X'DEADBEEF', X'0001', REPEAT('x', 300),
    '2024-02-29', '-838:59:59', '-00:00:01.500000', '9999-12-31 23:59:59', '2024-01-02 03:04:05.123456',
    '2038-01-19 03:14:07.999999', 2155,
    b'1000000001', 'b', 'x,z', '{"k": [1, 2.5, "v"]}',
    '123e4567-e89b-12d3-a456-426614174000', '2001:db8::1', '192.168.0.1')`,
  `INSERT INTO app.types VALUES (
    2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 9223372036854775808,
    '0.000000000000000000000000000001', '99999999.99', -0.0, 0,
    '', '', '', '', '',
    X'00000000', X'', X'', X'',
    '0000-00-00', '00:00:00', '838:59:59.000001', '0000-00-00 00:00:00', '1000-01-01 00:00:00.000001',
    '1970-01-01 00:00:01.000000', 0,
    b'0', '', '', 'null',
    '00000000-0000-0000-0000-000000000000', '::', '0.0.0.0')`,
  `INSERT INTO app.types (id) VALUES (3)`,
  `BEGIN`,
  `UPDATE app.types SET vc = 'updated', bu = 1 WHERE id = 1`,
  `DELETE FROM app.types WHERE id = 3`,
  `COMMIT`,
  `CREATE TABLE app.small (id INT NOT NULL PRIMARY KEY, v VARCHAR(10)) DEFAULT CHARSET=latin1`,
  `INSERT INTO app.small VALUES (1, 'one'), (2, 'two')`,
  `ALTER TABLE app.small ADD COLUMN extra INT NOT NULL DEFAULT 7`,
  `INSERT INTO app.small VALUES (3, 'three', 8)`,
  `TRUNCATE TABLE app.small`,
];

/** The transaction of the streamed fixture (stream.bin), after the scenario. */
export const STREAM_INSERT = `INSERT INTO app.types (id, vc) VALUES (42, 'streamed')`;
