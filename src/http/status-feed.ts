/**
 * The running pipeline's status for the page, the API, the event stream and the metrics: the one
 * `computeStatus` that `sluice status --json` prints, read at most once a second however many
 * clients ask, plus live counters of the process (changes captured and applied, the change log's size).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { SluiceConfig } from '../config/schema.js';
import { redactUrl } from '../config/load.js';
import { computeStatus, type PipelineStatus } from '../pipeline/status.js';
import type { Pipeline } from '../pipeline/orchestrator.js';

export interface LiveCounters {
  /** When they were read (ms since the epoch). */
  at: number;
  /** Changes captured and applied since this process started (rates come from two readings). */
  captured: number;
  applied: number;
  /** The embedded change log's file size, null for another log. */
  changeLogBytes: number | null;
}

export interface Snapshot {
  /** source → destination, passwords replaced. */
  route: string;
  status: PipelineStatus;
  live: LiveCounters;
}

const MAX_AGE_MS = 1000;

export class StatusFeed {
  private last: { at: number; value: Promise<PipelineStatus> } | null = null;

  constructor(
    private readonly cfg: SluiceConfig,
    private readonly pipeline: () => Pipeline,
  ) {}

  /** The status, computed now or at most a second ago. */
  status(): Promise<PipelineStatus> {
    const now = Date.now();
    if (!this.last || now - this.last.at >= MAX_AGE_MS) {
      const value = computeStatus(this.cfg);
      // A failed read is not kept: the next caller tries again.
      value.catch(() => {
        if (this.last?.value === value) this.last = null;
      });
      this.last = { at: now, value };
    }
    return this.last.value;
  }

  live(): LiveCounters {
    const c = this.pipeline().counters();
    return { at: Date.now(), captured: c.captured, applied: c.applied, changeLogBytes: this.changeLogBytes() };
  }

  async snapshot(): Promise<Snapshot> {
    return { route: `${redactUrl(this.cfg.source.url)} → ${(this.cfg.destination.type === 'postgres' ? redactUrl(this.cfg.destination.url) : `${this.cfg.destination.type} ${this.cfg.destination.path}`)}`, status: await this.status(), live: this.live() };
  }

  private changeLogBytes(): number | null {
    if (this.cfg.log.type !== 'embedded') return null;
    let bytes = 0;
    for (const f of ['changes.db', 'changes.db-wal']) {
      try {
        bytes += statSync(join(this.cfg.log.path, f)).size;
      } catch {
        // not there (yet)
      }
    }
    return bytes;
  }
}
