/** The status fields of a table's progress (from what the running pipeline wrote), and their words for `sluice status`. */
import type { TableRow } from '../destinations/destination.js';
import type { CatchUp, Progress } from './eta.js';
import { percentCopied, etaSeconds, formatCount, formatEta } from './status-format.js';

export interface CopyFigures {
  percent: number | null;
  etaSeconds: number | null;
  progress: Progress | null;
  catchUp: CatchUp | null;
}

/**
 * percent, ETA, progress and catch-up of a table's status. A running pipeline's progress (eta.ts)
 * wins; a state written by a sluice without it falls back to rows against the estimate.
 */
export function copyFigures(row: Pick<TableRow, 'state' | 'rowsCopied' | 'rowsEstimated' | 'rowsPerSecond' | 'progress'> | null, running: boolean): CopyFigures {
  const stored = running ? (row?.progress as { copy?: Progress | null; catchUp?: CatchUp | null } | null | undefined) : null;
  const copy = row?.state === 'backfilling' ? (stored?.copy ?? null) : null;
  const catchUp = row?.state === 'catching_up' ? (stored?.catchUp ?? null) : null;
  if (copy) return { percent: copy.ratio === null ? null : Math.floor(copy.ratio * 100), etaSeconds: copy.etaSeconds, progress: copy, catchUp };
  return {
    percent: row?.state === 'backfilling' ? percentCopied(row.rowsCopied, row.rowsEstimated) : null,
    etaSeconds: running && row?.state === 'backfilling' ? etaSeconds(row.rowsCopied, row.rowsEstimated, row.rowsPerSecond) : null,
    progress: null,
    catchUp,
  };
}

/** One line on the copy's progress or the catch-up, or null: `12,400 of 50,000 pages; 31 s active, 12 s throttled; ETA ~2m`. */
export function describeProgress(t: { progress: Progress | null; catchUp: CatchUp | null }): string | null {
  const p = t.progress;
  if (p) {
    const done = `${formatCount(p.unitsDone)} of ${p.unitsTotal > 0 ? formatCount(p.unitsTotal) : '?'} ${p.unit}`;
    const time = `${p.activeSeconds} s copying${p.throttledSeconds ? `, ${p.throttledSeconds} s held back` : ''}`;
    const eta = p.etaSeconds !== null ? `ETA ~${formatEta(p.etaSeconds)}${p.heldBack ? ' (at the rate while not held back)' : ''}` : `no ETA: ${p.etaNote}`;
    return `copied ${done}; ${time}; ${eta}`;
  }
  const c = t.catchUp;
  if (c) {
    if (c.notConverging) return `catching up: not converging, the backlog (${formatCount(c.backlog)} bytes of WAL) does not shrink: capture outpaces apply`;
    return `catching up: backlog ${formatCount(c.backlog)} bytes of WAL${c.etaSeconds !== null ? `, ETA ~${formatEta(c.etaSeconds)}` : ', measuring'}`;
  }
  return null;
}
