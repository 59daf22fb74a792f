/**
 * The table lifecycle (docs/architecture.md, "Table lifecycle") as an exhaustive transition table: adding a
 * state without saying where it may go fails to compile.
 *
 *   queued → backfilling → catching_up → [swapping →] streaming   (swapping: online mode only)
 *   any active state → failed (resumable) | cancelled;  streaming | failed | cancelled → queued
 *
 * Whether the live table receives changes is not a function of the state: it does whenever it has
 * an apply cursor (truncate and drop reloads clear it until their replay; online and upsert keep it).
 */
import { SluiceError } from './errors.js';
import type { TableState } from './types.js';

export const TRANSITIONS: { readonly [S in TableState]: readonly TableState[] } = {
  queued: ['backfilling', 'failed', 'cancelled'],
  backfilling: ['backfilling', 'catching_up', 'streaming', 'failed', 'cancelled'],
  catching_up: ['swapping', 'streaming', 'failed', 'cancelled', 'queued'],
  swapping: ['streaming', 'catching_up', 'failed', 'cancelled'],
  streaming: ['queued', 'failed', 'streaming'],
  failed: ['queued', 'backfilling', 'catching_up', 'swapping', 'streaming', 'cancelled'],
  cancelled: ['queued', 'streaming'],
};

export function canTransition(from: TableState, to: TableState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function assertTransition(table: string, from: TableState, to: TableState): void {
  if (!canTransition(from, to)) {
    throw new SluiceError('INTERNAL', `table ${table}: illegal state change ${from} → ${to}`);
  }
}

/** States in which a backfill run of the table is under way (loading, replaying or swapping). */
export function inBackfill(state: TableState): boolean {
  switch (state) {
    case 'backfilling':
    case 'catching_up':
    case 'swapping':
      return true;
    case 'queued':
    case 'streaming':
    case 'failed':
    case 'cancelled':
      return false;
  }
}
