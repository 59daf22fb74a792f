/**
 * What the archives of online backfills cost in the destination's disk, in words: the refusal of an
 * online backfill that lacks room (target tables), the warning after a swap (online-swap.ts) and the line of
 * `sluice status` name the archives still kept and how to drop them. Free space is only ever the
 * destination's own when it can be read (space.ts); otherwise nothing is said
 * about it.
 */
import type pg from 'pg';
import { formatBytes } from '../../core/units.js';
import { listArchives, type ArchiveRow } from './archives.js';
import { diskSpace, type DiskSpace } from './space.js';

/** Free space under `percent` % of the disk. */
export function isLowOnSpace(space: DiskSpace, percent: number): boolean {
  return space.totalBytes > 0 && space.freeBytes < (space.totalBytes * percent) / 100;
}

/** "3 archives kept hold 391 MiB (…drop them…)", or '' when none are kept. */
export function keptArchivesNote(kept: readonly ArchiveRow[]): string {
  if (kept.length === 0) return '';
  const bytes = kept.reduce((n, a) => n + (a.bytes ?? 0), 0);
  return (
    `${kept.length} ${kept.length === 1 ? 'archive' : 'archives'} of online backfills kept ${kept.length === 1 ? 'holds' : 'hold'} ${formatBytes(bytes)} ` +
    `(sluice archives list; free it with sluice archives drop <archive>|--table <table>|--all-expired)`
  );
}

/**
 * After a swap: a warning when the destination's free space (when it can tell) is under
 * `online.lowFreeSpacePercent` of its disk; null otherwise.
 */
export async function lowSpaceWarning(dst: pg.ClientBase, percent: number): Promise<string | null> {
  const space = await diskSpace(dst);
  if (!space || !isLowOnSpace(space, percent)) return null;
  const kept = await listArchives(dst, null).catch(() => [] as ArchiveRow[]);
  const note = keptArchivesNote(kept);
  return (
    `the destination has ${formatBytes(space.freeBytes)} free of ${formatBytes(space.totalBytes)} (under online.lowFreeSpacePercent ${percent} %)` +
    (note ? `; ${note}` : '')
  );
}
