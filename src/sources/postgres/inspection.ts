/** What sluice checks on a PostgreSQL source before anything runs (SourceInspection of sources/source.ts). */
import type pg from 'pg';
import type { TableInfo } from '../../core/columns.js';
import type { TableName } from '../../core/types.js';
import { closeClient } from '../../postgres/connection.js';
import type { BackfillOptions, SourceInspection } from '../source.js';
import { introspectTable } from './introspect.js';
import { checkBackfillOptions } from './load-options.js';

export class PostgresInspection implements SourceInspection {
  constructor(private readonly src: pg.Client) {}

  describeTable(table: TableName): Promise<TableInfo> {
    return introspectTable(this.src, table);
  }

  checkBackfillOptions(info: TableInfo, options: BackfillOptions, label: (option: string) => string): Promise<void> {
    return checkBackfillOptions(this.src, info, options, label);
  }

  async close(): Promise<void> {
    await closeClient(this.src);
  }
}
