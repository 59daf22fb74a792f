/**
 * `POST /api/v1/verify`: runs `sluice verify` (the verifier, which shares no code with the copier) in
 * this process as a job; its verdict is kept for `GET /api/v1/verify/{id}` and the page. One job at a
 * time: verify reads both sides in full.
 */
import { errorMessage } from '../core/errors.js';
import { verifyTables, type TableVerdict } from '../verify/verifier.js';
import type { SluiceConfig } from '../config/schema.js';

export interface VerifyJob {
  id: number;
  tables: string[];
  where: string | null;
  actor: string;
  reason: string | null;
  startedAt: string;
  endedAt: string | null;
  state: 'running' | 'done' | 'failed';
  equal: boolean | null;
  verdicts: TableVerdict[];
  error: string | null;
}

const KEPT = 50;

export class VerifyJobs {
  private readonly jobs: VerifyJob[] = [];
  private nextId = 1;

  constructor(
    private readonly cfg: SluiceConfig,
    private readonly onDone: (job: VerifyJob) => void = () => {},
  ) {}

  running(): VerifyJob | undefined {
    return this.jobs.find((j) => j.state === 'running');
  }

  start(tables: string[], where: string | null, actor: string, reason: string | null): VerifyJob {
    const job: VerifyJob = {
      id: this.nextId++,
      tables,
      where,
      actor,
      reason,
      startedAt: new Date().toISOString(),
      endedAt: null,
      state: 'running',
      equal: null,
      verdicts: [],
      error: null,
    };
    this.jobs.push(job);
    if (this.jobs.length > KEPT) this.jobs.shift();
    verifyTables(this.cfg, tables, { where: where ?? undefined }).then(
      (verdicts) => {
        Object.assign(job, { state: 'done', verdicts, equal: verdicts.every((v) => v.equal), endedAt: new Date().toISOString() });
        this.onDone(job);
      },
      (err) => {
        Object.assign(job, { state: 'failed', error: errorMessage(err), endedAt: new Date().toISOString() });
        this.onDone(job);
      },
    );
    return job;
  }

  get(id: number): VerifyJob | undefined {
    return this.jobs.find((j) => j.id === id);
  }

  /** Newest first. */
  list(): VerifyJob[] {
    return [...this.jobs].reverse();
  }
}
