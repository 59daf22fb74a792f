/**
 * The embedded log behind the async port (AsyncChangeLog): every call is the synchronous one,
 * resolved. The log is local and fsync'd, so nothing here waits on a network.
 */
import type { Change, Lsn, Position, RelationColumns } from '../../core/types.js';
import type { AsyncChangeLog, ChangeLog, LogHead, PendingChange } from '../changelog.js';

export class AsyncEmbeddedChangeLog implements AsyncChangeLog {
  constructor(readonly log: ChangeLog) {}

  get buffered(): number {
    return this.log.buffered;
  }

  relationVersion(table: string, columns: RelationColumns): number {
    return this.log.relationVersion(table, columns);
  }

  async relation(version: number): Promise<RelationColumns> {
    return this.log.relation(version);
  }

  async previousRelation(table: string, version: number): Promise<RelationColumns | null> {
    return this.log.previousRelation(table, version);
  }

  append(change: PendingChange): void {
    this.log.append(change);
  }

  commit(lsn: Lsn, endLsn: Lsn, commitTimeMs: number): void {
    this.log.commit(lsn, endLsn, commitTimeMs);
  }

  advance(endLsn: Lsn): void {
    this.log.advance(endLsn);
  }

  async flush(): Promise<LogHead> {
    return this.log.flush();
  }

  head(): LogHead {
    return this.log.head();
  }

  async read(table: string, after: Position, limit: number, upTo?: Position): Promise<Change[]> {
    return this.log.read(table, after, limit, upTo);
  }

  async purge(table: string, upTo: Position): Promise<number> {
    return this.log.purge(table, upTo);
  }

  async count(table: string, after: Position): Promise<number> {
    return this.log.count(table, after);
  }

  async close(): Promise<void> {
    this.log.close();
  }
}
