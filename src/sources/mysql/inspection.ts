/** What sluice checks on a MariaDB source before anything runs (SourceInspection of sources/source.ts). */
import type { Connection } from 'mysql2/promise';
import type { TableInfo } from '../../core/columns.js';
import type { TableName } from '../../core/types.js';
import type { BackfillOptions, SourceInspection } from '../source.js';
import { introspectTable } from './introspect.js';
import { checkBackfillOptions } from './load-options.js';
import { checkCapture, type CaptureCheckOptions } from './preflight.js';

export class MysqlInspection implements SourceInspection {
  constructor(
    private readonly conn: Connection,
    private readonly capture: Omit<CaptureCheckOptions, 'resumeFrom'>,
  ) {}

  describeTable(table: TableName): Promise<TableInfo> {
    return introspectTable(this.conn, table);
  }

  checkBackfillOptions(info: TableInfo, options: BackfillOptions, label: (option: string) => string): Promise<void> {
    return checkBackfillOptions(this.conn, info, options, label);
  }

  checkCapture(tables: readonly TableName[]): Promise<void> {
    return checkCapture(this.conn, tables, this.capture);
  }

  async close(): Promise<void> {
    await this.conn.end().catch(() => this.conn.destroy());
  }
}
