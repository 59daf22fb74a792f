/**
 * The Streamer: capture. Reads pgoutput from the slot, appends every change of a published table
 * to the change log, flushes (fsync) in small groups, and only then acknowledges the slot up to
 * the flushed position (contract 1). On an idle source a heartbeat (a transactional logical
 * message) keeps the slot's confirmed position within seconds of the source's WAL.
 *
 * Reconnects with backoff when the replication connection drops; resumes from the slot, skipping
 * transactions that are already durable in the log.
 */
import pg from 'pg';
import type { ChangeLog } from '../changelog/changelog.js';
import { SluiceError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { backoffMs, sleep } from '../core/retry.js';
import { Lsn, type RelationColumns } from '../core/types.js';
import { decodeTuple } from '../core/tuple-data.js';
import type { PgoutputRawMessage, RelationMessage } from '../sources/postgres/pgoutput-decoder.js';
import { clientConfig, destroyClient } from '../sources/postgres/connection.js';
import { isConnectionLoss } from '../sources/postgres/errors.js';
import { ReplicationStream } from '../sources/postgres/replication-stream.js';

const HEARTBEAT_TIMEOUT_MS = 30_000;

export interface StreamerOptions {
  readonly url: string;
  readonly slot: string;
  readonly publication: string;
  readonly log: ChangeLog;
  readonly logger: Logger;
  readonly heartbeatIntervalMs: number;
  /** The replication connection is treated as dead after this long without a byte from the source (0: never). */
  readonly replicationTimeoutMs?: number;
  /** Flush the log at least this often while transactions are pending. */
  readonly flushIntervalMs?: number;
  /** Flush as soon as this many changes are buffered. */
  readonly flushChanges?: number;
  /**
   * When nothing but the position moved (keepalives, transactions without a change for a replicated
   * table), persist it and acknowledge the slot at most this often. Default 1000 ms.
   */
  readonly idleFlushIntervalMs?: number;
  readonly onFatal: (err: SluiceError) => void;
  /** Told after every flush: the new durable head. */
  readonly onDurable?: () => void;
}

interface Relation {
  table: string;
  version: number;
  keyIndexes: number[];
}

export class Streamer {
  private stream: ReplicationStream | null = null;
  private relations = new Map<number, Relation>();
  private txn: { lsn: Lsn; commitMs: number; idx: number; skip: boolean } | null = null;
  private lastFlushMs = Date.now();
  /** A transaction with changes (or a relation) was committed and is not flushed yet. */
  private dataPending = false;
  /** When the log was last flushed; 0 at start, so that the first position the source sends is stored at once. */
  private flushedAtMs = 0;
  private lastTxnMs = Date.now();
  private flushTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private heartbeatClient: pg.Client | null = null;
  private stopping = false;
  /** The log could not be written (a full disk): no more flushes and no more acknowledgements. */
  private broken = false;
  private restarting = false;
  private failures = 0;
  private walsenderPid: number | null = null;
  /** Changes captured since start (for status and benchmarks). */
  captured = 0;

  constructor(private readonly opts: StreamerOptions) {}

  async start(): Promise<void> {
    await this.connect();
    this.flushTimer = setInterval(() => this.flushIfDue(true), this.opts.flushIntervalMs ?? 50);
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), Math.max(100, Math.floor(this.opts.heartbeatIntervalMs / 2)));
  }

  private async connect(): Promise<void> {
    const head = this.opts.log.head();
    this.relations.clear();
    this.txn = null;
    const stream = new ReplicationStream({
      url: this.opts.url,
      slot: this.opts.slot,
      publication: this.opts.publication,
      startLsn: head.endLsn,
      timeoutMs: this.opts.replicationTimeoutMs,
      onMessage: (m) => this.onMessage(m),
      onKeepalive: (walEnd) => this.onKeepalive(walEnd),
      onError: (err) => void this.onStreamError(err),
    });
    await stream.start();
    this.stream = stream;
    this.walsenderPid = stream.backendPid;
    this.failures = 0;
  }

  /**
   * After a connection given up as dead, its walsender may still hold the slot until the source's
   * wal_sender_timeout: end it, but only if it is the one this process had.
   */
  private async endOldWalsender(): Promise<boolean> {
    const pid = this.walsenderPid;
    if (pid === null) return false;
    const c = new pg.Client(clientConfig(this.opts.url, { application_name: 'sluice' }));
    c.on('error', () => {});
    try {
      await c.connect();
      const r = await c.query(
        `SELECT pg_terminate_backend(active_pid) AS ended FROM pg_replication_slots WHERE slot_name = $1 AND active_pid = $2`,
        [this.opts.slot, pid],
      );
      if (r.rows[0]?.ended) {
        this.opts.logger.warn('ended the walsender of the dropped replication connection, which still held the slot', { pid });
        this.walsenderPid = null;
        return true;
      }
      return false;
    } catch (err) {
      this.opts.logger.debug('could not end the old walsender', { pid, error: (err as Error).message });
      return false;
    } finally {
      void c.end().catch(() => {});
    }
  }

  private async onStreamError(lost: SluiceError): Promise<void> {
    let err = lost;
    if (this.stopping || this.restarting || this.broken) return;
    if (err.code === 'SLOT_IN_USE' || !err.retryable) {
      // A decode error or a refused slot cannot be fixed by reconnecting.
      if (!err.retryable && err.code !== 'SOURCE_ERROR') return this.opts.onFatal(err);
    }
    this.restarting = true;
    const lostAt = Date.now();
    try {
      const old = this.stream;
      this.stream = null;
      await old?.stop();
      // Drop whatever part of a transaction was buffered: the slot sends it again.
      while (!this.stopping) {
        this.failures++;
        // An absent source is asked again every few seconds, so capture resumes soon after it is back.
        const delay = backoffMs(this.failures, 500, isConnectionLoss(err) ? 5000 : 15_000);
        this.opts.logger.warn('replication connection lost; reconnecting', { error: err.message, inMs: delay });
        await sleep(delay);
        if (this.stopping) return;
        try {
          this.discardPartial();
          await this.connect();
          this.opts.logger.info('replication connection re-established', { afterMs: Date.now() - lostAt });
          return;
        } catch (e) {
          const se = e instanceof SluiceError ? e : new SluiceError('SOURCE_ERROR', String(e), { retryable: true });
          err = se;
          if (se.code === 'SLOT_IN_USE' && (await this.endOldWalsender())) continue;
          if (se.code === 'SLOT_IN_USE' && this.failures < 20) continue;
          // The source (or the path to it) is away: wait for it, however long; the log keeps what was captured.
          if (isConnectionLoss(se)) continue;
          if (!se.retryable && se.code !== 'SOURCE_UNREACHABLE' && se.code !== 'SLOT_IN_USE') return this.opts.onFatal(se);
          if (this.failures >= 60) return this.opts.onFatal(se);
        }
      }
    } finally {
      this.restarting = false;
    }
  }

  /** A reconnect restarts the stream at a transaction boundary: forget changes of an unfinished one. */
  private discardPartial(): void {
    // Buffered changes all belong to committed transactions except the open one; flushing writes
    // them with the head unchanged for the open one, and the log drops rows above the head at open.
    // Simplest correct course here: flush committed work, and let the log ignore the rest by lsn.
    this.txn = null;
  }

  private onMessage(m: PgoutputRawMessage): void {
    const log = this.opts.log;
    switch (m.type) {
      case 'begin': {
        // Already durable (the slot re-sent it after a crash before the ack): skip it whole.
        const skip = m.finalLsn <= log.head().lsn;
        this.txn = { lsn: m.finalLsn, commitMs: m.commitTimeMs, idx: 0, skip };
        return;
      }
      case 'commit': {
        const txn = this.txn;
        this.txn = null;
        this.lastTxnMs = Date.now();
        if (!txn || txn.skip) {
          log.advance(m.endLsn);
          return;
        }
        log.commit(m.commitLsn, m.endLsn, m.commitTimeMs);
        // A transaction without a change for a replicated table (a heartbeat) moves only the position.
        if (txn.idx > 0) this.dataPending = true;
        this.flushIfDue(false);
        return;
      }
      case 'relation':
        this.onRelation(m);
        return;
      case 'insert':
      case 'update':
      case 'delete': {
        const txn = this.txn;
        if (!txn || txn.skip) return;
        const rel = this.relations.get(m.relationId);
        if (!rel) throw new SluiceError('SOURCE_ERROR', `source: change for unknown relation ${m.relationId}`);
        const idx = txn.idx++;
        // The new row goes to the log as the bytes received (TupleData); only key columns are decoded.
        if (m.type === 'insert') {
          log.append({ table: rel.table, lsn: txn.lsn, idx, kind: 'insert', relationVersion: rel.version, rowData: m.newTuple, commitTimeMs: txn.commitMs });
        } else if (m.type === 'update') {
          const old = m.oldKey ?? m.oldRow;
          let oldKey: (string | null)[] | undefined;
          if (old) {
            const k = decodeTuple(old, 0, rel.keyIndexes);
            const n = decodeTuple(m.newTuple, 0, rel.keyIndexes);
            // With REPLICA IDENTITY FULL the old row is always sent; it is a key change only if the key differs.
            if (k.some((v, i) => v !== n[i] && n[i] !== false)) oldKey = k.map((v) => (v === false ? null : v));
          }
          log.append({ table: rel.table, lsn: txn.lsn, idx, kind: 'update', relationVersion: rel.version, rowData: m.newTuple, oldKey, commitTimeMs: txn.commitMs });
        } else {
          const old = m.oldKey ?? m.oldRow;
          if (!old) throw new SluiceError('SOURCE_ERROR', `source ${rel.table}: delete without an old key; set REPLICA IDENTITY DEFAULT (with a primary key) or FULL`);
          const oldKey = decodeTuple(old, 0, rel.keyIndexes).map((v) => (v === false ? null : v));
          log.append({ table: rel.table, lsn: txn.lsn, idx, kind: 'delete', relationVersion: rel.version, oldKey, commitTimeMs: txn.commitMs });
        }
        this.captured++;
        if (log.buffered >= (this.opts.flushChanges ?? 20_000)) this.flushNow();
        return;
      }
      case 'truncate': {
        const txn = this.txn;
        if (!txn || txn.skip) return;
        for (const id of m.relationIds) {
          const rel = this.relations.get(id);
          if (!rel) continue;
          log.append({ table: rel.table, lsn: txn.lsn, idx: txn.idx++, kind: 'truncate', relationVersion: rel.version, commitTimeMs: txn.commitMs });
          this.captured++;
        }
        return;
      }
      case 'message':
      case 'origin':
      case 'type':
        return;
    }
  }

  private onRelation(m: RelationMessage): void {
    const table = `${m.schema}.${m.name}`;
    const keyIndexes = m.columns.map((c, i) => (c.isKey ? i : -1)).filter((i) => i >= 0);
    const columns: RelationColumns = {
      names: m.columns.map((c) => c.name),
      typeOids: m.columns.map((c) => c.typeOid),
      typeMods: m.columns.map((c) => c.typeMod),
      keyIndexes,
    };
    const version = this.opts.log.relationVersion(table, columns);
    this.relations.set(m.relationId, { table, version, keyIndexes });
  }

  private onKeepalive(walEnd: Lsn): void {
    // Everything before walEnd has been sent; when no transaction is open and the log is flushed,
    // nothing before it is still needed from the slot.
    if (this.txn === null) {
      this.opts.log.advance(walEnd);
      this.flushIfDue(true);
    }
  }

  private flushIfDue(timer: boolean): void {
    const log = this.opts.log;
    const now = Date.now();
    const interval = this.opts.flushIntervalMs ?? 50;
    if (log.buffered >= (this.opts.flushChanges ?? 20_000) || now - this.lastFlushMs >= interval || (timer && this.txn === null)) {
      // Only the position moved: an fsync and a status update per keepalive would cost the source
      // and this process more than the WAL it releases is worth. The slot is acknowledged later, and
      // still only up to what the log has stored (contract 1).
      if (!this.dataPending && log.buffered === 0 && now - this.flushedAtMs < (this.opts.idleFlushIntervalMs ?? 1000)) return;
      this.flushNow();
    }
  }

  private flushNow(): void {
    if (this.broken) return;
    const log = this.opts.log;
    try {
      const before = log.head();
      const head = log.flush();
      this.lastFlushMs = Date.now();
      this.flushedAtMs = this.lastFlushMs;
      this.dataPending = false;
      if (this.txn === null || head.endLsn !== before.endLsn) this.stream?.confirm(head.endLsn);
      this.opts.onDurable?.();
    } catch (err) {
      // Contract 1: the slot stays where the last durable flush left it. Stop reading (the stream's
      // last status update carries that position) and stop the pipeline; retrying cannot free space.
      this.broken = true;
      if (this.flushTimer) clearInterval(this.flushTimer);
      this.flushTimer = null;
      const stream = this.stream;
      this.stream = null;
      void stream?.stop();
      this.opts.onFatal(
        err instanceof SluiceError ? err : new SluiceError('CHANGELOG_ERROR', `change log: flush failed: ${(err as Error).message}`, { cause: err }),
      );
    }
  }

  /** Writes a tiny transaction on an idle source so the slot's position keeps moving. */
  private async heartbeat(): Promise<void> {
    if (this.stopping || Date.now() - this.lastTxnMs < this.opts.heartbeatIntervalMs) return;
    this.lastTxnMs = Date.now();
    try {
      if (!this.heartbeatClient) {
        // A heartbeat that hears nothing back within the timeout is on a dead path: drop it, open another next time.
        const c = new pg.Client(clientConfig(this.opts.url, { application_name: 'sluice-heartbeat', query_timeout: HEARTBEAT_TIMEOUT_MS }));
        c.on('error', () => {
          this.heartbeatClient = null;
        });
        await c.connect();
        this.heartbeatClient = c;
      }
      await this.heartbeatClient.query(`SELECT pg_logical_emit_message(true, 'sluice.heartbeat', now()::text)`);
    } catch (err) {
      this.opts.logger.debug('heartbeat failed', { error: (err as Error).message });
      const c = this.heartbeatClient;
      this.heartbeatClient = null;
      if (c) destroyClient(c);
    }
  }

  get confirmedLsn(): Lsn {
    return this.stream?.confirmedLsn ?? Lsn.zero;
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.flushTimer) clearInterval(this.flushTimer);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    // Flush what is complete, acknowledge it, then close.
    this.flushNow();
    await this.stream?.stop();
    this.stream = null;
    await this.heartbeatClient?.end().catch(() => {});
    this.heartbeatClient = null;
  }
}
