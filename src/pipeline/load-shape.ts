/**
 * Whether a load into a table of ours (new, `--mode drop`, an online staging table) builds the
 * primary key after the last chunk instead of maintaining it row by row.
 *
 * - ctid: must, a row moved during the load can be read twice; the key build is the duplicate check.
 * - keyset: may, and does: its chunks are disjoint key ranges, each read by one statement, so no key
 *   arrives twice, and the drop/new/staging table is not written by the Applier before the replay is
 *   armed (after finishLoad). Building the unique index once, by sort, after the heap is loaded costs
 *   the destination less than inserting every key into the btree as the rows arrive (measured in
 *   docs/benchmarks.md, "Backfill against the COPY pipe on PostgreSQL 15 and 17"). Should a
 *   duplicate ever be there, finishLoad's fallback removes it and builds the key again.
 * - daterange: must, like ctid: a row whose time changed during the load may be read twice.
 * - interval: left as it was (key maintained during the load).
 */
import type { BackfillStrategy } from '../core/types.js';

export function keyBuiltAfterLoad(strategy: BackfillStrategy, ours: boolean): boolean {
  if (!ours) return false;
  return strategy === 'ctid' || strategy === 'daterange' || strategy === 'keyset';
}

/**
 * Keyset chunks in flight at once: two, so that the next chunk's boundary walk and copy overlap the
 * current one's tail and commit and a second destination backend shares the load; they commit in key
 * order (ordered-commits.ts). One when chunks go through a temp table and commit under the table's
 * apply lock (upsert, scoped truncate): a chunk waiting for its turn must not hold that lock.
 */
export function keysetInFlight(viaTemp: boolean): number {
  return viaTemp ? 1 : 2;
}
