/**
 * The control connection of a running pipeline: the destination session that holds the pipeline's
 * lock (one running process per pipeline), listens for requests, and serves the orchestrator's own
 * bookkeeping (requests, failures, the archive sweeper, cancels).
 *
 * Those users run concurrently: each use (a statement or a transaction) takes one lock, so one's
 * COMMIT never ends another's transaction; the lock is never held while waiting for anything but
 * the connection. When the destination went away (restart, outage) the connection is opened again
 * and takes the pipeline lock back; if another process of this pipeline took it in the meantime,
 * `onLockLost` is told and this process stops.
 */
import type pg from 'pg';
import { SluiceError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { sleep } from '../core/retry.js';
import { LOCK_KEY_SQL } from '../destinations/postgres/pipeline-lock.js';
import { connect } from './context.js';
import { Mutex } from './runtime.js';

export interface ControlHooks {
  /** A request was announced (NOTIFY sluice_requests). */
  onRequest(): void;
  /** Another process of this pipeline holds the lock now: this one must stop. */
  onLockLost(err: SluiceError): void;
}

export class ControlChannel {
  private client: pg.Client | null = null;
  private readonly lock = new Mutex();
  private lost = false;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly pipeline: string,
    private readonly logger: Logger,
    private readonly hooks: ControlHooks,
  ) {}

  /**
   * Opens the connection and takes the pipeline lock, or refuses (SLOT_IN_USE) naming the process
   * that holds it. Taken before the preflight, which would otherwise report the running pipeline's
   * slot as "in use".
   */
  async open(): Promise<pg.Client> {
    const c = await connect('destination', this.url, 'sluice');
    try {
      const locked = (await c.query(`SELECT pg_try_advisory_lock(${LOCK_KEY_SQL}) AS ok`, [this.pipeline])).rows[0].ok;
      if (!locked) {
        const who = await c
          .query(`SELECT pid, host FROM _sluice.pipelines WHERE name = $1`, [this.pipeline])
          .catch(() => ({ rows: [] as { pid: number; host: string }[] }));
        const w = who.rows[0];
        throw new SluiceError(
          'SLOT_IN_USE',
          `pipeline ${this.pipeline} is already running${w ? ` (pid ${w.pid} on ${w.host})` : ''}; stop it first, or use another pipeline.name`,
        );
      }
    } catch (err) {
      await c.end().catch(() => {});
      throw err;
    }
    this.client = c;
    this.watch(c);
    return c;
  }

  get isOpen(): boolean {
    return this.client !== null;
  }

  /** Runs `fn` on the control connection while no other part uses it. */
  run<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    return this.lock.run(() => {
      if (!this.client) throw new SluiceError('INTERNAL', 'the pipeline is stopping: no control connection');
      return fn(this.client);
    });
  }

  async listen(): Promise<void> {
    const c = this.client!;
    c.on('notification', (msg) => {
      if (msg.channel === 'sluice_requests') this.hooks.onRequest();
    });
    await this.run((cc) => cc.query(`LISTEN sluice_requests`));
  }

  /** Opens the connection again when it was lost, takes the lock back and listens again. */
  async ensure(): Promise<void> {
    if (!this.lost || this.closed) return;
    const c = await connect('destination', this.url, 'sluice');
    this.watch(c);
    try {
      let locked = false;
      for (let attempt = 0; attempt < 10 && !locked; attempt++) {
        locked = (await c.query(`SELECT pg_try_advisory_lock(${LOCK_KEY_SQL}) AS ok`, [this.pipeline])).rows[0].ok;
        if (locked) break;
        // The old control session may still be there (its path died, the server has not noticed): it is ours, end it.
        const oldPid = (this.client as unknown as { processID?: number } | null)?.processID;
        if (oldPid) await c.query(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1`, [oldPid]);
        await sleep(500);
      }
      if (!locked) {
        await c.end().catch(() => {});
        this.hooks.onLockLost(
          new SluiceError('SLOT_IN_USE', `pipeline ${this.pipeline}: the destination was away and another process of this pipeline holds its lock now; stopping this one`),
        );
        return;
      }
    } catch (err) {
      await c.end().catch(() => {});
      throw err;
    }
    const old = this.client;
    this.client = c;
    this.lost = false;
    if (old) void old.end().catch(() => {});
    await this.listen();
    this.logger.info('control connection to the destination re-established');
  }

  /** After any user in flight: marks the pipeline stopped (pid NULL) and closes the connection. */
  async close(): Promise<void> {
    this.closed = true;
    await this.lock.run(async () => {
      const c = this.client;
      this.client = null;
      if (c) {
        await c.query(`UPDATE _sluice.pipelines SET pid = NULL, heartbeat_at = now() WHERE name = $1`, [this.pipeline]).catch(() => {});
        await c.end().catch(() => {});
      }
    });
  }

  private watch(c: pg.Client): void {
    c.on('error', () => {
      if (this.client === c) this.lost = true;
    });
    c.on('end', () => {
      if (this.client === c) this.lost = true;
    });
  }
}
