/**
 * Reading a table's segments from the stream up to the durable head: direct gets of the next
 * message of the table's subject from a sequence, a binary search over sequences for where a
 * position starts, and, per table, where the last read stopped (an applier reads on from there).
 */
import type { StoredMsg } from '@nats-io/jetstream';
import { Position, type Change, type Lsn } from '../../core/types.js';
import { HEADER_COUNT, HEADER_LAST, HEADER_TOTAL, decodeSegment, parsePosition, tableSubject, type LogNames } from './segment.js';

export type DirectGet = (query: { seq: number; next_by_subj: string }) => Promise<StoredMsg | null>;

/** Changes of the table in messages before `m` (its Sluice-Total less its Sluice-Count). */
export function segmentsBefore(m: StoredMsg): number {
  return Number(m.header.get(HEADER_TOTAL)) - Number(m.header.get(HEADER_COUNT));
}

export class SegmentReader {
  /** Where the last read of a table stopped: the message to go on from after `pos`. */
  private readonly readAt = new Map<string, { pos: Position; seq: number }>();

  /** `durable()`: the last head message's sequence and the head's commit LSN; nothing past them is read. */
  constructor(
    private readonly names: LogNames,
    private readonly get: DirectGet,
    private readonly durable: () => { seq: number; lsn: Lsn },
  ) {}

  async read(table: string, after: Position, limit: number, upTo?: Position): Promise<Change[]> {
    const subject = tableSubject(this.names, table);
    const headLsn = this.durable().lsn;
    const out: Change[] = [];
    const cached = this.readAt.get(table);
    let seq = cached && Position.compare(cached.pos, after) === 0 ? cached.seq : await this.search(subject, after);
    let last = after;
    while (out.length < limit) {
      const m = await this.next(subject, seq);
      if (!m) break;
      const changes = decodeSegment(table, m.data);
      let i = 0;
      let done = false;
      for (; i < changes.length && out.length < limit; i++) {
        const c = changes[i];
        if (Position.compare(c.position, after) <= 0) continue;
        if (c.position.lsn > headLsn || (upTo && Position.compare(c.position, upTo) > 0)) {
          done = true;
          break;
        }
        out.push(c);
        last = c.position;
      }
      if (done || i < changes.length) {
        seq = m.seq;
        break;
      }
      seq = m.seq + 1;
    }
    if (out.length > 0) this.readAt.set(table, { pos: last, seq });
    return out;
  }

  /** The next message of `subject` at or after `seq` that is durable (at or before the last head), or null. */
  async next(subject: string, seq: number): Promise<StoredMsg | null> {
    const headSeq = this.durable().seq;
    if (seq > headSeq) return null;
    const m = await this.get({ seq, next_by_subj: subject });
    return m && m.seq <= headSeq ? m : null;
  }

  /** The first durable message of `subject` holding a change after `after`, or null. */
  async firstAfter(subject: string, after: Position): Promise<StoredMsg | null> {
    return this.next(subject, await this.search(subject, after));
  }

  /** The smallest sequence from which the next message of `subject` holds a change after `after` (or none is durable). */
  private async search(subject: string, after: Position): Promise<number> {
    let lo = 1;
    let hi = this.durable().seq + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const m = await this.next(subject, mid);
      if (!m || Position.compare(parsePosition(m.header.get(HEADER_LAST)), after) > 0) hi = mid;
      else lo = m.seq + 1;
    }
    return lo;
  }
}
