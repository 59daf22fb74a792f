/**
 * Live progress bars of `sluice run` in a terminal: one line per table that is not streaming
 * (queued, backfilling with a bar, catching up, swapping, failed) and a summary line, redrawn in
 * place on stderr. Log lines go through `write`, which lifts the bars, prints the line and draws
 * them again, so both stay readable. Not a terminal (or JSON logs): the plain progress lines instead.
 */
import type { Pipeline } from '../../pipeline/orchestrator.js';
import { formatCount, formatEta } from '../../pipeline/status-format.js';
import type { TableRuntime } from '../../pipeline/runtime.js';

const WIDTH = 24;
const MAX_TABLES = 12;

/** `[#########---------]  45%` from a ratio 0…1, or an indeterminate bar for null. */
export function bar(ratio: number | null, width = WIDTH): string {
  if (ratio === null) return `[${'·'.repeat(width)}]    ?`;
  const r = Math.min(1, Math.max(0, ratio));
  const full = Math.floor(r * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${String(Math.floor(r * 100)).padStart(3)}%`;
}

/** The line of one table. */
export function tableLine(rt: Pick<TableRuntime, 'name' | 'state' | 'mode' | 'rowsCopied' | 'rowsEstimated' | 'rowsPerSecond' | 'detail'>, eta: { ratio: number | null; etaSeconds: number | null; etaNote: string | null } | null): string {
  const name = rt.name.length > 28 ? `…${rt.name.slice(-27)}` : rt.name.padEnd(28);
  if (rt.state !== 'backfilling') return `${name} ${rt.state}${rt.mode ? ` (${rt.mode})` : ''}${rt.detail ? `: ${rt.detail}` : ''}`;
  const ratio = eta?.ratio ?? (rt.rowsEstimated > 0 ? Math.min(0.999, rt.rowsCopied / rt.rowsEstimated) : null);
  const when = eta?.etaSeconds != null ? `ETA ~${formatEta(eta.etaSeconds)}` : `ETA ${shortNote(eta?.etaNote ?? null)}`;
  const held = rt.detail && /^paused: /.test(rt.detail) ? `  ${rt.detail}` : '';
  return `${name} ${bar(ratio)}  ${formatCount(rt.rowsCopied)}/${rt.rowsEstimated > 0 ? `~${formatCount(rt.rowsEstimated)}` : '?'} rows  ${formatCount(rt.rowsPerSecond)}/s  ${when}${held}`;
}

/** The reason there is no ETA, in a few words for a bar's line (sluice status has the whole sentence). */
function shortNote(note: string | null): string {
  const measuring = note && /^measuring the rate \((\d+) s of (\d+) s/.exec(note);
  if (measuring) return `after ${measuring[2]} s copying (${measuring[1]} s)`;
  if (note && /past the estimate/.test(note)) return 'unknown: rows passed the estimate';
  if (note && /under 1 %/.test(note)) return 'after 1 %';
  return 'unknown';
}

export class ProgressBars {
  private lines = 0;
  private timer: NodeJS.Timeout | null = null;
  private pipeline: Pipeline | null = null;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  /** A log line: above the bars. */
  readonly write = (line: string): void => {
    this.clear();
    this.out.write(line + '\n');
    this.draw();
  };

  /** Follows `pipeline` (again after a restart); the ETA shown is the one its status writes computed. */
  follow(pipeline: Pipeline, everyMs = 500): void {
    this.pipeline = pipeline;
    if (!this.timer) {
      this.timer = setInterval(() => {
        this.clear();
        this.draw();
      }, everyMs);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.clear();
  }

  private clear(): void {
    if (this.lines === 0) return;
    // Up `lines` lines, then clear to the end of the screen.
    this.out.write(`\x1b[${this.lines}F\x1b[J`);
    this.lines = 0;
  }

  private draw(): void {
    const p = this.pipeline;
    if (!p) return;
    const tables = [...p.tables.values()];
    const busy = tables.filter((rt) => rt.state !== 'streaming');
    const c = p.counters();
    const cols = this.out.columns || 120;
    const rows = [
      `sluice: ${tables.length - busy.length}/${tables.length} tables streaming; ${formatCount(c.captured)} changes captured, ${formatCount(c.applied)} applied`,
      ...busy.slice(0, MAX_TABLES).map((rt) => tableLine(rt, p.progressOf(rt.name))),
      ...(busy.length > MAX_TABLES ? [`… and ${busy.length - MAX_TABLES} more (sluice status)`] : []),
    ].map((l) => (l.length > cols - 1 ? l.slice(0, cols - 2) + '…' : l));
    this.out.write(rows.join('\n') + '\n');
    this.lines = rows.length;
  }
}
