/**
 * A lost replication slot: dropped on the source, or invalidated by PostgreSQL
 * (`max_slot_wal_keep_size`, wal_status `lost`). The changes between the slot's last position and
 * now are gone from the source, so the change log has a hole no replay can fill.
 *
 * `source.onSlotLost: stop` (the default) refuses to run and says how to recover. `rebackfill`
 * recreates the slot, moves the change log's head to the new slot's start (so nothing of the old
 * slot's numbering is confused with the new one's), and reloads every table that was loaded or
 * loading, online: a fresh L0 from the new slot, staging and an atomic swap, while the live table
 * keeps its rows and goes on streaming. A staging table of the old slot's era is dropped; a load
 * interrupted under the old slot starts over (its L0 predates the hole).
 */
import type pg from 'pg';
import type { ChangeLog } from '../changelog/changelog.js';
import type { SluiceConfig } from '../config/schema.js';
import { SluiceError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { Lsn, TableName, type BackfillMode } from '../core/types.js';
import { qualified } from '../destinations/postgres/dialect.js';
import { deleteCursor, setTableState, type CursorRow, type TableRow } from '../destinations/postgres/state.js';
import { uncarriable } from '../destinations/postgres/swap.js';
import { classify } from '../postgres/errors.js';
import { withTransaction } from './context.js';
import type { TableRuntime } from './runtime.js';

export interface SlotState {
  readonly exists: boolean;
  /** Invalidated: PostgreSQL removed WAL the slot still needed (wal_status `lost`). */
  readonly invalidated: boolean;
  readonly walStatus: string | null;
}

export async function inspectSlot(src: pg.ClientBase, slot: string): Promise<SlotState> {
  try {
    const r = await src.query(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
    if (r.rowCount === 0) return { exists: false, invalidated: false, walStatus: null };
    const walStatus = (r.rows[0].wal_status as string | null) ?? null;
    return { exists: true, invalidated: walStatus === 'lost', walStatus };
  } catch (err) {
    throw classify('source', 'reading the replication slot', err);
  }
}

/** True when some table was loaded or is loading: its changes came through the slot that is gone. */
export function hasReplicatedState(rows: readonly TableRow[], cursors: ReadonlyMap<string, CursorRow>): boolean {
  return cursors.size > 0 || rows.some((r) => r.l0 !== null || (r.state !== 'queued' && r.state !== 'cancelled'));
}

/** The plain statement of a lost slot and the two ways on. */
export function slotLostError(cfg: SluiceConfig, slot: string, what: string, cause?: unknown): SluiceError {
  return new SluiceError(
    'SLOT_LOST',
    `replication slot ${slot} ${what}: the source no longer has the changes since sluice's last position, so the destination cannot be brought up to date by replay. ` +
      `To recover, set source.onSlotLost: rebackfill in the config and run again (sluice recreates the slot and reloads every table online; the destination stays readable), ` +
      `or reload every table yourself: DELETE FROM _sluice.tables WHERE pipeline = '${cfg.pipeline.name}'; DELETE FROM _sluice.cursors WHERE pipeline = '${cfg.pipeline.name}' in the destination, then run again`,
    { cause },
  );
}

export function describeSlot(s: SlotState): string {
  return s.exists ? `was invalidated by the source (wal_status ${s.walStatus}; max_slot_wal_keep_size was exceeded)` : 'is missing on the source (it was dropped)';
}

/**
 * Drops an invalidated slot, creates a new one and moves the change log's head to its start.
 * Returns the new slot's start position.
 */
export async function recreateSlot(src: pg.ClientBase, slot: string, state: SlotState, log: ChangeLog, logger: Logger): Promise<Lsn> {
  try {
    if (state.exists) await src.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
    const r = await src.query(`SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    const start = Lsn.parse(r.rows[0].lsn as string);
    const head = log.head();
    if (start <= head.endLsn) {
      throw new SluiceError(
        'SLOT_LOST',
        `source: the new replication slot ${slot} starts at ${Lsn.format(start)}, before the change log's head ${Lsn.format(head.endLsn)}: the source's WAL went backwards (a restored or different server); ` +
          `move log.path aside and reload every table (DELETE FROM _sluice.tables and _sluice.cursors of this pipeline in the destination)`,
      );
    }
    // The log's numbering continues from the new slot: capture starts there, nothing older is skipped or expected.
    log.advance(start);
    log.flush();
    logger.warn('recreated the replication slot; the change log continues from its start', { slot, start: Lsn.format(start), logHead: Lsn.format(head.endLsn) });
    return start;
  } catch (err) {
    throw err instanceof SluiceError ? err : classify('source', `recreating replication slot ${slot}`, err);
  }
}

/**
 * Plans the reload after a lost slot: every table that was loaded or loading starts a new backfill
 * (no resume: an L0 of the old slot is before the hole). A table with a live table reloads online;
 * its live cursor stays, so it keeps its rows and keeps streaming until the swap. Returns the tables
 * to queue.
 */
export async function planReload(
  dst: pg.Client,
  pipeline: string,
  tables: Iterable<TableRuntime>,
  rows: ReadonlyMap<string, TableRow>,
  logger: Logger,
): Promise<TableRuntime[]> {
  const out: TableRuntime[] = [];
  for (const rt of tables) {
    const row = rows.get(rt.name);
    if (!row || row.state === 'cancelled' || (row.state === 'queued' && row.l0 === null && rt.cursor === null)) continue;
    const exists = (await dst.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [qualified(rt.target)])).rows[0].ok as boolean;
    const blockers = exists ? await uncarriable(dst, rt.target) : [];
    // A live table that an online swap cannot carry is reloaded in place (truncate); say so.
    const mode: BackfillMode = blockers.length ? 'truncate' : 'online';
    if (blockers.length) logger.warn('the online swap cannot carry this table; it is reloaded with mode truncate', { table: rt.name, blockers });
    await withTransaction(dst, async () => {
      if (rt.staging) {
        await dst.query(`DROP TABLE IF EXISTS ${qualified(rt.staging.target)}`);
        await deleteCursor(dst, pipeline, rt.name, TableName.format(rt.staging.target));
      }
      await setTableState(dst, pipeline, rt.name, 'queued', { mode, l0: null, lastKey: null, staging: null, detail: null, error: null, plan: null });
    });
    logger.warn('the replication slot was lost: the table is reloaded', { table: rt.name, mode, live: exists ? 'kept, streaming until the swap' : 'absent' });
    rt.staging = null;
    rt.l0 = null;
    rt.state = 'queued';
    rt.mode = mode;
    rt.error = null;
    rt.detail = null;
    rt.rowsCopied = 0;
    rt.pending = { mode, requestId: null, where: '' };
    out.push(rt);
  }
  return out;
}
