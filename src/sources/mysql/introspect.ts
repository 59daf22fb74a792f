/**
 * Introspection of a MariaDB/MySQL source table from information_schema into the engine-neutral
 * TableInfo (core/columns.ts). sluice's `schema.table` is MariaDB's `database.table`. Type text is
 * MariaDB's own COLUMN_TYPE (e.g. `bigint(20) unsigned`); type-mapping.ts maps it for a PostgreSQL
 * destination. typeOid carries the binlog column type (column-types.ts), which is what the change
 * stream names columns by.
 */
import type { Connection } from 'mysql2/promise';
import type { CollationInfo, ColumnInfo, TableInfo } from '../../core/columns.js';
import { SluiceError } from '../../core/errors.js';
import { TableName } from '../../core/types.js';
import { ColumnType } from './column-types.js';

type Row = Record<string, unknown>;

/** The binlog type of an information_schema DATA_TYPE. */
const WIRE_TYPES: Readonly<Record<string, number>> = {
  tinyint: ColumnType.TINY,
  smallint: ColumnType.SHORT,
  mediumint: ColumnType.INT24,
  int: ColumnType.LONG,
  bigint: ColumnType.LONGLONG,
  decimal: ColumnType.NEWDECIMAL,
  float: ColumnType.FLOAT,
  double: ColumnType.DOUBLE,
  date: ColumnType.DATE,
  time: ColumnType.TIME2,
  datetime: ColumnType.DATETIME2,
  timestamp: ColumnType.TIMESTAMP2,
  year: ColumnType.YEAR,
  bit: ColumnType.BIT,
  char: ColumnType.STRING,
  binary: ColumnType.STRING,
  varchar: ColumnType.VARCHAR,
  varbinary: ColumnType.VARCHAR,
  tinytext: ColumnType.BLOB,
  text: ColumnType.BLOB,
  mediumtext: ColumnType.BLOB,
  longtext: ColumnType.BLOB,
  tinyblob: ColumnType.BLOB,
  blob: ColumnType.BLOB,
  mediumblob: ColumnType.BLOB,
  longblob: ColumnType.BLOB,
  json: ColumnType.BLOB,
  enum: ColumnType.ENUM,
  set: ColumnType.SET,
  uuid: ColumnType.STRING,
  inet6: ColumnType.STRING,
  inet4: ColumnType.STRING,
  geometry: ColumnType.GEOMETRY,
};

export function wireTypeOf(dataType: string): number {
  return WIRE_TYPES[dataType.toLowerCase()] ?? ColumnType.GEOMETRY;
}

export async function tableExists(conn: Connection, table: TableName): Promise<boolean> {
  const [rows] = (await conn.query('SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?', [table.schema, table.name])) as unknown as [Row[]];
  return rows.length > 0;
}

function collationOf(name: unknown, charset: unknown, tableDefault: string): CollationInfo | null {
  if (typeof name !== 'string' || name === '') return null;
  return {
    schema: '',
    name,
    provider: 'mariadb',
    locale: typeof charset === 'string' ? charset : '',
    // _bin and binary collations compare bytes (code points); _ci/_ai ones fold case or accents
    deterministic: /_bin$/.test(name) || name === 'binary',
    isDefault: name === tableDefault,
  };
}

export async function introspectTable(conn: Connection, table: TableName): Promise<TableInfo> {
  const [tables] = (await conn.query(
    `SELECT TABLE_TYPE, ENGINE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH, TABLE_COLLATION
       FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`,
    [table.schema, table.name],
  )) as unknown as [Row[]];
  if (tables.length === 0) {
    throw new SluiceError(
      'TABLE_NOT_FOUND',
      `source table ${TableName.format(table)} does not exist; check tables[].name (database.table) and that the source user can see it`,
      { context: { table: TableName.format(table) } },
    );
  }
  const t = tables[0];
  if (t.TABLE_TYPE !== 'BASE TABLE') {
    throw new SluiceError('TABLE_NOT_FOUND', `source ${TableName.format(table)} is not a table (${String(t.TABLE_TYPE)}); sluice replicates ordinary tables`);
  }
  const [cols] = (await conn.query(
    `SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA,
            GENERATION_EXPRESSION, CHARACTER_SET_NAME, COLLATION_NAME
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
    [table.schema, table.name],
  )) as unknown as [Row[]];
  const [keys] = (await conn.query(
    `SELECT COLUMN_NAME FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX`,
    [table.schema, table.name],
  )) as unknown as [Row[]];
  const tableCollation = String(t.TABLE_COLLATION ?? '');
  const columns: ColumnInfo[] = cols.map((c) => {
    const extra = String(c.EXTRA ?? '').toUpperCase();
    const generated = extra.includes('GENERATED') || extra.includes('VIRTUAL') || extra.includes('PERSISTENT');
    const dflt = c.COLUMN_DEFAULT;
    return {
      name: String(c.COLUMN_NAME),
      attnum: Number(c.ORDINAL_POSITION),
      typeOid: wireTypeOf(String(c.DATA_TYPE)),
      typeSql: String(c.COLUMN_TYPE),
      notNull: c.IS_NULLABLE === 'NO',
      // MariaDB 10.2.7+: the default as an expression (strings quoted); the text NULL for no default
      defaultSql: dflt === null || dflt === undefined || dflt === 'NULL' ? null : String(dflt),
      generatedSql: generated ? String(c.GENERATION_EXPRESSION ?? '') : null,
      support: 'builtin',
      binarySafe: false,
      collation: collationOf(c.COLLATION_NAME, c.CHARACTER_SET_NAME, tableCollation),
    };
  });
  return {
    table,
    oid: 0,
    relkind: 'r',
    columns,
    primaryKey: keys.map((k) => String(k.COLUMN_NAME)),
    replicaIdentity: keys.length > 0 ? 'd' : 'n',
    rowsEstimated: Number(t.TABLE_ROWS ?? 0),
    bytes: Number(t.DATA_LENGTH ?? 0) + Number(t.INDEX_LENGTH ?? 0),
    userTypes: [],
    copyColumns: columns.filter((c) => c.generatedSql === null),
    binarySafe: false,
  };
}
