/**
 * What a destination may ask of a PostgreSQL source while it applies changes (core/source-lookups.ts),
 * on one connection opened when first needed.
 */
import type pg from 'pg';
import type { TableInfo } from '../../core/columns.js';
import { qualified, quoteIdent } from '../../core/quote.js';
import type { SourceLookups, StreamType } from '../../core/source-lookups.js';
import { TableName } from '../../core/types.js';
import { closeClient } from '../../postgres/connection.js';
import { classify } from '../../postgres/errors.js';
import { connect } from '../../postgres/session.js';
import { introspectTable } from './introspect.js';

/** OIDs below this are PostgreSQL's own (built-in) types: the same on every cluster. */
const FIRST_NORMAL_OID = 16384;

export class PostgresSourceLookups implements SourceLookups {
  private client: pg.Client | null = null;

  constructor(
    private readonly url: string,
    private readonly applicationName: string,
  ) {}

  private async connection(): Promise<pg.Client> {
    if (!this.client) this.client = await connect('source', this.url, this.applicationName);
    return this.client;
  }

  async describeTable(table: TableName): Promise<TableInfo> {
    return introspectTable(await this.connection(), table);
  }

  async typeNames(types: readonly StreamType[]): Promise<string[]> {
    const src = await this.connection();
    const r = await src.query({
      text: `SELECT format_type(o::oid, nullif(m, -1)) AS t FROM unnest($1::int8[], $2::int4[]) WITH ORDINALITY AS u(o, m, n) ORDER BY n`,
      values: [types.map((t) => t[0]), types.map((t) => t[1])],
    });
    return r.rows.map((x) => x.t as string);
  }

  isBuiltinType(typeId: number): boolean {
    return typeId < FIRST_NORMAL_OID;
  }

  async rowsByKey(table: TableName, info: TableInfo, keyValues: readonly (readonly string[])[], columns: readonly string[]): Promise<(string | null)[][]> {
    const keys = info.primaryKey;
    const byName = new Map(info.columns.map((c) => [c.name, c.typeSql]));
    const src = await this.connection();
    const got = await src
      .query({
        text:
          `SELECT ${[...keys, ...columns].map((c) => `${quoteIdent(c)}::text`).join(', ')} FROM ${qualified(table)}` +
          ` WHERE (${keys.map(quoteIdent).join(', ')}) IN (SELECT ${keys.map((k, i) => `u.k${i}::${byName.get(k)}`).join(', ')}` +
          ` FROM unnest(${keys.map((_, i) => `$${i + 1}::text[]`).join(', ')}) AS u(${keys.map((_, i) => `k${i}`).join(', ')}))`,
        values: keyValues as string[][],
        rowMode: 'array',
      })
      .catch((err) => {
        throw classify('source', `reading the columns left out of update images of ${TableName.format(table)}`, err);
      });
    return got.rows as (string | null)[][];
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (c) await closeClient(c);
  }
}
