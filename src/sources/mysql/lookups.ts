/**
 * What a destination may ask of a MariaDB source while it applies changes (core/source-lookups.ts),
 * on one connection opened when first needed. Stream types are binlog column types (column-types.ts).
 */
import type { Connection } from 'mysql2/promise';
import type { TableInfo } from '../../core/columns.js';
import type { SourceLookups, StreamType } from '../../core/source-lookups.js';
import { TableName } from '../../core/types.js';
import { columnTypeName } from './column-types.js';
import { connectSource, qualifiedName, quoteName } from './connection.js';
import { classify } from './errors.js';
import { introspectTable } from './introspect.js';

export class MysqlSourceLookups implements SourceLookups {
  private conn: Connection | null = null;

  constructor(
    private readonly url: string,
    private readonly applicationName: string,
  ) {}

  private async connection(): Promise<Connection> {
    this.conn ??= await connectSource(this.url, this.applicationName);
    return this.conn;
  }

  async describeTable(table: TableName): Promise<TableInfo> {
    return introspectTable(await this.connection(), table);
  }

  async typeNames(types: readonly StreamType[]): Promise<string[]> {
    return types.map(([id]) => columnTypeName(id).toLowerCase());
  }

  isBuiltinType(): boolean {
    return true; // MariaDB has no user-defined column types
  }

  async rowsByKey(table: TableName, info: TableInfo, keyValues: readonly (readonly string[])[], columns: readonly string[]): Promise<(string | null)[][]> {
    const keys = info.primaryKey;
    const count = keyValues[0]?.length ?? 0;
    if (count === 0) return [];
    const tuple = `(${keys.map(() => '?').join(', ')})`;
    const params: string[] = [];
    for (let i = 0; i < count; i++) for (let k = 0; k < keys.length; k++) params.push(keyValues[k][i]);
    const sql =
      `SELECT ${[...keys, ...columns].map((c) => `CAST(${quoteName(c)} AS CHAR)`).join(', ')} FROM ${qualifiedName(table)}` +
      ` WHERE (${keys.map(quoteName).join(', ')}) IN (${new Array(count).fill(tuple).join(', ')})`;
    try {
      const [rows] = (await (await this.connection()).query({ sql, values: params, rowsAsArray: true })) as unknown as [(string | null)[][]];
      return rows;
    } catch (err) {
      throw classify(`reading current rows of ${TableName.format(table)}`, err);
    }
  }

  async close(): Promise<void> {
    const c = this.conn;
    this.conn = null;
    if (c) await c.end().catch(() => c.destroy());
  }
}
