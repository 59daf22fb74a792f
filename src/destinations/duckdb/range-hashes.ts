/**
 * `sluice verify` against a DuckDB destination (RangeHashes of destinations/destination.ts): each key
 * range's row count and hash, computed by DuckDB over the canonical row text of row-hash.ts, which the
 * source computes alike (`sourceRowHash`). Key bounds arrive as PostgreSQL's text of the key values and
 * are cast to the key columns' DuckDB types; a composite key is compared lexicographically, spelled
 * out (DuckDB rewrites a row-value range into a BETWEEN it cannot evaluate on a STRUCT).
 */
import type { TableInfo } from '../../core/columns.js';
import type { TableName } from '../../core/types.js';
import type { KeyBounds, RangeHashes } from '../destination.js';
import { tableColumns } from './catalog.js';
import { quoteIdent, quoteLiteral } from './dialect.js';
import type { HeldFile } from './held-file.js';
import { duckdbRangeHashSql, postgresRowHashExpr } from './row-hash.js';
import { duckColumns, type DuckColumn } from './types.js';

/** `key > bound` (`op` '>') or `key <= bound` ('<='), lexicographic over the key columns. */
export function keyBoundSql(key: readonly DuckColumn[], values: readonly string[], op: '>' | '<='): string {
  const v = (i: number) => `CAST(${quoteLiteral(values[i])} AS ${key[i].type.sql})`;
  const k = (i: number) => quoteIdent(key[i].name);
  const alternatives: string[] = [];
  for (let i = 0; i < key.length; i++) {
    const equalBefore = key.slice(0, i).map((_, j) => `${k(j)} = ${v(j)}`);
    alternatives.push([...equalBefore, `${k(i)} ${op === '>' ? '>' : '<'} ${v(i)}`].join(' AND '));
  }
  if (op === '<=') alternatives.push(key.map((_, j) => `${k(j)} = ${v(j)}`).join(' AND '));
  return alternatives.length === 1 ? alternatives[0] : `(${alternatives.map((a) => `(${a})`).join(' OR ')})`;
}

export class DuckDbRangeHashes implements RangeHashes {
  private closed = false;

  private constructor(private readonly held: HeldFile) {}

  static async open(held: HeldFile): Promise<DuckDbRangeHashes> {
    await held.acquire();
    return new DuckDbRangeHashes(held);
  }

  sourceRowHash(info: TableInfo): string {
    return postgresRowHashExpr(duckColumns(info));
  }

  async rangeHash(target: TableName, info: TableInfo, range: KeyBounds, scope: string): Promise<{ n: number; h: string } | null> {
    return this.held.exclusive(async (file) => {
      const have = await tableColumns(file, target);
      if (!have) return null;
      const key = info.primaryKey.map((name) => have.find((c) => c.name === name)!);
      const conds = [
        ...(range.after ? [keyBoundSql(key, range.after, '>')] : []),
        ...(range.upTo ? [keyBoundSql(key, range.upTo, '<=')] : []),
        ...(scope ? [`(${scope})`] : []),
      ];
      const r = await file.all(duckdbRangeHashSql(target, duckColumns(info), info.primaryKey, conds.join(' AND ')));
      return { n: Number(r[0].n), h: String(r[0].h) };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.held.release();
  }
}
